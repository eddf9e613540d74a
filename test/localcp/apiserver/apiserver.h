// knd-apiserver: a stand-in Kubernetes API server for the local control plane (issue 3).
//
// It serves the REST + watch surface knd and the other stand-ins touch — core v1 nodes, pods,
// events, namespaces; resource.k8s.io/v1 resourceslices, deviceclasses, resourceclaims,
// resourceclaimtemplates; events.k8s.io/v1 events; k8s.cni.cncf.io/v1
// network-attachment-definitions — with the semantics clients rely on: one global
// resourceVersion, optimistic concurrency, status subresources, merge patch, server-side apply
// of ResourceClaim status.devices with per-manager ownership, selectors, watches with
// bookmarks and a bounded history (410 Gone when a client is too far behind), ResourceSlice
// and claim-status validation, and real `Status` error objects. Test hooks live under /_knd/.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace knd::localcp {

struct ApiServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;               // 0: pick a free port; see ApiServer::port().
  std::string token;          // non-empty: require "Authorization: Bearer <token>".
  std::string tls_cert_file;  // both set: serve HTTPS.
  std::string tls_key_file;
  size_t history_size = 1000;  // watch events kept for resuming watches.
  int bookmark_interval_ms = 1000;
  int max_threads = 256;      // each open watch holds one.
  bool log_requests = false;  // log each request at debug level (-v).
};

class ApiServer {
 public:
  explicit ApiServer(ApiServerOptions options);
  ~ApiServer();  // Stops the server.
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // Binds and starts serving on a background thread.
  absl::Status Start();
  // Ends open watches and stops serving; idempotent.
  void Stop();
  int port() const { return port_; }
  bool tls() const;

  // Creates an object (or each item of a `*List`) as an administrator: status is kept as given
  // and no request is counted. Used for --seed.
  absl::Status Seed(const nlohmann::json& object_or_list);

  // Kubeconfig (YAML) pointing at this server.
  std::string Kubeconfig() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

// Parses manifest text (--seed files): a JSON object, or YAML with one or more documents.
absl::StatusOr<std::vector<nlohmann::json>> ParseManifests(const std::string& text);

}  // namespace knd::localcp
