#include "state/plan_store.h"

#include <dirent.h>

#include <algorithm>
#include <cstdio>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"
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

}  // namespace

PlanStore::PlanStore(std::string dir) : dir_(std::move(dir)) {
  absl::Status s = MakeDirs(dir_, 0700);
  // Not fatal here: every later call reports the same problem with its own context.
  if (!s.ok()) spdlog::error("plan store: {}", s.ToString());
}

std::string PlanStore::PathFor(const std::string& claim_uid) const {
  return absl::StrCat(dir_, "/", claim_uid, kSuffix);
}

absl::StatusOr<std::vector<ClaimPlan>> PlanStore::LoadAll() {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(MakeDirs(dir_, 0700));
  ASSIGN_OR_RETURN(std::vector<std::string> names, ListDir(dir_));
  std::vector<ClaimPlan> plans;
  for (const std::string& name : names) {
    std::string path = absl::StrCat(dir_, "/", name);
    // WriteFileAtomic's temp files are ".<name>.XXXXXX"; one left behind means a write was
    // interrupted before its rename, so the real file still holds the previous plan.
    if (name.front() == '.' && absl::StrContains(name, absl::StrCat(kSuffix, "."))) {
      spdlog::info("plan store: removing leftover temp file {}", path);
      absl::Status s = RemoveFile(path);
      if (!s.ok()) spdlog::warn("plan store: {}", s.ToString());
      continue;
    }
    if (!absl::EndsWith(name, kSuffix) || name.front() == '.') continue;
    std::string uid = name.substr(0, name.size() - sizeof(kSuffix) + 1);
    absl::StatusOr<ClaimPlan> plan = absl::InternalError("unread");
    auto data = ReadFile(path);
    if (!data.ok()) {
      plan = data.status();
    } else {
      plan = Parse(*data, path);
      if (plan.ok() && plan->claim_uid != uid) {
        plan = absl::DataLossError(absl::StrCat(path, ": holds claim ", plan->claim_uid));
      }
    }
    if (!plan.ok()) {
      // Never fatal: one bad file must not keep every other pod from being served. Keep the
      // bytes for a post-mortem instead of deleting them.
      std::string aside = path + ".corrupt";
      spdlog::error("plan store: {}; moving it to {}", plan.status().ToString(), aside);
      if (::rename(path.c_str(), aside.c_str()) != 0) {
        spdlog::error("plan store: {}", ErrnoStatus("rename " + path).ToString());
      }
      continue;
    }
    plans.push_back(*std::move(plan));
  }
  return plans;
}

absl::Status PlanStore::Put(const ClaimPlan& plan) {
  RETURN_IF_ERROR(CheckUid(plan.claim_uid));
  std::string data = ToJson(plan).dump(1);
  std::lock_guard<std::mutex> lock(mu_);
  return WriteFileAtomic(PathFor(plan.claim_uid), data, 0600);
}

absl::StatusOr<ClaimPlan> PlanStore::Get(const std::string& claim_uid) const {
  RETURN_IF_ERROR(CheckUid(claim_uid));
  std::string path = PathFor(claim_uid);
  std::string data;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto d = ReadFile(path);
    if (absl::IsNotFound(d.status())) {
      return absl::NotFoundError(absl::StrCat("no plan for claim ", claim_uid));
    }
    if (!d.ok()) return d.status();
    data = *std::move(d);
  }
  return Parse(data, path);
}

absl::Status PlanStore::Delete(const std::string& claim_uid) {
  RETURN_IF_ERROR(CheckUid(claim_uid));
  std::lock_guard<std::mutex> lock(mu_);
  return RemoveFile(PathFor(claim_uid));
}

std::vector<ClaimPlan> PlanStore::List() const {
  std::vector<ClaimPlan> plans;
  std::lock_guard<std::mutex> lock(mu_);
  auto names = ListDir(dir_);
  if (!names.ok()) {
    spdlog::error("plan store: {}", names.status().ToString());
    return plans;
  }
  for (const std::string& name : *names) {
    if (name.front() == '.' || !absl::EndsWith(name, kSuffix)) continue;
    std::string path = absl::StrCat(dir_, "/", name);
    auto data = ReadFile(path);
    if (!data.ok()) continue;  // deleted between readdir and open
    auto plan = Parse(*data, path);
    if (!plan.ok()) {
      // LoadAll moves such files aside at start-up; here we only skip and say so.
      spdlog::warn("plan store: skipping {}", plan.status().ToString());
      continue;
    }
    plans.push_back(*std::move(plan));
  }
  return plans;
}

std::vector<ClaimPlan> PlanStore::ForPod(const std::string& pod_uid) const {
  std::vector<ClaimPlan> out;
  for (ClaimPlan& p : List()) {
    bool mine = std::any_of(p.pods.begin(), p.pods.end(),
                            [&](const PodRef& r) { return r.uid == pod_uid; });
    if (mine) out.push_back(std::move(p));
  }
  return out;
}

absl::Status PlanStore::Update(const std::string& claim_uid,
                               const std::function<absl::Status(ClaimPlan&)>& fn) {
  RETURN_IF_ERROR(CheckUid(claim_uid));
  std::string path = PathFor(claim_uid);
  std::lock_guard<std::mutex> lock(mu_);
  auto data = ReadFile(path);
  if (absl::IsNotFound(data.status())) {
    return absl::NotFoundError(absl::StrCat("no plan for claim ", claim_uid));
  }
  if (!data.ok()) return data.status();
  ASSIGN_OR_RETURN(ClaimPlan plan, Parse(*data, path));
  RETURN_IF_ERROR(fn(plan));
  if (plan.claim_uid != claim_uid) {
    return absl::InvalidArgumentError(
        absl::StrCat("plan store: update of claim ", claim_uid, " changed its UID"));
  }
  return WriteFileAtomic(path, ToJson(plan).dump(1), 0600);
}

}  // namespace knd::state
