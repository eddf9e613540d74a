// Test helpers shared by the claim status, network-status and event recorder tests: the
// stand-in API server with a real (curl) client in front of it, and a client that forwards to
// another so a test can override one verb to inject failures or races.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "apiserver.h"
#include "kube/client.h"

namespace knd::kube::testutil {

// Starts a stand-in API server and a client for it without rate limit or retries (the writers'
// own retry logic is what the tests exercise). Use with ASSERT_NO_FATAL_FAILURE.
inline void StartStandIn(std::unique_ptr<localcp::ApiServer>& server,
                         std::unique_ptr<Client>& client) {
  server = std::make_unique<localcp::ApiServer>(localcp::ApiServerOptions{});
  ASSERT_TRUE(server->Start().ok());
  ClientConfig cfg;
  cfg.server = absl::StrCat("http://127.0.0.1:", server->port());
  cfg.qps = 0;
  cfg.max_retries = 0;
  auto c = NewClient(cfg);
  ASSERT_TRUE(c.ok()) << c.status();
  client = std::move(c).value();
}

// Forwards every call to `real`; tests override the verbs they want to change.
class ForwardingClient : public Client {
 public:
  explicit ForwardingClient(Client& real) : real_(real) {}

  absl::StatusOr<nlohmann::json> Get(const std::string& p) override { return real_.Get(p); }
  absl::StatusOr<nlohmann::json> List(const std::string& p, const ListOptions& o) override {
    return real_.List(p, o);
  }
  absl::StatusOr<nlohmann::json> Create(const std::string& p, const nlohmann::json& o) override {
    return real_.Create(p, o);
  }
  absl::StatusOr<nlohmann::json> Update(const std::string& p, const nlohmann::json& o) override {
    return real_.Update(p, o);
  }
  absl::StatusOr<nlohmann::json> MergePatch(const std::string& p,
                                            const nlohmann::json& o) override {
    return real_.MergePatch(p, o);
  }
  absl::StatusOr<nlohmann::json> Apply(const std::string& p, const nlohmann::json& o,
                                       const std::string& m, bool force) override {
    return real_.Apply(p, o, m, force);
  }
  absl::Status Delete(const std::string& p) override { return real_.Delete(p); }
  absl::Status DeleteCollection(const std::string& p, const ListOptions& o) override {
    return real_.DeleteCollection(p, o);
  }
  absl::Status Watch(const std::string& p, const ListOptions& o,
                     const std::function<bool(const WatchEvent&)>& f,
                     const std::atomic<bool>& s) override {
    return real_.Watch(p, o, f, s);
  }
  void WakeWatches() override { real_.WakeWatches(); }

 private:
  Client& real_;
};

}  // namespace knd::kube::testutil
