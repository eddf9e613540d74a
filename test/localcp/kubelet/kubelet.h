// knd-kubelet: the kubelet stand-in of the local control plane. It does what the real kubelet
// does for DRA drivers, over the real protocols and sockets (docs/wire-facts.md §1–§2):
//  - watches the plugin registry directory (inotify + a scan every second, like the kubelet's
//    reconciler), registers each socket with GetInfo (1 s) + NotifyRegistrationStatus,
//    negotiates v1.DRAPlugin / v1beta1.DRAPlugin, deregisters when the socket goes;
//  - optionally wipes the node's ResourceSlices at start;
//  - on request (control HTTP API) prepares/unprepares a pod's claims through
//    NodePrepareResources / NodeUnprepareResources on the registered plugin (45 s deadline).
//  - like the kubelet with ResourceHealthStatus (beta, on by default in 1.36), opens the
//    v1alpha1.DRAResourceHealth/NodeWatchResources stream of every registered plugin that
//    advertises it, and keeps the latest device list per driver (re-opened when it ends).
// Control API (JSON):
//   GET  /plugins                      [{name, endpoint, versions, service, socket, registered}]
//   GET  /health                       {"<driver>": [{pool, device, health, message}]}
//   POST /prepare[?api=v1beta1]        {"namespace","name"} of a pod
//   POST /unprepare[?api=v1beta1]      same
//   POST /prepare-claims[?api=..]      {"claims":[{namespace,name,uid}], "driver"?} (no checks)
//   POST /unprepare-claims[?api=..]    same
// Answers: {"claims": {"<uid>": {"devices":[{requestNames,poolName,deviceName,cdiDeviceIds}],
//           "error": ""}}}; request-level failures: {"error": "..."} with a 4xx/5xx status.
//
// /prepare and /unprepare keep the kubelet's claim-info cache (pkg/kubelet/cm/dra/manager.go,
// claiminfo.go; wire-facts §1.3): per claim UID, the pods ("ns/name") referencing it and the
// devices the driver answered.
//  - /prepare still GETs the pod and each claim and checks the claim's status.reservedFor has
//    the pod; a claim already prepared on the node is NOT prepared again: the pod is added as
//    a reference and the answer comes from the cache, marked "cached": true. Only the claims
//    not in the cache go to NodePrepareResources. A prepare that fails (request-level, or any
//    claim answered with an error) records nothing: no reference, no cache entry.
//  - /unprepare drops the pod's reference and calls NodeUnprepareResources only for the
//    claims no other pod still references; the answer lists only those claims. A claim the
//    cache does not know (its prepare failed, or this stand-in restarted: it keeps no
//    checkpoint, unlike the kubelet's dra_manager_state) is unprepared too, as the kubelet
//    would (it keeps failed claims in its cache until the pod's teardown). The cache entry
//    goes when the driver confirmed the unprepare; a failed unprepare keeps it for a retry.
//  - One /prepare or /unprepare runs at a time, so the cache decides exactly (the kubelet
//    takes its cache lock around the same steps).
// /prepare-claims and /unprepare-claims are raw driver calls: no checks, no cache.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"

namespace grpc {
class Channel;
}

namespace knd::localcp {

// A minimal API client for the stand-in (GET and DELETE), configured from a kubeconfig or URL.
class ApiClient {
 public:
  static absl::StatusOr<ApiClient> FromKubeconfig(const std::string& path);
  static ApiClient FromUrl(const std::string& url) { return ApiClient(url, "", false); }

  absl::StatusOr<nlohmann::json> Get(const std::string& path) const;
  absl::Status Delete(const std::string& path_and_query) const;

 private:
  ApiClient(std::string server, std::string token, bool insecure)
      : server_(std::move(server)), token_(std::move(token)), insecure_(insecure) {}
  std::string server_, token_;
  bool insecure_;
};

struct KubeletOptions {
  std::string registry_dir = "/var/lib/kubelet/plugins_registry";
  std::string node_name;
  bool wipe_slices_on_start = false;
};

struct RegisteredPlugin {
  std::string socket;  // registration socket
  unsigned long inode = 0;
  std::string name;
  std::string endpoint;
  std::vector<std::string> versions;
  std::string service;  // "v1.DRAPlugin" or "v1beta1.DRAPlugin"
  std::shared_ptr<grpc::Channel> channel;
  uint64_t seq = 0;    // registration order; the newest instance of a driver gets the calls
  uint64_t round = 0;  // the Reconcile round that registered it
};

struct HttpAnswer {
  int status = 200;
  nlohmann::json body;
};

class Kubelet {
 public:
  Kubelet(KubeletOptions opts, ApiClient api);
  ~Kubelet();

  // Wipes slices (if asked), scans the registry and starts the watcher thread.
  absl::Status Start();
  void Stop();

  nlohmann::json Plugins() const;
  nlohmann::json Health() const;
  HttpAnswer PreparePod(const nlohmann::json& body, const std::string& api, bool prepare);
  HttpAnswer PrepareClaims(const nlohmann::json& body, const std::string& api, bool prepare);

 private:
  struct ClaimCall {
    std::string namespace_, uid, name;
  };
  void WatchLoop();
  // Keeps a NodeWatchResources stream open to the newest plugin of each driver that serves it.
  void HealthLoop();
  // `recreated`: socket paths the watch saw created since the last round; a plugin registered
  // at one of them is registered anew even when the new socket got the old inode number back
  // (the kernel reuses inode numbers, so a restarted plugin may look unchanged to a scan).
  void Reconcile(const std::set<std::string>& recreated = {});
  std::optional<RegisteredPlugin> Register(const std::string& socket, unsigned long inode);
  std::optional<RegisteredPlugin> PluginFor(const std::string& driver) const;
  // Calls one driver for a batch of claims; fills `out` per UID. Error = request-level failure.
  absl::Status Call(const std::string& driver, const std::vector<ClaimCall>& claims,
                    const std::string& api, bool prepare, nlohmann::json& out);

  KubeletOptions opts_;
  ApiClient api_;
  std::atomic<bool> stop_{false};
  int inotify_fd_ = -1;
  std::thread watcher_;
  std::thread health_;

  mutable std::mutex mu_;
  std::map<std::string, RegisteredPlugin> plugins_;  // by registration socket path
  std::map<std::string, unsigned long> rejected_;    // socket -> inode, not retried
  uint64_t next_seq_ = 1;
  uint64_t round_ = 0;  // Reconcile rounds so far (the watch thread's only)
  std::map<std::string, nlohmann::json> health_by_driver_;  // the last list each sent
  // Claims prepared per pod ("ns/name"), so unprepare works after the pod object is gone.
  std::map<std::string, std::map<std::string, std::vector<ClaimCall>>> prepared_;
  // The kubelet's claim-info cache, by claim UID: claims prepared on this node.
  struct ClaimInfo {
    std::set<std::string> pods;  // keys ("ns/name") of the pods referencing the claim
    nlohmann::json answer;       // what the driver answered: {devices, error: ""}
  };
  std::map<std::string, ClaimInfo> claim_infos_;
  std::mutex pod_calls_mu_;  // one PreparePod at a time (held across the driver calls)
};

}  // namespace knd::localcp
