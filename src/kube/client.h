// Kubernetes API client: REST/JSON over libcurl (TLS via OpenSSL), configured from a
// kubeconfig or in-cluster. Objects are nlohmann::json; paths are REST paths such as
// "/apis/resource.k8s.io/v1/namespaces/ns/resourceclaims/name".
//
// Every call is bounded by a timeout, rate limited (QPS/burst), and retried with backoff and
// jitter on 429/5xx/connection errors (not on 4xx). Errors carry the HTTP status and the
// API's own message (Status.message): 404 -> NotFound, 409 -> Aborted (conflict) or
// AlreadyExists, 410 -> OutOfRange (Gone), 401/403 -> PermissionDenied/Unauthenticated,
// 422/400 -> InvalidArgument, timeouts/connection errors -> Unavailable.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace knd::kube {

// The longest watch event (one line of the stream) knd accepts by default. etcd refuses
// objects over its request limit (--max-request-bytes, 1.5 MiB by default), so no object the
// API server can store is near this; an event is one object as JSON (larger than etcd's
// protobuf form, but not tenfold) inside {"type":..,"object":..}. A longer line comes from a
// broken server or proxy: without a cap knd would buffer it until memory runs out.
inline constexpr size_t kDefaultWatchMaxEventBytes = size_t{16} << 20;  // 16 MiB
inline constexpr size_t kDefaultMaxResponseBytes = size_t{256} << 20;   // 256 MiB

struct ClientConfig {
  std::string server;  // https://host:port or http://...
  std::string bearer_token;
  std::string bearer_token_file;  // re-read when it changes (token rotation)
  std::string ca_file;
  std::string ca_data;  // PEM
  std::string client_cert_file, client_key_file;
  std::string client_cert_data, client_key_data;  // PEM
  bool insecure_skip_tls_verify = false;
  double qps = 20;
  int burst = 40;
  std::chrono::milliseconds timeout{10000};
  int max_retries = 5;
  // Backoff between retries: jittered exponential from retry_base, capped at retry_cap.
  std::chrono::milliseconds retry_base{200};
  std::chrono::milliseconds retry_cap{5000};
  // How often a watch looks at its stop flag on an idle stream when nobody calls
  // WakeWatches(); a safety net, not the way to stop.
  std::chrono::milliseconds watch_stop_check{1000};
  // A watch event (line) longer than this ends the watch with ResourceExhausted, naming the
  // resource and the limit; the partial line is dropped and RunListWatch lists again. Only
  // the incomplete trailing line is ever buffered, so this also bounds a watch's memory.
  size_t watch_max_event_bytes = kDefaultWatchMaxEventBytes;
  // A response body (get, list, create, ...) longer than this ends the request with
  // ResourceExhausted, naming the request and the limit, and is not retried: a peer (or a broken
  // proxy) cannot make the driver buffer without bound.
  size_t max_response_bytes = kDefaultMaxResponseBytes;
  std::string user_agent = "knd";
};

// Parses a kubeconfig (current context, or `context` if given). Base64 `*-data` fields are
// decoded; relative file paths are resolved against the kubeconfig's directory.
absl::StatusOr<ClientConfig> LoadKubeconfig(const std::string& path,
                                            const std::string& context = "");
// In-cluster: KUBERNETES_SERVICE_HOST/PORT, the service-account token file and CA under
// `sa_dir` (default /var/run/secrets/kubernetes.io/serviceaccount).
absl::StatusOr<ClientConfig> InClusterConfig(
    const std::string& sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount");

struct WatchEvent {
  std::string type;  // ADDED, MODIFIED, DELETED, BOOKMARK, ERROR
  nlohmann::json object;
};

struct ListOptions {
  std::string field_selector;
  std::string label_selector;
  std::string resource_version;
  bool allow_watch_bookmarks = true;
  int timeout_seconds = 0;  // watch only; 0 = server default
};

// The narrow interface the rest of knd uses (fakes implement it in unit tests).
class Client {
 public:
  virtual ~Client() = default;
  virtual absl::StatusOr<nlohmann::json> Get(const std::string& path) = 0;
  virtual absl::StatusOr<nlohmann::json> List(const std::string& path,
                                              const ListOptions& opts = {}) = 0;
  virtual absl::StatusOr<nlohmann::json> Create(const std::string& collection_path,
                                                const nlohmann::json& obj) = 0;
  // PUT; obj must carry metadata.resourceVersion for optimistic concurrency.
  virtual absl::StatusOr<nlohmann::json> Update(const std::string& path,
                                                const nlohmann::json& obj) = 0;
  // application/merge-patch+json
  virtual absl::StatusOr<nlohmann::json> MergePatch(const std::string& path,
                                                    const nlohmann::json& patch) = 0;
  // application/apply-patch+yaml (JSON is valid YAML), ?fieldManager=..&force=true
  virtual absl::StatusOr<nlohmann::json> Apply(const std::string& path, const nlohmann::json& obj,
                                               const std::string& field_manager,
                                               bool force = true) = 0;
  virtual absl::Status Delete(const std::string& path) = 0;  // 404 = OK
  virtual absl::Status DeleteCollection(const std::string& collection_path,
                                        const ListOptions& opts) = 0;
  // Streams watch events until `on_event` returns false, `stop` becomes true, or the stream
  // ends. Returns OutOfRange on 410 Gone (caller relists). Blocking.
  virtual absl::Status Watch(const std::string& collection_path, const ListOptions& opts,
                             const std::function<bool(const WatchEvent&)>& on_event,
                             const std::atomic<bool>& stop) = 0;
  // Makes every Watch in progress on this client look at its `stop` flag now rather than at
  // its next periodic check. Call it after setting a stop flag; watches whose flag is not set
  // carry on.
  virtual void WakeWatches() {}
};

// The libcurl-backed client.
absl::StatusOr<std::unique_ptr<Client>> NewClient(const ClientConfig& cfg);

// Retries `fn` (a read-modify-write) while it returns Aborted (409 conflict), up to `attempts`.
absl::Status RetryOnConflict(const std::function<absl::Status()>& fn, int attempts = 5);

}  // namespace knd::kube
