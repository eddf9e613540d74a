// Tests of the DRA resource-health stream: a real Plugin on a temp kubelet dir, read by a real
// gRPC client speaking v1alpha1.DRAResourceHealth over the unix socket, as the kubelet does.
#include "dra/health.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <condition_variable>
#include <deque>
#include <filesystem>
#include <future>
#include <mutex>
#include <optional>
#include <thread>

#include "dra/fake_kube.h"
#include "dra/plugin.h"
#include "drahealth/v1alpha1/api.grpc.pb.h"
#include "pluginregistration/v1/api.grpc.pb.h"

namespace knd::dra {
namespace {

using ::testing::ElementsAre;
using ::testing::Ge;
using ::testing::Le;

namespace hv1 = ::v1alpha1;
namespace reg = ::pluginregistration;

constexpr char kDriver[] = "knd.k8s.cni.cncf.io";
// Long enough for a message that is due to arrive; a wait that must stay empty uses kQuiet.
constexpr auto kArrive = std::chrono::seconds(10);
constexpr auto kQuiet = std::chrono::milliseconds(500);

int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::shared_ptr<grpc::Channel> Dial(const std::string& socket) {
  return grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials());
}

// One NodeWatchResources stream, opened like the kubelet opens it; a thread reads it into a
// queue so the test can wait for a message with a timeout (or for none).
class Watch {
 public:
  explicit Watch(const std::string& socket) : stub_(hv1::DRAResourceHealth::NewStub(Dial(socket))) {
    // A bound on the whole test, so a bug cannot hang it.
    ctx_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    reader_ = stub_->NodeWatchResources(&ctx_, hv1::NodeWatchResourcesRequest());
    thread_ = std::thread([this] {
      hv1::NodeWatchResourcesResponse r;
      while (reader_->Read(&r)) {
        std::lock_guard<std::mutex> l(mu_);
        queue_.push_back(r);
        cv_.notify_all();
      }
      grpc::Status st = reader_->Finish();
      std::lock_guard<std::mutex> l(mu_);
      status_ = st;
      cv_.notify_all();
    });
  }
  ~Watch() {
    ctx_.TryCancel();
    thread_.join();
  }

  // The next message, or nothing if none arrives within `timeout`.
  std::optional<hv1::NodeWatchResourcesResponse> Next(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> l(mu_);
    if (!cv_.wait_for(l, timeout, [&] { return !queue_.empty(); })) return std::nullopt;
    auto r = std::move(queue_.front());
    queue_.pop_front();
    return r;
  }

  // How the stream ended, or nothing if it is still open after `timeout`.
  std::optional<grpc::Status> Ended(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait_for(l, timeout, [&] { return status_.has_value(); });
    return status_;
  }

 private:
  std::unique_ptr<hv1::DRAResourceHealth::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<hv1::NodeWatchResourcesResponse>> reader_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<hv1::NodeWatchResourcesResponse> queue_;
  std::optional<grpc::Status> status_;
};

struct Seen {
  std::string pool, device;
  hv1::HealthStatus health;
  std::string message;
  bool operator==(const Seen&) const = default;
};

std::vector<Seen> Devices(const hv1::NodeWatchResourcesResponse& r) {
  std::vector<Seen> out;
  for (const auto& d : r.devices()) {
    out.push_back({d.device().pool_name(), d.device().device_name(), d.health(), d.message()});
  }
  return out;
}

void PrintTo(const Seen& s, std::ostream* os) {
  *os << s.pool << "/" << s.device << " " << hv1::HealthStatus_Name(s.health) << " \"" << s.message
      << "\"";
}

class HealthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/dra-health-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    store_ = std::make_unique<state::PlanStore>(dir_ + "/plans");
    Preparer::Options popts{kDriver, "node1", dir_ + "/cdi", nullptr};
    preparer_ = std::make_unique<Preparer>(
        kube_, *store_, [](const std::string&) -> std::optional<inventory::Device> { return {}; },
        popts);
    SetDevices({{"node1", "eth1", true, "ok"}, {"node1", "eth2", false, "link is down"}});
  }
  void TearDown() override {
    plugin_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Starts a plugin; with a health source reading `devices_` unless `with_health` is false.
  void StartPlugin(bool with_health = true,
                   std::chrono::milliseconds resend = kDefaultHealthResendInterval) {
    Plugin::Options opts{kDriver, dir_ + "/kubelet", "node1"};
    if (with_health) {
      opts.health = [this] {
        std::lock_guard<std::mutex> l(mu_);
        return devices_;
      };
      opts.health_resend_interval = resend;
    }
    plugin_ = std::make_unique<Plugin>(std::move(opts), *preparer_);
    ASSERT_TRUE(plugin_->Start().ok());
  }

  void SetDevices(std::vector<DeviceHealthInfo> d) {
    std::lock_guard<std::mutex> l(mu_);
    devices_ = std::move(d);
  }

  std::vector<std::string> GetInfoVersions() {
    auto stub = reg::Registration::NewStub(Dial(plugin_->registration_socket()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    reg::PluginInfo info;
    grpc::Status st = stub->GetInfo(&ctx, reg::InfoRequest(), &info);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return {info.supported_versions().begin(), info.supported_versions().end()};
  }

  std::string dir_;
  fakes::FakeKube kube_;
  std::unique_ptr<state::PlanStore> store_;
  std::unique_ptr<Preparer> preparer_;
  std::unique_ptr<Plugin> plugin_;
  std::mutex mu_;
  std::vector<DeviceHealthInfo> devices_;
};

TEST_F(HealthTest, AdvertisedOnlyWithASource) {
  StartPlugin(/*with_health=*/false);
  EXPECT_THAT(GetInfoVersions(), ElementsAre("v1.DRAPlugin", "v1beta1.DRAPlugin"));
  // Not served either: the kubelet gets UNIMPLEMENTED (and retries, harmlessly).
  Watch w(plugin_->dra_socket());
  auto ended = w.Ended(kArrive);
  ASSERT_TRUE(ended.has_value());
  EXPECT_EQ(ended->error_code(), grpc::StatusCode::UNIMPLEMENTED);
  plugin_->NotifyHealthChanged();  // a no-op, not a crash
  plugin_.reset();

  StartPlugin(/*with_health=*/true);
  EXPECT_THAT(GetInfoVersions(),
              ElementsAre("v1.DRAPlugin", "v1beta1.DRAPlugin", "v1alpha1.DRAResourceHealth"));
}

TEST_F(HealthTest, FirstMessageListsEveryDevice) {
  StartPlugin();
  const int64_t before = UnixNow();
  Watch w(plugin_->dra_socket());
  auto first = w.Next(kArrive);
  const int64_t after = UnixNow();
  ASSERT_TRUE(first.has_value());
  EXPECT_THAT(Devices(*first), ElementsAre(Seen{"node1", "eth1", hv1::HEALTHY, "ok"},
                                           Seen{"node1", "eth2", hv1::UNHEALTHY, "link is down"}));
  for (const auto& d : first->devices()) {
    EXPECT_THAT(d.last_updated_time(), Ge(before));
    EXPECT_THAT(d.last_updated_time(), Le(after));
    EXPECT_EQ(d.health_check_timeout_seconds(), 0);
  }
}

TEST_F(HealthTest, ResendsAfterNotifyOnlyWhenChanged) {
  StartPlugin();
  Watch a(plugin_->dra_socket());
  Watch b(plugin_->dra_socket());
  ASSERT_TRUE(a.Next(kArrive).has_value());
  ASSERT_TRUE(b.Next(kArrive).has_value());

  // Nothing changed: a Notify sends nothing.
  plugin_->NotifyHealthChanged();
  EXPECT_FALSE(a.Next(kQuiet).has_value());
  EXPECT_FALSE(b.Next(kQuiet).has_value());

  // eth2 came up, eth3 appeared: every stream gets the new full list.
  SetDevices({{"node1", "eth1", true, "ok"},
              {"node1", "eth2", true, "ok"},
              {"node1", "eth3", false, "device is missing from the node"}});
  plugin_->NotifyHealthChanged();
  for (Watch* w : {&a, &b}) {
    auto next = w->Next(kArrive);
    ASSERT_TRUE(next.has_value());
    EXPECT_THAT(Devices(*next), ElementsAre(Seen{"node1", "eth1", hv1::HEALTHY, "ok"},
                                            Seen{"node1", "eth2", hv1::HEALTHY, "ok"},
                                            Seen{"node1", "eth3", hv1::UNHEALTHY,
                                                 "device is missing from the node"}));
  }
  // ... and only once.
  plugin_->NotifyHealthChanged();
  EXPECT_FALSE(a.Next(kQuiet).has_value());
  EXPECT_FALSE(b.Next(kQuiet).has_value());
}

TEST_F(HealthTest, KeepaliveResendsAnUnchangedList) {
  StartPlugin(/*with_health=*/true, /*resend=*/std::chrono::milliseconds(200));
  Watch w(plugin_->dra_socket());
  auto first = w.Next(kArrive);
  ASSERT_TRUE(first.has_value());
  auto again = w.Next(kArrive);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(Devices(*again), Devices(*first));
}

TEST_F(HealthTest, LongMessageIsClamped) {
  SetDevices({{"node1", "eth1", false, std::string(5000, 'x')}});
  StartPlugin();
  Watch w(plugin_->dra_socket());
  auto first = w.Next(kArrive);
  ASSERT_TRUE(first.has_value());
  ASSERT_EQ(first->devices_size(), 1);
  EXPECT_EQ(first->devices(0).message(), std::string(1021, 'x') + "...");
}

TEST_F(HealthTest, StopEndsOpenStreamsAndCanRestart) {
  StartPlugin();
  Watch w(plugin_->dra_socket());
  ASSERT_TRUE(w.Next(kArrive).has_value());

  // Stop must not wait on the open stream. Past kShutdownGrace the server would cancel it
  // anyway, so returning well before that shows the stream was ended by the plugin.
  auto stopped = std::async(std::launch::async, [this] { plugin_->Stop(); });
  ASSERT_EQ(stopped.wait_for(kShutdownGrace - std::chrono::seconds(2)), std::future_status::ready)
      << "Stop() hangs on an open health stream";
  auto ended = w.Ended(kArrive);
  ASSERT_TRUE(ended.has_value()) << "the client stream is still open after Stop()";
  EXPECT_FALSE(ended->ok());
  EXPECT_FALSE(std::filesystem::exists(plugin_->dra_socket()));
  plugin_->NotifyHealthChanged();  // between Stop and Start: harmless

  // A restarted plugin serves streams again.
  ASSERT_TRUE(plugin_->Start().ok());
  Watch again(plugin_->dra_socket());
  EXPECT_TRUE(again.Next(kArrive).has_value());
}

// The kubelet going away (restart, stream reset) must free the handler thread, not only a
// later Stop: the sync server has a bounded pool and the kubelet reconnects every 5 s.
TEST(HealthServiceTest, ClientThatLeavesReleasesItsHandler) {
  char tmpl[] = "/tmp/dra-health-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  const std::string socket = dir + "/health.sock";
  HealthService health([] { return std::vector<DeviceHealthInfo>{{"node1", "eth1", true, "ok"}}; });
  grpc::ServerBuilder b;
  b.AddListeningPort("unix:" + socket, grpc::InsecureServerCredentials());
  b.RegisterService(health.service());
  std::unique_ptr<grpc::Server> server = b.BuildAndStart();
  ASSERT_NE(server, nullptr);
  {
    Watch w(socket);
    ASSERT_TRUE(w.Next(kArrive).has_value());
    EXPECT_EQ(health.open_streams(), 1);
  }  // cancelled by the client
  const auto deadline = std::chrono::steady_clock::now() + kArrive;
  while (health.open_streams() != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(health.open_streams(), 0) << "the handler still runs after the client left";
  server->Shutdown();
  std::filesystem::remove_all(dir);
}

TEST(ClampHealthMessage, KeepsShortCutsLongOnACharacterBoundary) {
  EXPECT_EQ(ClampHealthMessage("link is down"), "link is down");
  EXPECT_EQ(ClampHealthMessage(std::string(1024, 'a')), std::string(1024, 'a'));
  EXPECT_EQ(ClampHealthMessage(std::string(1025, 'a')), std::string(1021, 'a') + "...");
  // "é" is two bytes; with 1020 ASCII bytes first it straddles the cut at 1021.
  const std::string s = std::string(1020, 'a') + "\xc3\xa9" + std::string(10, 'b');
  EXPECT_EQ(ClampHealthMessage(s), std::string(1020, 'a') + "...");
}

}  // namespace
}  // namespace knd::dra
