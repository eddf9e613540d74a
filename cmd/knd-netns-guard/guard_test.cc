// knd-netns-guard as the runtime runs it: OCI state on stdin naming a process in a pod netns.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "netns/netns.h"

namespace {

struct GuardRun {
  int code = -1;
  std::string err;
};

class GuardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!knd::netns::HaveNetAdmin()) GTEST_SKIP() << "needs root to create a pod netns";
    const char* bin = std::getenv("KND_BINARY_DIR");
    ASSERT_NE(bin, nullptr) << "run through ctest";
    guard_ = std::string(bin) + "/cmd/knd-netns-guard/knd-netns-guard";
    auto ns = knd::netns::ScopedNetns::Create("knd-guard");
    ASSERT_TRUE(ns.ok()) << ns.status();
    ns_.emplace(*std::move(ns));
    // The pod: a veth pair named as knd would have named the claim's interface.
    ASSERT_EQ(Sh("ip -n " + ns_->name() + " link add net1 type veth peer name peer1"), 0);
    // The "container": a process inside the pod netns, as the OCI state's pid.
    int fd = ::open(ns_->path().c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    holder_ = ::fork();
    ASSERT_GE(holder_, 0);
    if (holder_ == 0) {
      if (::setns(fd, CLONE_NEWNET) != 0) _exit(1);
      ::pause();
      _exit(0);
    }
    ::close(fd);
    // Wait until the holder is in the pod netns.
    const std::string want = ReadLink("/proc/self/ns/net");
    for (int i = 0; i < 500 && ReadLink("/proc/" + std::to_string(holder_) + "/ns/net") == want;
         ++i) {
      ::usleep(2000);
    }
  }
  void TearDown() override {
    if (holder_ > 0) {
      ::kill(holder_, SIGKILL);
      ::waitpid(holder_, nullptr, 0);
    }
    ns_.reset();
    std::remove(err_file_.c_str());
  }
  static std::string ReadLink(const std::string& p) {
    char buf[256] = {0};
    ssize_t n = ::readlink(p.c_str(), buf, sizeof(buf) - 1);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  }
  static int Sh(const std::string& cmd) {
    int rc = std::system(cmd.c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  }
  GuardRun Guard(const std::string& state, const std::string& args) {
    GuardRun r;
    r.code = Sh("printf '%s' '" + state + "' | " + guard_ + " " + args + " 2>" + err_file_);
    std::ifstream f(err_file_);
    std::stringstream ss;
    ss << f.rdbuf();
    r.err = ss.str();
    return r;
  }
  std::string State() const {
    return R"({"ociVersion":"1.0.2","id":"c1","status":"creating","pid":)" +
           std::to_string(holder_) + R"(,"bundle":"/run/c1"})";
  }

  std::string guard_;
  std::optional<knd::netns::ScopedNetns> ns_;
  pid_t holder_ = -1;
  std::string err_file_ = "/tmp/knd-guard-test-" + std::to_string(::getpid()) + ".err";
};

TEST_F(GuardTest, PassesWhenEveryPromisedInterfaceIsThere) {
  GuardRun r = Guard(State(), "--claim team-a/claim-a --ifname net1");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
}

TEST_F(GuardTest, FailsTheContainerNamingClaimAndInterface) {
  GuardRun r = Guard(State(), "--claim team-a/claim-a --ifname net1 --ifname net2");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("claim team-a/claim-a"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("interface net2 is not in the pod's network namespace"), std::string::npos)
      << r.err;
}

TEST_F(GuardTest, AcceptsTheDeviceUnderAnotherNameByItsMac) {
  // The pod's CNI (Multus) moved the device in as net1 before knd's hook; knd promised eth1.
  ASSERT_EQ(Sh("ip -n " + ns_->name() + " link set net1 address 02:aa:bb:cc:dd:01"), 0);
  GuardRun r = Guard(State(), "--claim team-a/claim-a --ifname eth1 --mac 02:AA:BB:CC:DD:01");
  EXPECT_EQ(r.code, 0) << r.err;
  // Another MAC is not the device: refused as before.
  r = Guard(State(), "--claim team-a/claim-a --ifname eth1 --mac 02:aa:bb:cc:dd:02");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("interface eth1 is not in the pod's network namespace"), std::string::npos)
      << r.err;
}

TEST_F(GuardTest, FailsClosedOnBadStateOrArguments) {
  EXPECT_EQ(Guard(State(), "--claim a/b --mac 02:aa:bb:cc:dd:01 --ifname net1").code, 2);
  EXPECT_EQ(Guard(State(), "--claim a/b --ifname net1 --mac nonsense").code, 2);
  EXPECT_EQ(Guard("{}", "--claim a/b --ifname net1").code, 2);
  EXPECT_EQ(Guard("not json", "--claim a/b --ifname net1").code, 2);
  EXPECT_EQ(Guard(R"({"pid": 999999999})", "--claim a/b --ifname net1").code, 2);
  EXPECT_EQ(Guard(State(), "--ifname net1").code, 2);
  EXPECT_EQ(Guard(State(), "--claim a/b --ifname averyveryverylongname").code, 2);
  EXPECT_EQ(Guard(State(), "--claim a/b --bogus").code, 2);
}

}  // namespace
