// The kubelet-facing side of the DRA driver: the gRPC wiring around a Preparer.
//
// Two unix sockets, as the kubelet expects (docs/wire-facts.md §1, §2):
//   <kubelet-dir>/plugins/<driver>/dra.sock          DRAPlugin v1 and v1beta1 (same logic)
//   <kubelet-dir>/plugins_registry/<driver>-reg.sock  pluginregistration.Registration
// The DRA socket serves before the registration socket appears, because a 1.34+ kubelet
// connects to the endpoint as soon as GetInfo answers. A stale socket file left by a crashed
// predecessor is replaced (only if it is a socket: anything else is an error, never deleted);
// both sockets are removed on Stop so the kubelet deregisters us.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "dra/preparer.h"

namespace grpc {
class Server;
class Service;
}  // namespace grpc

namespace knd::dra {

// The registration strings advertised in GetInfo, preferred first.
inline constexpr const char* kSupportedVersions[] = {"v1.DRAPlugin", "v1beta1.DRAPlugin"};

class Plugin {
 public:
  struct Options {
    std::string driver_name;
    std::string kubelet_dir = "/var/lib/kubelet";
    std::string node_name;
  };

  Plugin(Options opts, Preparer& preparer);
  ~Plugin();  // Stop()
  Plugin(const Plugin&) = delete;
  Plugin& operator=(const Plugin&) = delete;

  // Starts the DRA server, then the registration server. On failure nothing is left running.
  absl::Status Start();
  // Stops both servers (in-flight calls finish) and removes both sockets. Idempotent.
  void Stop();

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
  std::unique_ptr<grpc::Server> dra_server_;
  std::unique_ptr<grpc::Server> reg_server_;
  std::atomic<bool> registered_{false};
  mutable std::mutex mu_;
  std::string registration_error_ ABSL_GUARDED_BY(mu_);
};

// Removes `path` if it is a unix socket (a stale one from a previous run); absent = OK; any
// other kind of file is FailedPrecondition and is left alone.
absl::Status RemoveStaleSocket(const std::string& path);

}  // namespace knd::dra
