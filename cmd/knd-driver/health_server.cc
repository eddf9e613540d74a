#include "health_server.h"

#include <httplib.h>

#include <charconv>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace knd::driver {

absl::Status ParseListenAddress(const std::string& address, std::string* host, int* port) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics-address ", address, ": want host:port or :port"));
  }
  std::string h = address.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  std::string p = address.substr(colon + 1);
  int v = -1;
  auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
  if (p.empty() || ec != std::errc() || end != p.data() + p.size() || v < 0 || v > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics-address ", address, ": port must be 0..65535"));
  }
  *host = h.empty() ? "0.0.0.0" : h;
  *port = v;
  return absl::OkStatus();
}

HealthServer::HealthServer(NotReadyFn not_ready, MetricsFn metrics)
    : not_ready_(std::move(not_ready)), metrics_(std::move(metrics)) {}

HealthServer::~HealthServer() { Stop(); }

absl::Status HealthServer::Start(const std::string& address) {
  std::string host;
  int port = 0;
  if (auto st = ParseListenAddress(address, &host, &port); !st.ok()) return st;
  server_ = std::make_unique<httplib::Server>();
  server_->set_tcp_nodelay(true);  // no 40 ms Nagle/delayed-ACK stall on kept-alive scrapes
  server_->Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  server_->Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    std::vector<std::string> failing = not_ready_();
    if (failing.empty()) {
      res.set_content("ok\n", "text/plain");
      return;
    }
    res.status = 503;
    res.set_content(absl::StrCat("not ready: ", absl::StrJoin(failing, ", "), "\n"), "text/plain");
  });
  server_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_(), "text/plain; version=0.0.4; charset=utf-8");
  });
  if (port == 0) {
    port_ = server_->bind_to_any_port(host);
  } else {
    port_ = server_->bind_to_port(host, port) ? port : -1;
  }
  if (port_ < 0) {
    server_.reset();
    return absl::UnavailableError(
        absl::StrCat("--metrics-address ", address, ": cannot listen (address in use?)"));
  }
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  return absl::OkStatus();
}

void HealthServer::Stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
  server_.reset();
}

}  // namespace knd::driver
