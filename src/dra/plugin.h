// The kubelet-facing side of the DRA driver: the gRPC wiring around a Preparer.
//
// Two unix sockets, as the kubelet expects (docs/wire-facts.md §1, §2):
//   <kubelet-dir>/plugins/<driver>/dra.sock          DRAPlugin v1 and v1beta1 (same logic)
//   <kubelet-dir>/plugins_registry/<driver>-reg.sock  pluginregistration.Registration
// The DRA socket serves before the registration socket appears, because a 1.34+ kubelet
// connects to the endpoint as soon as GetInfo answers. A stale socket file left by a crashed
// predecessor is replaced (only if it is a socket: anything else is an error, never deleted);
// both sockets are removed on Stop so the kubelet deregisters us.
//
// With a DeviceHealthSource, the DRA socket also serves v1alpha1.DRAResourceHealth
// (dra/health.h, docs/wire-facts.md §1.5) and GetInfo advertises it; without, neither.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "dra/health.h"
#include "dra/preparer.h"

namespace grpc {
class Server;
class Service;
}  // namespace grpc

namespace knd::dra {

// The DRAPlugin registration strings advertised in GetInfo, preferred first
// (kHealthServiceVersion follows them when the health service is served).
inline constexpr const char* kSupportedVersions[] = {"v1.DRAPlugin", "v1beta1.DRAPlugin"};

class Plugin {
 public:
  struct Options {
    std::string driver_name;
    std::string kubelet_dir = "/var/lib/kubelet";
    std::string node_name;
    // Device health for the kubelet (NodeWatchResources). Empty: the service is neither
    // served nor advertised. Called on gRPC threads; see DeviceHealthSource.
    DeviceHealthSource health = {};
    // Keepalive of the health streams: the full list is resent at least this often.
    std::chrono::milliseconds health_resend_interval = kDefaultHealthResendInterval;
  };

  Plugin(Options opts, Preparer& preparer);
  ~Plugin();  // Stop()
  Plugin(const Plugin&) = delete;
  Plugin& operator=(const Plugin&) = delete;

  // Starts the DRA server, then the registration server. On failure nothing is left running.
  absl::Status Start();
  // Stops both servers and removes both sockets. Idempotent. Open health streams end at once;
  // other in-flight calls get kShutdownGrace to finish, then are cancelled (their handlers
  // still run to completion; the kubelet retries, Prepare/Unprepare are idempotent).
  void Stop();

  // The device inventory may have changed: open health streams resend the device list if it
  // differs. Cheap, safe from any thread at any time; a no-op without a health source.
  void NotifyHealthChanged();

  // The registration strings GetInfo advertises.
  std::vector<std::string> SupportedVersions() const;

  // Set by the kubelet's NotifyRegistrationStatus; false until the kubelet says so.
  bool registered() const { return registered_.load(); }
  // The error the kubelet reported with the last NotifyRegistrationStatus(false), if any.
  std::string registration_error() const;

  std::string dra_socket() const;
  std::string registration_socket() const;

  // Called by the registration service.
  void OnRegistrationStatus(bool registered, const std::string& error);

 private:
  Options opts_;
  Preparer& preparer_;
  std::unique_ptr<grpc::Service> v1_;
  std::unique_ptr<grpc::Service> v1beta1_;
  std::unique_ptr<grpc::Service> registration_;
  // Lives as long as the Plugin (not only while serving) so NotifyHealthChanged never races
  // Start/Stop. Null without a health source.
  const std::unique_ptr<HealthService> health_;
  std::unique_ptr<grpc::Server> dra_server_;
  std::unique_ptr<grpc::Server> reg_server_;
  std::atomic<bool> registered_{false};
  mutable std::mutex mu_;
  std::string registration_error_ ABSL_GUARDED_BY(mu_);
};

// How long Stop waits for in-flight calls before cancelling them.
inline constexpr std::chrono::seconds kShutdownGrace{10};

// Removes `path` if it is a unix socket (a stale one from a previous run); absent = OK; any
// other kind of file is FailedPrecondition and is left alone.
absl::Status RemoveStaleSocket(const std::string& path);

}  // namespace knd::dra
