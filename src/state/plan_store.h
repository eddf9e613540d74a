// Crash-safe store of ClaimPlans: one JSON file per claim UID in a checkpoint directory
// (default /var/lib/knd/plans), written atomically (temp + fsync + rename + dir fsync).
// Thread-safe; every method is a whole-file operation, so a crash leaves each plan either
// as before or as after.
//
// Reads are served from memory: the directory is read once (LoadAll, or the first call) and
// every write goes to disk first and to memory only once it is durable, so a failed write
// changes neither. The store owns its directory: files changed behind its back are seen at
// the next LoadAll, not before.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "state/plan.h"

namespace knd::state {

class PlanStore {
 public:
  // Creates the directory if needed. Does not read anything yet.
  explicit PlanStore(std::string dir);

  // Loads every plan from disk (at start-up). Corrupt files (not JSON, no plan, under another
  // claim's name) are reported, moved aside to `<file>.corrupt` and skipped. A plan it cannot
  // read but which is not corrupt — a format version this knd does not read (a newer knd's), a
  // read error — fails the load (FailedPrecondition naming every such file and, for a version,
  // the one found and the one this knd reads) and is left in place: the driver must not run
  // without it.
  absl::StatusOr<std::vector<ClaimPlan>> LoadAll();

  absl::Status Put(const ClaimPlan& plan);
  absl::StatusOr<ClaimPlan> Get(const std::string& claim_uid) const;  // NotFound if absent
  absl::Status Delete(const std::string& claim_uid);                  // absent = OK
  std::vector<ClaimPlan> List() const;
  // Plans whose `pods` contain this pod UID.
  std::vector<ClaimPlan> ForPod(const std::string& pod_uid) const;

  // Read-modify-write of one plan under the store lock; `fn` returns an error to abort
  // (nothing written). NotFound if the plan does not exist.
  absl::Status Update(const std::string& claim_uid,
                      const std::function<absl::Status(ClaimPlan&)>& fn);

  // Where a device is held: the plan and index of the device named `device` (DRA name, this
  // driver's pool) that sits in a pod (state::InPod), other than in claim `except_claim`.
  struct Holder {
    ClaimPlan plan;
    size_t index = 0;
  };
  // The plan (other than `except_claim`'s) whose device `device` is in a pod, or on vfio-pci
  // for its claim (from Prepare to Unprepare). A child of a shared parent holds the parent
  // against exclusive use only: with
  // `children_hold` false (asking for another child) children are not holders.
  std::optional<Holder> HolderOf(const std::string& device, const std::string& except_claim,
                                 bool children_hold = true) const;

  // Every successful write (Put, Update, Delete) moves the generation on and wakes
  // WaitForChange: a caller waiting for a device to come back from a pod (Prepare) sleeps on
  // the store instead of polling it.
  uint64_t Generation() const;
  // Returns once the generation differs from `seen` (true) or at `deadline` (false).
  bool WaitForChange(uint64_t seen, std::chrono::steady_clock::time_point deadline) const;

  const std::string& dir() const { return dir_; }

 private:
  std::string PathFor(const std::string& claim_uid) const;
  // Reads the directory into memory on first use (skipping, with an error logged, the files it
  // cannot read; only LoadAll moves corrupt ones aside or refuses the others).
  void EnsureLoadedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ChangedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const std::string dir_;
  mutable std::mutex mu_;
  mutable bool loaded_ ABSL_GUARDED_BY(mu_) = false;
  mutable std::map<std::string, ClaimPlan> plans_ ABSL_GUARDED_BY(mu_);  // by claim UID
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  mutable std::condition_variable changed_;
};

}  // namespace knd::state
