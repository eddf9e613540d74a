// What Prepare needs to know about the pods of this node, kept current by one list+watch of
// the node's pods (fieldSelector spec.nodeName=<node>), so that Prepare reads the claim and
// nothing else.
//
// Only the facts knd checks are kept, for the pods bound to this node: a few bytes per pod
// (UID, hostNetwork, phase, whether Multus networks are asked for, the names of the pod's
// claims). A pod the cache has not seen yet (the watch can trail the kubelet by a
// moment) or whose UID differs from the one asked for is the caller's cue to read the pod
// from the API instead: the cache never answers for a pod it cannot vouch for.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "kube/client.h"

namespace knd::kube {

// The Multus annotation that lists a pod's secondary networks.
inline constexpr char kMultusNetworksAnnotation[] = "k8s.v1.cni.cncf.io/networks";

struct PodFacts {
  std::string uid;
  bool host_network = false;
  std::string phase;             // status.phase ("" when not reported yet)
  bool multus_networks = false;  // a non-empty k8s.v1.cni.cncf.io/networks annotation
  // The ResourceClaims the pod uses, by name (its namespace): spec.resourceClaims[]
  // .resourceClaimName, and for template entries status.resourceClaimStatuses[]
  // .resourceClaimName.
  std::vector<std::string> claims;

  // Succeeded or Failed: every container has exited for good.
  bool Terminal() const { return phase == "Succeeded" || phase == "Failed"; }
};

// The facts of one Pod object.
PodFacts PodFactsOf(const nlohmann::json& pod);

struct PodCacheOptions {
  std::string node_name;
  int watch_timeout_seconds = 300;
  std::chrono::milliseconds backoff_initial{500};
  std::chrono::milliseconds backoff_max{30000};
};

struct PodCacheStats {
  uint64_t lists = 0;   // full lists (start-up, 410 Gone, after a watch error)
  uint64_t events = 0;  // watch events applied (bookmarks not counted)
  uint64_t errors = 0;  // failed lists and watches
  uint64_t hits = 0;    // lookups answered
  uint64_t misses = 0;  // lookups the caller had to take to the API
  size_t pods = 0;      // pods held now
};

class PodCache {
 public:
  PodCache(Client& client, PodCacheOptions opts);
  ~PodCache();  // Stop()s
  PodCache(const PodCache&) = delete;
  PodCache& operator=(const PodCache&) = delete;

  // Told (on the watch thread: it must only queue) when a pod of this node is over: a
  // DELETED event, or an update into phase Succeeded/Failed. Set before Start().
  using GoneFn =
      std::function<void(const std::string& ns, const std::string& name, const std::string& uid)>;
  void SetOnGone(GoneFn fn) { on_gone_ = std::move(fn); }

  void Start();
  // Ends the watch promptly (Client::WakeWatches) and joins the thread.
  void Stop();

  // The pod as the watch last saw it; nullopt when it has not seen it, or (with `uid`) has
  // seen it only under another UID. Counted as a hit or a miss.
  std::optional<PodFacts> Lookup(const std::string& ns, const std::string& name,
                                 const std::string& uid = "") const;
  // True once a list has been applied (and until Stop).
  bool Synced() const;
  PodCacheStats Stats() const;

 private:
  void Loop();
  bool SleepFor(std::chrono::milliseconds d);

  Client& client_;
  const PodCacheOptions opts_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, PodFacts> pods_ ABSL_GUARDED_BY(mu_);  // "<namespace>/<name>"
  bool synced_ ABSL_GUARDED_BY(mu_) = false;
  mutable PodCacheStats stats_ ABSL_GUARDED_BY(mu_);
  GoneFn on_gone_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace knd::kube
