// PlanStore: crash safety (temp leftovers, corrupt files), concurrency, path safety.
#include "state/plan_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "common/file_util.h"

namespace knd::state {
namespace {

namespace fs = std::filesystem;

class PlanStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/knd-plan-store-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  static ClaimPlan Plan(const std::string& uid, std::vector<std::string> pods = {}) {
    ClaimPlan p;
    p.claim_uid = uid;
    p.claim_namespace = "ns";
    p.claim_name = "claim-" + uid;
    for (auto& pod : pods) p.pods.push_back({pod, "ns", "pod-" + pod});
    DevicePlan d;
    d.device = "dev-" + uid;
    d.request = "nic";
    p.devices.push_back(d);
    return p;
  }

  std::string dir_;
};

TEST_F(PlanStoreTest, PutGetListDelete) {
  PlanStore store(dir_ + "/plans");  // created on demand
  ASSERT_TRUE(store.Put(Plan("a", {"p1"})).ok());
  ASSERT_TRUE(store.Put(Plan("b", {"p1", "p2"})).ok());
  auto a = store.Get("a");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->claim_name, "claim-a");
  EXPECT_EQ(store.List().size(), 2u);
  EXPECT_EQ(store.ForPod("p1").size(), 2u);
  ASSERT_EQ(store.ForPod("p2").size(), 1u);
  EXPECT_EQ(store.ForPod("p2")[0].claim_uid, "b");
  EXPECT_TRUE(store.ForPod("p3").empty());
  EXPECT_TRUE(fs::exists(dir_ + "/plans/a.json"));

  EXPECT_TRUE(store.Delete("a").ok());
  EXPECT_TRUE(store.Delete("a").ok());  // idempotent
  EXPECT_TRUE(absl::IsNotFound(store.Get("a").status()));
  EXPECT_EQ(store.List().size(), 1u);
}

TEST_F(PlanStoreTest, HolderOfASharedParentCountsChildrenOnlyAgainstExclusiveUse) {
  PlanStore store(dir_);
  auto child = [](const std::string& uid, DeviceState st) {
    ClaimPlan p = Plan(uid, {"pod-" + uid});
    p.devices[0].device = "eth1";
    p.devices[0].child = ChildPlan{"macvlan", "bridge", 0, "02:00:00:00:00:01"};
    p.devices[0].state = st;
    p.devices[0].pod_uid = "pod-" + uid;
    return p;
  };
  ASSERT_TRUE(store.Put(child("a", DeviceState::kAttached)).ok());
  ASSERT_TRUE(store.Put(child("b", DeviceState::kPrepared)).ok());
  // Another child does not wait for a's; an exclusive user would.
  EXPECT_FALSE(store.HolderOf("eth1", "c", /*children_hold=*/false).has_value());
  auto h = store.HolderOf("eth1", "c");
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->plan.claim_uid, "a");  // in a pod; b's child is only prepared
  EXPECT_FALSE(store.HolderOf("eth1", "a").has_value());
}

TEST_F(PlanStoreTest, PutReplacesWholePlan) {
  PlanStore store(dir_);
  ASSERT_TRUE(store.Put(Plan("a", {"p1"})).ok());
  ClaimPlan p = Plan("a");
  p.claim_name = "renamed";
  ASSERT_TRUE(store.Put(p).ok());
  auto got = store.Get("a");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->claim_name, "renamed");
  EXPECT_TRUE(got->pods.empty());
}

TEST_F(PlanStoreTest, BadUidRefusedAndNothingWritten) {
  PlanStore store(dir_ + "/plans");
  for (std::string uid : {"", "../evil", "a/b", "..", ".hidden"}) {
    absl::Status s = store.Put(Plan(uid));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << uid;
    EXPECT_FALSE(store.Get(uid).ok()) << uid;
    EXPECT_EQ(store.Delete(uid).code(), absl::StatusCode::kInvalidArgument) << uid;
  }
  EXPECT_FALSE(fs::exists(dir_ + "/evil.json"));
  EXPECT_TRUE(fs::is_empty(dir_ + "/plans"));
}

TEST_F(PlanStoreTest, LoadAllCleansTempFilesAndMovesCorruptAside) {
  {
    PlanStore store(dir_);
    ASSERT_TRUE(store.Put(Plan("good1")).ok());
    ASSERT_TRUE(store.Put(Plan("good2")).ok());
  }
  // An interrupted write: the temp file of WriteFileAtomic, never renamed.
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/.good1.json.Ab12Cd", "{\"version\": 1, \"claimU").ok());
  // A torn/corrupt plan, a plan under the wrong file name, and an unrelated file.
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/torn.json", "{\"version\": 1, \"claimUid\": \"to").ok());
  std::string other = ToJson(Plan("other")).dump();
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/renamed.json", other).ok());
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/README", "not a plan").ok());

  PlanStore store(dir_);
  auto plans = store.LoadAll();
  ASSERT_TRUE(plans.ok()) << plans.status();
  std::vector<std::string> uids;
  for (const auto& p : *plans) uids.push_back(p.claim_uid);
  EXPECT_THAT(uids, ::testing::UnorderedElementsAre("good1", "good2"));
  EXPECT_FALSE(fs::exists(dir_ + "/.good1.json.Ab12Cd"));
  EXPECT_FALSE(fs::exists(dir_ + "/torn.json"));
  EXPECT_TRUE(fs::exists(dir_ + "/torn.json.corrupt"));
  EXPECT_TRUE(fs::exists(dir_ + "/renamed.json.corrupt"));
  EXPECT_TRUE(fs::exists(dir_ + "/README"));
  // A second start-up sees the same good plans and leaves the corrupt copies alone.
  auto again = store.LoadAll();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->size(), 2u);
  EXPECT_TRUE(fs::exists(dir_ + "/torn.json.corrupt"));
}

// A plan of a format version this knd does not read (a newer knd's, after a downgrade) is
// not corrupt: it is neither moved aside nor skipped, and the load fails naming it.
TEST_F(PlanStoreTest, LoadAllRefusesAPlanOfAnotherVersionAndLeavesIt) {
  {
    PlanStore store(dir_);
    ASSERT_TRUE(store.Put(Plan("good")).ok());
  }
  nlohmann::json newer = ToJson(Plan("newer", {"p1"}));
  newer["version"] = 2;
  const std::string newer_path = dir_ + "/newer.json";
  ASSERT_TRUE(WriteFileAtomic(newer_path, newer.dump()).ok());
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/torn.json", "{\"version\": 1, \"claimUid\": \"to").ok());

  PlanStore store(dir_);
  auto plans = store.LoadAll();
  ASSERT_FALSE(plans.ok());
  EXPECT_EQ(plans.status().code(), absl::StatusCode::kFailedPrecondition);
  const std::string msg(plans.status().message());
  EXPECT_THAT(msg, ::testing::HasSubstr(newer_path + ": plan: unsupported version 2"));
  EXPECT_THAT(msg, ::testing::HasSubstr("this knd reads version 1"));
  EXPECT_THAT(msg, ::testing::HasSubstr("orphaned"));
  EXPECT_THAT(msg, ::testing::Not(::testing::HasSubstr("good.json")));
  EXPECT_TRUE(fs::exists(newer_path)) << "left in place for the knd that reads it";
  EXPECT_FALSE(fs::exists(newer_path + ".corrupt"));
  EXPECT_TRUE(fs::exists(dir_ + "/torn.json.corrupt")) << "corrupt files are still moved aside";
  // Every such file is named, and a second start refuses the same way.
  nlohmann::json other = ToJson(Plan("other"));
  other["version"] = 3;
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/other.json", other.dump()).ok());
  auto again = store.LoadAll();
  ASSERT_FALSE(again.ok());
  EXPECT_THAT(std::string(again.status().message()),
              ::testing::AllOf(::testing::HasSubstr("newer.json: plan: unsupported version 2"),
                               ::testing::HasSubstr("other.json: plan: unsupported version 3")));

  // Without LoadAll (no start-up) the store skips it, loudly, and serves the others.
  PlanStore lazy(dir_);
  EXPECT_TRUE(lazy.Get("good").ok());
  EXPECT_TRUE(absl::IsNotFound(lazy.Get("newer").status()));
  EXPECT_TRUE(fs::exists(newer_path));

  // Once it is gone (the newer knd took it back), the start goes on.
  ASSERT_TRUE(RemoveFile(newer_path).ok());
  ASSERT_TRUE(RemoveFile(dir_ + "/other.json").ok());
  auto ok = store.LoadAll();
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->size(), 1u);
}

TEST_F(PlanStoreTest, EveryWriteIsOnDiskForTheNextProcess) {
  {
    PlanStore store(dir_);
    ASSERT_TRUE(store.Put(Plan("a", {"p1"})).ok());
    ASSERT_TRUE(store.Put(Plan("b", {"p2"})).ok());
    ASSERT_TRUE(store.Put(Plan("gone")).ok());
    ASSERT_TRUE(store
                    .Update("a",
                            [](ClaimPlan& p) {
                              p.pods.push_back({"p3", "ns", "pod-p3"});
                              return absl::OkStatus();
                            })
                    .ok());
    ASSERT_TRUE(store.Delete("gone").ok());
  }
  // A restarted driver: a new store over the same directory.
  PlanStore next(dir_);
  auto plans = next.LoadAll();
  ASSERT_TRUE(plans.ok()) << plans.status();
  ASSERT_EQ(plans->size(), 2u);
  EXPECT_EQ(next.ForPod("p3").size(), 1u);
  EXPECT_EQ(next.ForPod("p3")[0].claim_uid, "a");
  EXPECT_TRUE(absl::IsNotFound(next.Get("gone").status()));
  // Without LoadAll, the first call reads the directory as well.
  PlanStore lazy(dir_);
  EXPECT_EQ(lazy.List().size(), 2u);
  EXPECT_EQ(lazy.ForPod("p2").size(), 1u);
}

TEST_F(PlanStoreTest, AWriteThatFailsOnDiskChangesNothing) {
  PlanStore store(dir_ + "/plans");
  ASSERT_TRUE(store.Put(Plan("a", {"p1"})).ok());
  // The directory is replaced by a file (root ignores permissions, so this is how a test makes
  // every write fail): the store keeps answering what it held before, not what the failed
  // writes wanted.
  fs::remove_all(dir_ + "/plans");
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/plans", "not a directory").ok());
  ClaimPlan changed = Plan("a", {"p9"});
  EXPECT_FALSE(store.Put(changed).ok());
  EXPECT_FALSE(store.Put(Plan("new")).ok());
  EXPECT_FALSE(store
                   .Update("a",
                           [](ClaimPlan& p) {
                             p.claim_name = "changed";
                             return absl::OkStatus();
                           })
                   .ok());
  EXPECT_FALSE(store.Delete("a").ok());
  auto a = store.Get("a");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->claim_name, "claim-a");
  EXPECT_TRUE(store.ForPod("p9").empty());
  EXPECT_TRUE(absl::IsNotFound(store.Get("new").status()));
}

TEST_F(PlanStoreTest, UpdateReadModifyWrite) {
  PlanStore store(dir_);
  EXPECT_TRUE(absl::IsNotFound(store.Update("nope", [](ClaimPlan&) { return absl::OkStatus(); })));
  ASSERT_TRUE(store.Put(Plan("a")).ok());
  // An aborted update writes nothing.
  absl::Status s = store.Update("a", [](ClaimPlan& p) {
    p.claim_name = "changed";
    return absl::FailedPreconditionError("no");
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store.Get("a")->claim_name, "claim-a");
  // Changing the UID inside an update is refused.
  s = store.Update("a", [](ClaimPlan& p) {
    p.claim_uid = "b";
    return absl::OkStatus();
  });
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(absl::IsNotFound(store.Get("b").status()));
}

TEST_F(PlanStoreTest, ConcurrentUpdatesKeepEveryIncrement) {
  PlanStore store(dir_);
  ClaimPlan p = Plan("counter");
  p.prepared_at_unix = 0;
  ASSERT_TRUE(store.Put(p).ok());
  constexpr int kThreads = 4, kEach = 25;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&store, t] {
      for (int i = 0; i < kEach; ++i) {
        absl::Status s = store.Update("counter", [t](ClaimPlan& p) {
          ++p.prepared_at_unix;
          p.devices[0].note += std::to_string(t);
          return absl::OkStatus();
        });
        ASSERT_TRUE(s.ok()) << s;
        // Readers in between always see a whole plan.
        ASSERT_TRUE(store.Get("counter").ok());
      }
    });
  }
  for (auto& th : threads) th.join();
  auto got = store.Get("counter");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->prepared_at_unix, kThreads * kEach);
  EXPECT_EQ(got->devices[0].note.size(), static_cast<size_t>(kThreads * kEach));
  // No temp files left behind.
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir_)) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1);
}

}  // namespace
}  // namespace knd::state
