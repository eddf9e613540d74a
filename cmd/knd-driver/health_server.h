// The driver's HTTP endpoint for probes and scraping (--metrics-address):
//   GET /healthz  200 "ok" while the process serves requests (liveness);
//   GET /readyz   200 when every readiness check passes, else 503 listing the failing ones;
//   GET /metrics  Prometheus text exposition produced by the `metrics` callback.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"

namespace httplib {
class Server;
}

namespace knd::driver {

class HealthServer {
 public:
  // Names of the readiness checks that fail right now (empty = ready).
  using NotReadyFn = std::function<std::vector<std::string>()>;
  using MetricsFn = std::function<std::string()>;

  HealthServer(NotReadyFn not_ready, MetricsFn metrics);
  ~HealthServer();  // Stop()
  HealthServer(const HealthServer&) = delete;
  HealthServer& operator=(const HealthServer&) = delete;

  // `address` is "host:port", ":port" (all addresses) or "[v6]:port". Binds before returning,
  // so a taken port is an error here, not a silent background failure.
  absl::Status Start(const std::string& address);
  void Stop();
  int port() const { return port_; }

 private:
  NotReadyFn not_ready_;
  MetricsFn metrics_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

// Splits a listen address into host and port ("" host = all addresses).
absl::Status ParseListenAddress(const std::string& address, std::string* host, int* port);

}  // namespace knd::driver
