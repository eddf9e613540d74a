// The kubelet DRA resource-health service (docs/wire-facts.md §1.5):
// v1alpha1.DRAResourceHealth/NodeWatchResources, a server stream served on the DRA socket.
//
// The kubelet (feature gate ResourceHealthStatus) opens one stream and keeps it open; every
// message carries the complete device list of the driver. Each stream here sends that list
// once when it opens, again after a Notify() whose result differs from what that stream last
// sent, and at least every `resend_interval` as a keepalive. Health is pulled from a
// DeviceHealthSource on the stream's own thread, so Notify() is only a cheap wake-up and the
// caller (a link-monitor thread) never blocks on a slow or absent kubelet.
//
// Shutdown() ends every open stream promptly (a sync gRPC handler would otherwise keep
// grpc::Server::Shutdown waiting forever); streams also notice a client that went away.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace grpc {
class Service;
}  // namespace grpc

namespace knd::dra {

// The registration string advertised in GetInfo when the service is served.
inline constexpr char kHealthServiceVersion[] = "v1alpha1.DRAResourceHealth";
// The kubelet truncates longer messages; we cut them ourselves, on a UTF-8 boundary.
inline constexpr size_t kMaxHealthMessageBytes = 1024;
inline constexpr std::chrono::milliseconds kDefaultHealthResendInterval = std::chrono::seconds(60);

struct DeviceHealthInfo {
  std::string pool;
  std::string device;
  bool healthy = true;
  std::string message;

  friend bool operator==(const DeviceHealthInfo&, const DeviceHealthInfo&) = default;
};

// Every device of the driver on this node, now. Called from gRPC handler threads, possibly
// from several at once: it must be thread-safe. Should be quick (it runs per stream, per
// Notify()).
using DeviceHealthSource = std::function<std::vector<DeviceHealthInfo>()>;

// `msg` cut to at most kMaxHealthMessageBytes bytes ("..." marks a cut), never in the middle
// of a UTF-8 sequence (proto3 strings must be valid UTF-8 for the kubelet to decode them).
std::string ClampHealthMessage(std::string msg);

class HealthService {
 public:
  // `source` must be set. A `resend_interval` <= 0 means the default.
  explicit HealthService(DeviceHealthSource source,
                         std::chrono::milliseconds resend_interval = kDefaultHealthResendInterval);
  ~HealthService();  // Shutdown(); the gRPC server using service() must be gone by then.
  HealthService(const HealthService&) = delete;
  HealthService& operator=(const HealthService&) = delete;

  // The gRPC service to register on the DRA socket server.
  grpc::Service* service();

  // The inventory may have changed: every open stream re-reads the source and sends the list
  // if it differs from what that stream last sent. Cheap; never blocks on the streams.
  void Notify();

  // Ends every open stream (they finish with UNAVAILABLE) and refuses new ones until
  // Resume(). Does not wait: the server's Shutdown waits for the handlers, which return at
  // once. Idempotent.
  void Shutdown();
  // Accepts streams again (a restarted server). A new service starts accepting.
  void Resume();

  // Streams whose handler is running (a client that went away is noticed within ~1 s).
  int open_streams() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace knd::dra
