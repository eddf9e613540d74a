#include "state/plan_store.h"

#include <dirent.h>

#include <algorithm>
#include <cstdio>
#include <map>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status.h"
#include "common/text.h"
#include "spdlog/spdlog.h"

namespace knd::state {
namespace {

constexpr char kSuffix[] = ".json";

// The claim UID becomes a file name: refuse anything that could step out of the directory
// or hide the file (a UID from the API server is a plain UUID; this guards against bugs and
// hostile input alike).
absl::Status CheckUid(const std::string& uid) {
  if (uid.empty()) return absl::InvalidArgumentError("plan store: empty claim UID");
  if (uid.find('/') != std::string::npos || uid.find("..") != std::string::npos ||
      uid.front() == '.' || uid.find('\0') != std::string::npos || uid.size() > 200) {
    return absl::InvalidArgumentError(
        absl::StrCat("plan store: claim UID \"", uid, "\" is not usable as a file name"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return ErrnoStatus(absl::StrCat("opendir ", dir));
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(std::move(n));
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

absl::StatusOr<ClaimPlan> Parse(const std::string& data, const std::string& path) {
  auto j = nlohmann::json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::DataLossError(absl::StrCat(path, ": not valid JSON"));
  auto plan = ClaimPlanFromJson(j);
  if (!plan.ok()) return Annotate(plan.status(), path);
  return plan;
}

// Reads every plan file of `dir` into a map by claim UID. With `repair` (start-up), removes
// the temp files of interrupted writes and moves corrupt plans aside to `<file>.corrupt`;
// without, it only skips them. A plan it cannot read but which need not be corrupt (a format
// version this knd does not read, a read error) is never moved aside nor skipped at start-up:
// without it the device it holds in a pod would be orphaned, so `repair` fails on it.
absl::StatusOr<std::map<std::string, ClaimPlan>> ReadDir(const std::string& dir, bool repair) {
  ASSIGN_OR_RETURN(std::vector<std::string> names, ListDir(dir));
  std::map<std::string, ClaimPlan> plans;
  std::vector<std::string> refused;
  for (const std::string& name : names) {
    std::string path = absl::StrCat(dir, "/", name);
    // WriteFileAtomic's temp files are ".<name>.XXXXXX"; one left behind means a write was
    // interrupted before its rename, so the real file still holds the previous plan.
    if (name.front() == '.' && absl::StrContains(name, absl::StrCat(kSuffix, "."))) {
      if (!repair) continue;
      spdlog::info("plan store: removing leftover temp file {}", path);
      absl::Status s = RemoveFile(path);
      if (!s.ok()) spdlog::warn("plan store: {}", s.ToString());
      continue;
    }
    if (!absl::EndsWith(name, kSuffix) || name.front() == '.') continue;
    std::string uid = name.substr(0, name.size() - sizeof(kSuffix) + 1);
    absl::StatusOr<ClaimPlan> plan = absl::InternalError("unread");
    auto data = ReadFile(path);
    if (absl::IsNotFound(data.status())) continue;  // deleted since the listing
    bool corrupt = false;
    if (!data.ok()) {
      plan = data.status();
    } else {
      plan = Parse(*data, path);
      corrupt = !plan.ok() && !absl::IsFailedPrecondition(plan.status());
      if (plan.ok() && plan->claim_uid != uid) {
        plan = absl::DataLossError(absl::StrCat(path, ": holds claim ", plan->claim_uid));
        corrupt = true;
      }
    }
    if (!plan.ok()) {
      if (!repair) {
        spdlog::error("plan store: skipping {}", plan.status().ToString());
        continue;
      }
      if (!corrupt) {
        refused.push_back(std::string(plan.status().message()));
        continue;
      }
      // Never fatal: one corrupt file must not keep every other pod from being served. Keep
      // the bytes for a post-mortem instead of deleting them.
      std::string aside = path + ".corrupt";
      spdlog::error("plan store: {}; moving it to {}", plan.status().ToString(), aside);
      if (::rename(path.c_str(), aside.c_str()) != 0) {
        spdlog::error("plan store: {}", ErrnoStatus("rename " + path).ToString());
      }
      continue;
    }
    plans.emplace(uid, *std::move(plan));
  }
  if (!refused.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        absl::StrJoin(refused, "; "),
        ". knd does not guess at a plan it cannot read, nor runs without it (the device it "
        "holds would be orphaned in its pod): run a knd that reads its version, or fix what "
        "keeps it from being read"));
  }
  return plans;
}

}  // namespace

PlanStore::PlanStore(std::string dir) : dir_(std::move(dir)) {
  absl::Status s = MakeDirs(dir_, 0700);
  // Not fatal here: every later call reports the same problem with its own context.
  if (!s.ok()) spdlog::error("plan store: {}", s.ToString());
}

std::string PlanStore::PathFor(const std::string& claim_uid) const {
  return absl::StrCat(dir_, "/", claim_uid, kSuffix);
}

void PlanStore::EnsureLoadedLocked() const {
  if (loaded_) return;
  auto plans = ReadDir(dir_, /*repair=*/false);
  if (!plans.ok()) {
    // Only a directory that cannot be listed gets here; writes into it fail and say so.
    spdlog::error("plan store: {}", plans.status().ToString());
    return;
  }
  plans_ = *std::move(plans);
  loaded_ = true;
}

absl::StatusOr<std::vector<ClaimPlan>> PlanStore::LoadAll() {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(MakeDirs(dir_, 0700));
  ASSIGN_OR_RETURN(plans_, ReadDir(dir_, /*repair=*/true));
  loaded_ = true;
  std::vector<ClaimPlan> out;
  out.reserve(plans_.size());
  for (const auto& [uid, plan] : plans_) out.push_back(plan);
  return out;
}

absl::Status PlanStore::Put(const ClaimPlan& plan) {
  RETURN_IF_ERROR(CheckUid(plan.claim_uid));
  std::string data = DumpJson(ToJson(plan), 1);
  std::lock_guard<std::mutex> lock(mu_);
  EnsureLoadedLocked();
  RETURN_IF_ERROR(WriteFileAtomic(PathFor(plan.claim_uid), data, 0600));
  plans_[plan.claim_uid] = plan;
  ChangedLocked();
  return absl::OkStatus();
}

absl::StatusOr<ClaimPlan> PlanStore::Get(const std::string& claim_uid) const {
  RETURN_IF_ERROR(CheckUid(claim_uid));
  std::lock_guard<std::mutex> lock(mu_);
  EnsureLoadedLocked();
  auto it = plans_.find(claim_uid);
  if (it == plans_.end()) return absl::NotFoundError(absl::StrCat("no plan for claim ", claim_uid));
  return it->second;
}

absl::Status PlanStore::Delete(const std::string& claim_uid) {
  RETURN_IF_ERROR(CheckUid(claim_uid));
  std::lock_guard<std::mutex> lock(mu_);
  EnsureLoadedLocked();
  RETURN_IF_ERROR(RemoveFile(PathFor(claim_uid)));
  if (plans_.erase(claim_uid) > 0) ChangedLocked();
  return absl::OkStatus();
}

std::vector<ClaimPlan> PlanStore::List() const {
  std::lock_guard<std::mutex> lock(mu_);
  EnsureLoadedLocked();
  std::vector<ClaimPlan> out;
  out.reserve(plans_.size());
  for (const auto& [uid, plan] : plans_) out.push_back(plan);
  return out;
}

std::vector<ClaimPlan> PlanStore::ForPod(const std::string& pod_uid) const {
  std::lock_guard<std::mutex> lock(mu_);
  EnsureLoadedLocked();
  std::vector<ClaimPlan> out;
  for (const auto& [uid, plan] : plans_) {
    bool mine = std::any_of(plan.pods.begin(), plan.pods.end(),
                            [&](const PodRef& r) { return r.uid == pod_uid; });
    if (mine) out.push_back(plan);
  }
  return out;
}

absl::Status PlanStore::Update(const std::string& claim_uid,
                               const std::function<absl::Status(ClaimPlan&)>& fn) {
  RETURN_IF_ERROR(CheckUid(claim_uid));
  std::lock_guard<std::mutex> lock(mu_);
  EnsureLoadedLocked();
  auto it = plans_.find(claim_uid);
  if (it == plans_.end()) return absl::NotFoundError(absl::StrCat("no plan for claim ", claim_uid));
  ClaimPlan plan = it->second;
  RETURN_IF_ERROR(fn(plan));
  if (plan.claim_uid != claim_uid) {
    return absl::InvalidArgumentError(
        absl::StrCat("plan store: update of claim ", claim_uid, " changed its UID"));
  }
  RETURN_IF_ERROR(WriteFileAtomic(PathFor(claim_uid), DumpJson(ToJson(plan), 1), 0600));
  it->second = std::move(plan);
  ChangedLocked();
  return absl::OkStatus();
}

void PlanStore::ChangedLocked() {
  ++generation_;
  changed_.notify_all();
}

std::optional<PlanStore::Holder> PlanStore::HolderOf(const std::string& device,
                                                     const std::string& except_claim,
                                                     bool children_hold) const {
  std::lock_guard<std::mutex> lock(mu_);
  EnsureLoadedLocked();
  for (const auto& [uid, plan] : plans_) {
    if (uid == except_claim) continue;
    for (size_t i = 0; i < plan.devices.size(); ++i) {
      const DevicePlan& d = plan.devices[i];
      // A VF on vfio-pci is held from Prepare to Unprepare, in a pod or not.
      const bool held = InPod(d) || d.vfio.has_value();
      if (d.device == device && held && (children_hold || !d.child)) return Holder{plan, i};
    }
  }
  return std::nullopt;
}

uint64_t PlanStore::Generation() const {
  std::lock_guard<std::mutex> lock(mu_);
  return generation_;
}

bool PlanStore::WaitForChange(uint64_t seen, std::chrono::steady_clock::time_point deadline) const {
  std::unique_lock<std::mutex> lock(mu_);
  return changed_.wait_until(lock, deadline, [&] { return generation_ != seen; });
}

}  // namespace knd::state
