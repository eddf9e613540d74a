// gRPC tests of the DRA plugin: real sockets in a temp kubelet dir, real gRPC clients speaking
// the registration protocol and both DRAPlugin versions.
#include "dra/plugin.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/unique_fd.h"
#include "dra/fake_kube.h"
#include "dra/v1/api.grpc.pb.h"
#include "dra/v1beta1/api.grpc.pb.h"
#include "pluginregistration/v1/api.grpc.pb.h"

namespace knd::dra {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

namespace v1 = ::k8s::io::kubelet::pkg::apis::dra::v1;
namespace v1beta1 = ::k8s::io::kubelet::pkg::apis::dra::v1beta1;
namespace reg = ::pluginregistration;

constexpr char kDriver[] = "knd.k8s.cni.cncf.io";

bool IsSocket(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

// Leaves a bound-but-dead unix socket file behind, like a crashed predecessor would.
void MakeStaleSocket(const std::string& path) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM, 0));
  ASSERT_TRUE(fd.valid());
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(path.size(), sizeof(addr.sun_path));
  path.copy(addr.sun_path, path.size());
  ASSERT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
}

std::shared_ptr<grpc::Channel> Dial(const std::string& socket) {
  return grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials());
}

template <class Ctx>
void SetDeadline(Ctx& ctx) {
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
}

class PluginTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/dra-plugin-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    store_ = std::make_unique<state::PlanStore>(dir_ + "/plans");
    inventory::Device eth1;
    eth1.name = eth1.ifname = "eth1";
    eth1.ifindex = 5;
    eth1.mac = "02:00:00:00:00:05";
    Preparer::Options popts{kDriver, "node1", dir_ + "/cdi", nullptr};
    preparer_ = std::make_unique<Preparer>(
        kube_, *store_,
        [eth1](const std::string& n) -> std::optional<inventory::Device> {
          if (n == eth1.name) return eth1;
          return std::nullopt;
        },
        popts);
    kube_.objects["/api/v1/namespaces/ns/pods/pod"] = {
        {"metadata", {{"namespace", "ns"}, {"name", "pod"}, {"uid", "pod-uid"}}},
        {"spec", json::object()}};
    kube_.objects["/apis/resource.k8s.io/v1/namespaces/ns/resourceclaims/claim"] = {
        {"metadata", {{"namespace", "ns"}, {"name", "claim"}, {"uid", "claim-uid"}}},
        {"status",
         {{"allocation",
           {{"devices",
             {{"results",
               {{{"request", "nic"},
                 {"driver", kDriver},
                 {"pool", "node1"},
                 {"device", "eth1"}}}}}}}},
          {"reservedFor", {{{"resource", "pods"}, {"name", "pod"}, {"uid", "pod-uid"}}}}}}};
    plugin_ =
        std::make_unique<Plugin>(Plugin::Options{kDriver, dir_ + "/kubelet", "node1"}, *preparer_);
  }
  void TearDown() override {
    plugin_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::string dir_;
  fakes::FakeKube kube_;
  std::unique_ptr<state::PlanStore> store_;
  std::unique_ptr<Preparer> preparer_;
  std::unique_ptr<Plugin> plugin_;
};

TEST_F(PluginTest, RegistrationGetInfoAndNotify) {
  ASSERT_TRUE(plugin_->Start().ok());
  const std::string reg_sock = dir_ + "/kubelet/plugins_registry/" + kDriver + "-reg.sock";
  const std::string dra_sock = dir_ + "/kubelet/plugins/" + kDriver + "/dra.sock";
  EXPECT_EQ(plugin_->registration_socket(), reg_sock);
  EXPECT_TRUE(IsSocket(reg_sock));
  EXPECT_TRUE(IsSocket(dra_sock));

  auto stub = reg::Registration::NewStub(Dial(reg_sock));
  grpc::ClientContext ctx;
  SetDeadline(ctx);
  reg::PluginInfo info;
  ASSERT_TRUE(stub->GetInfo(&ctx, reg::InfoRequest(), &info).ok());
  EXPECT_EQ(info.type(), "DRAPlugin");
  EXPECT_EQ(info.name(), kDriver);
  EXPECT_EQ(info.endpoint(), dra_sock);
  EXPECT_THAT(info.supported_versions(), ElementsAre("v1.DRAPlugin", "v1beta1.DRAPlugin"));

  EXPECT_FALSE(plugin_->registered());
  reg::RegistrationStatus st;
  st.set_plugin_registered(false);
  st.set_error("no handler");
  reg::RegistrationStatusResponse r;
  grpc::ClientContext ctx2;
  SetDeadline(ctx2);
  ASSERT_TRUE(stub->NotifyRegistrationStatus(&ctx2, st, &r).ok());
  EXPECT_FALSE(plugin_->registered());
  EXPECT_EQ(plugin_->registration_error(), "no handler");
  st.set_plugin_registered(true);
  st.clear_error();
  grpc::ClientContext ctx3;
  SetDeadline(ctx3);
  ASSERT_TRUE(stub->NotifyRegistrationStatus(&ctx3, st, &r).ok());
  EXPECT_TRUE(plugin_->registered());
}

// The generated types of one API version, so one test body drives both.
struct V1Api {
  using DRAPlugin = v1::DRAPlugin;
  using NodePrepareResourcesRequest = v1::NodePrepareResourcesRequest;
  using NodePrepareResourcesResponse = v1::NodePrepareResourcesResponse;
  using NodeUnprepareResourcesRequest = v1::NodeUnprepareResourcesRequest;
  using NodeUnprepareResourcesResponse = v1::NodeUnprepareResourcesResponse;
};
struct V1beta1Api {
  using DRAPlugin = v1beta1::DRAPlugin;
  using NodePrepareResourcesRequest = v1beta1::NodePrepareResourcesRequest;
  using NodePrepareResourcesResponse = v1beta1::NodePrepareResourcesResponse;
  using NodeUnprepareResourcesRequest = v1beta1::NodeUnprepareResourcesRequest;
  using NodeUnprepareResourcesResponse = v1beta1::NodeUnprepareResourcesResponse;
};

// Same logic behind both services; exercised through real stubs of each version.
template <class Api>
void PrepareUnprepareRoundTrip(const std::string& dra_sock, const state::PlanStore& store) {
  auto stub = Api::DRAPlugin::NewStub(Dial(dra_sock));
  typename Api::NodePrepareResourcesRequest req;
  auto* c = req.add_claims();
  c->set_namespace_("ns");
  c->set_uid("claim-uid");
  c->set_name("claim");
  auto* bad = req.add_claims();
  bad->set_namespace_("ns");
  bad->set_uid("ghost-uid");
  bad->set_name("ghost");
  typename Api::NodePrepareResourcesResponse resp;
  grpc::ClientContext ctx;
  SetDeadline(ctx);
  grpc::Status s = stub->NodePrepareResources(&ctx, req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(resp.claims().size(), 2u) << "every claim UID must be answered";
  const auto& good = resp.claims().at("claim-uid");
  EXPECT_EQ(good.error(), "");
  ASSERT_EQ(good.devices_size(), 1);
  EXPECT_THAT(good.devices(0).request_names(), ElementsAre("nic"));
  EXPECT_EQ(good.devices(0).pool_name(), "node1");
  EXPECT_EQ(good.devices(0).device_name(), "eth1");
  EXPECT_THAT(resp.claims().at("ghost-uid").error(), HasSubstr("claim ns/ghost"));
  EXPECT_TRUE(store.Get("claim-uid").ok());

  typename Api::NodeUnprepareResourcesRequest ureq;
  *ureq.add_claims() = *c;
  typename Api::NodeUnprepareResourcesResponse uresp;
  grpc::ClientContext uctx;
  SetDeadline(uctx);
  ASSERT_TRUE(stub->NodeUnprepareResources(&uctx, ureq, &uresp).ok());
  ASSERT_EQ(uresp.claims().size(), 1u);
  EXPECT_EQ(uresp.claims().at("claim-uid").error(), "");
  EXPECT_TRUE(absl::IsNotFound(store.Get("claim-uid").status()));
}

TEST_F(PluginTest, PrepareOverV1) {
  ASSERT_TRUE(plugin_->Start().ok());
  PrepareUnprepareRoundTrip<V1Api>(plugin_->dra_socket(), *store_);
}

TEST_F(PluginTest, PrepareOverV1beta1) {
  ASSERT_TRUE(plugin_->Start().ok());
  PrepareUnprepareRoundTrip<V1beta1Api>(plugin_->dra_socket(), *store_);
}

TEST_F(PluginTest, StaleSocketsReplacedAndRemovedOnStop) {
  MakeStaleSocket(plugin_->dra_socket());
  MakeStaleSocket(plugin_->registration_socket());
  ASSERT_TRUE(IsSocket(plugin_->registration_socket()));
  ASSERT_TRUE(plugin_->Start().ok());
  // The replaced socket answers.
  auto stub = reg::Registration::NewStub(Dial(plugin_->registration_socket()));
  grpc::ClientContext ctx;
  SetDeadline(ctx);
  reg::PluginInfo info;
  ASSERT_TRUE(stub->GetInfo(&ctx, reg::InfoRequest(), &info).ok());
  EXPECT_EQ(info.name(), kDriver);

  plugin_->Stop();
  EXPECT_FALSE(std::filesystem::exists(plugin_->registration_socket()));
  EXPECT_FALSE(std::filesystem::exists(plugin_->dra_socket()));
  plugin_->Stop();  // idempotent
}

TEST_F(PluginTest, NonSocketInTheWayIsAnErrorAndKept) {
  std::filesystem::create_directories(dir_ + "/kubelet/plugins/" + kDriver);
  std::ofstream(plugin_->dra_socket()) << "precious";
  absl::Status st = plugin_->Start();
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.message()), HasSubstr("not a socket"));
  EXPECT_TRUE(std::filesystem::is_regular_file(plugin_->dra_socket()));
  EXPECT_FALSE(std::filesystem::exists(plugin_->registration_socket()));
}

}  // namespace
}  // namespace knd::dra
