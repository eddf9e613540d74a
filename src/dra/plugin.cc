#include "dra/plugin.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/metrics.h"
#include "common/status.h"
#include "common/text.h"
#include "dra/v1/api.grpc.pb.h"
#include "dra/v1beta1/api.grpc.pb.h"
#include "pluginregistration/v1/api.grpc.pb.h"

namespace knd::dra {
namespace {

std::vector<ClaimRef> ClaimsOf(const auto& req) {
  std::vector<ClaimRef> out;
  out.reserve(req.claims_size());
  for (const auto& c : req.claims()) out.push_back(ClaimRef{c.namespace_(), c.uid(), c.name()});
  return out;
}

// v1 and v1beta1 carry the same messages (v1 adds Device.share_id, set for a share of a shared
// parent), so one template serves both; no message conversion is needed.
template <class Base, class PrepReq, class PrepResp, class UnReq, class UnResp>
class DraService final : public Base {
 public:
  DraService(Preparer& p, const char* version) : p_(p), version_(version) {}

  grpc::Status NodePrepareResources(grpc::ServerContext*, const PrepReq* req,
                                    PrepResp* resp) override {
    SPDLOG_DEBUG("{} NodePrepareResources: {} claim(s)", version_, req->claims_size());
    const auto start = std::chrono::steady_clock::now();
    for (auto& [uid, r] : p_.PrepareBatch(ClaimsOf(*req))) {
      auto& out = (*resp->mutable_claims())[uid];
      Claims().Inc({"NodePrepareResources", r.error.empty() ? "success" : "error"});
      if (!r.error.empty()) {
        out.set_error(ValidUtf8(r.error));  // proto3 strings must be UTF-8
        continue;
      }
      for (const PreparedDevice& d : r.devices) {
        auto* dev = out.add_devices();
        for (const auto& n : d.request_names) dev->add_request_names(n);
        dev->set_pool_name(d.pool);
        dev->set_device_name(d.device);
        for (const auto& id : d.cdi_ids) dev->add_cdi_device_ids(id);
        if constexpr (requires { dev->set_share_id(d.share_id); }) {
          if (!d.share_id.empty()) dev->set_share_id(d.share_id);
        }
      }
    }
    Observe("NodePrepareResources", start);
    return grpc::Status::OK;
  }

  grpc::Status NodeUnprepareResources(grpc::ServerContext*, const UnReq* req,
                                      UnResp* resp) override {
    SPDLOG_DEBUG("{} NodeUnprepareResources: {} claim(s)", version_, req->claims_size());
    const auto start = std::chrono::steady_clock::now();
    for (auto& [uid, err] : p_.UnprepareBatch(ClaimsOf(*req))) {
      (*resp->mutable_claims())[uid].set_error(ValidUtf8(err));
      Claims().Inc({"NodeUnprepareResources", err.empty() ? "success" : "error"});
    }
    Observe("NodeUnprepareResources", start);
    return grpc::Status::OK;
  }

 private:
  static metrics::CounterFamily& Claims() {
    static auto& c = metrics::Default().Counter(
        "knd_dra_claims_total", "Claims handled by the kubelet plugin, by method and outcome.",
        {"method", "outcome"});
    return c;
  }
  void Observe(const char* method, std::chrono::steady_clock::time_point start) const {
    static auto& h = metrics::Default().Histogram(
        "knd_dra_request_duration_seconds",
        "Time to answer one kubelet DRA call (all its claims), by method and API version.",
        {"method", "api"});
    h.Observe({method, version_},
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }

  Preparer& p_;
  const char* version_;
};

namespace v1 = ::k8s::io::kubelet::pkg::apis::dra::v1;
namespace v1beta1 = ::k8s::io::kubelet::pkg::apis::dra::v1beta1;
namespace reg = ::pluginregistration;

using V1Service = DraService<v1::DRAPlugin::Service, v1::NodePrepareResourcesRequest,
                             v1::NodePrepareResourcesResponse, v1::NodeUnprepareResourcesRequest,
                             v1::NodeUnprepareResourcesResponse>;
using V1beta1Service =
    DraService<v1beta1::DRAPlugin::Service, v1beta1::NodePrepareResourcesRequest,
               v1beta1::NodePrepareResourcesResponse, v1beta1::NodeUnprepareResourcesRequest,
               v1beta1::NodeUnprepareResourcesResponse>;

class RegistrationService final : public reg::Registration::Service {
 public:
  RegistrationService(Plugin& plugin, std::string driver, std::string endpoint,
                      std::vector<std::string> versions)
      : plugin_(plugin),
        driver_(std::move(driver)),
        endpoint_(std::move(endpoint)),
        versions_(std::move(versions)) {}

  grpc::Status GetInfo(grpc::ServerContext*, const reg::InfoRequest*,
                       reg::PluginInfo* info) override {
    info->set_type("DRAPlugin");
    info->set_name(driver_);
    info->set_endpoint(endpoint_);
    for (const std::string& v : versions_) info->add_supported_versions(v);
    return grpc::Status::OK;
  }

  grpc::Status NotifyRegistrationStatus(grpc::ServerContext*, const reg::RegistrationStatus* s,
                                        reg::RegistrationStatusResponse*) override {
    plugin_.OnRegistrationStatus(s->plugin_registered(), s->error());
    return grpc::Status::OK;
  }

 private:
  Plugin& plugin_;
  const std::string driver_;
  const std::string endpoint_;
  const std::vector<std::string> versions_;
};

absl::StatusOr<std::unique_ptr<grpc::Server>> Serve(const std::string& socket,
                                                    std::vector<grpc::Service*> services) {
  RETURN_IF_ERROR(RemoveStaleSocket(socket));
  grpc::ServerBuilder b;
  b.AddListeningPort("unix:" + socket, grpc::InsecureServerCredentials());
  for (grpc::Service* s : services) b.RegisterService(s);
  std::unique_ptr<grpc::Server> server = b.BuildAndStart();
  if (!server) {
    return absl::UnavailableError(absl::StrCat("cannot serve gRPC on unix socket ", socket));
  }
  return server;
}

}  // namespace

absl::Status RemoveStaleSocket(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoStatus("lstat " + path);
  }
  if (!S_ISSOCK(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " exists and is not a socket; refusing to replace it"));
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoStatus("unlink " + path);
  return absl::OkStatus();
}

Plugin::Plugin(Options opts, Preparer& preparer)
    : opts_(std::move(opts)),
      preparer_(preparer),
      health_(opts_.health
                  ? std::make_unique<HealthService>(opts_.health, opts_.health_resend_interval)
                  : nullptr) {}

Plugin::~Plugin() { Stop(); }

std::string Plugin::dra_socket() const {
  return absl::StrCat(opts_.kubelet_dir, "/plugins/", opts_.driver_name, "/dra.sock");
}

std::string Plugin::registration_socket() const {
  return absl::StrCat(opts_.kubelet_dir, "/plugins_registry/", opts_.driver_name, "-reg.sock");
}

std::vector<std::string> Plugin::SupportedVersions() const {
  std::vector<std::string> out(std::begin(kSupportedVersions), std::end(kSupportedVersions));
  if (health_) out.push_back(kHealthServiceVersion);
  return out;
}

void Plugin::NotifyHealthChanged() {
  if (health_) health_->Notify();
}

std::string Plugin::registration_error() const {
  std::lock_guard<std::mutex> l(mu_);
  return registration_error_;
}

void Plugin::OnRegistrationStatus(bool registered, const std::string& error) {
  {
    std::lock_guard<std::mutex> l(mu_);
    registration_error_ = error;
  }
  registered_.store(registered);
  if (registered) {
    spdlog::info("kubelet registered DRA driver {}", opts_.driver_name);
  } else {
    spdlog::error("kubelet refused DRA driver {}: {}", opts_.driver_name, error);
  }
}

absl::Status Plugin::Start() {
  if (dra_server_) return absl::FailedPreconditionError("DRA plugin already started");
  RETURN_IF_ERROR(MakeDirs(absl::StrCat(opts_.kubelet_dir, "/plugins/", opts_.driver_name)));
  RETURN_IF_ERROR(MakeDirs(absl::StrCat(opts_.kubelet_dir, "/plugins_registry")));

  v1_ = std::make_unique<V1Service>(preparer_, "v1");
  v1beta1_ = std::make_unique<V1beta1Service>(preparer_, "v1beta1");
  registration_ = std::make_unique<RegistrationService>(*this, opts_.driver_name, dra_socket(),
                                                        SupportedVersions());
  std::vector<grpc::Service*> dra_services = {v1_.get(), v1beta1_.get()};
  if (health_) {
    health_->Resume();  // after a Stop
    dra_services.push_back(health_->service());
  }

  // DRA first: the kubelet may connect to the endpoint the moment GetInfo answers.
  auto dra = Serve(dra_socket(), std::move(dra_services));
  if (!dra.ok()) return dra.status();
  dra_server_ = std::move(*dra);
  auto regs = Serve(registration_socket(), {registration_.get()});
  if (!regs.ok()) {
    Stop();
    return regs.status();
  }
  reg_server_ = std::move(*regs);
  spdlog::info("DRA plugin {} serving {} (registration {})", opts_.driver_name, dra_socket(),
               registration_socket());
  return absl::OkStatus();
}

void Plugin::Stop() {
  // Registration first, so the kubelet stops routing new calls before the DRA socket goes.
  if (reg_server_) {
    reg_server_->Shutdown(std::chrono::system_clock::now() + kShutdownGrace);
    reg_server_.reset();
    if (absl::Status st = RemoveStaleSocket(registration_socket()); !st.ok()) {
      spdlog::warn("{}", st.ToString());
    }
  }
  if (dra_server_) {
    // Health streams never end on their own: end them, or Shutdown waits out the grace.
    if (health_) health_->Shutdown();
    dra_server_->Shutdown(std::chrono::system_clock::now() + kShutdownGrace);
    dra_server_.reset();
    if (absl::Status st = RemoveStaleSocket(dra_socket()); !st.ok()) {
      spdlog::warn("{}", st.ToString());
    }
  }
  registered_.store(false);
}

}  // namespace knd::dra
