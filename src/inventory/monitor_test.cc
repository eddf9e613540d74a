// Privileged: the link monitor coalesces a burst of link events into one or two callbacks,
// and stops promptly.
#include "inventory/monitor.h"

#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <optional>
#include <thread>

#include "gtest/gtest.h"
#include "netns/netns.h"

namespace knd::inventory {
namespace {

TEST(LinkMonitorTest, BurstOfTwentyVethsGivesOneOrTwoCallbacks) {
  if (!netns::HaveNetAdmin()) GTEST_SKIP() << "needs CAP_NET_ADMIN";
  auto ns = netns::ScopedNetns::Create("knd-mon");
  ASSERT_TRUE(ns.ok()) << ns.status();
  std::mutex mu;
  std::condition_variable cv;
  int calls = 0;
  LinkMonitor::Options opts;
  opts.quiet = std::chrono::milliseconds(300);
  opts.max_delay = std::chrono::milliseconds(5000);
  opts.netns_path = ns->path();
  LinkMonitor mon(
      [&] {
        std::lock_guard<std::mutex> l(mu);
        ++calls;
        cv.notify_all();
      },
      opts);
  ASSERT_TRUE(mon.Start().ok());
  EXPECT_FALSE(mon.Start().ok());  // twice is a mistake

  // One `ip -batch` process: 20 veth pairs (+ up) in a burst.
  std::string cmd = "ip -n " + ns->name() + " -batch - >/dev/null 2>&1";
  FILE* p = popen(cmd.c_str(), "w");
  ASSERT_NE(p, nullptr);
  for (int i = 0; i < 20; ++i) {
    fprintf(p, "link add m%d type veth peer name n%d\nlink set m%d up\n", i, i, i);
  }
  ASSERT_EQ(pclose(p), 0);

  {
    std::unique_lock<std::mutex> l(mu);
    ASSERT_TRUE(cv.wait_for(l, std::chrono::seconds(20), [&] { return calls > 0; }))
        << "no callback for 20 new veth pairs";
  }
  // Let any trailing events settle, then count.
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  {
    std::lock_guard<std::mutex> l(mu);
    EXPECT_GE(calls, 1);
    EXPECT_LE(calls, 2) << "events were not coalesced";
  }
  // A later, separate change is reported again.
  int before;
  {
    std::lock_guard<std::mutex> l(mu);
    before = calls;
  }
  ASSERT_EQ(std::system(("ip -n " + ns->name() + " link del m0").c_str()), 0);
  {
    std::unique_lock<std::mutex> l(mu);
    EXPECT_TRUE(cv.wait_for(l, std::chrono::seconds(20), [&] { return calls > before; }));
  }
  mon.Stop();
  mon.Stop();  // idempotent
}

TEST(LinkMonitorTest, StartFailsForMissingNetns) {
  LinkMonitor::Options opts;
  opts.netns_path = "/nonexistent/netns";
  LinkMonitor mon([] {}, opts);
  EXPECT_FALSE(mon.Start().ok());
}

}  // namespace
}  // namespace knd::inventory
