// knd's interfaces in the pod annotation `k8s.v1.cni.cncf.io/network-status` (wire-facts §6.1),
// written in the background without touching anyone else's entries.
//
// The annotation is a JSON list that Multus (and others) also write. knd marks each entry it
// adds with one extra member, kNetworkStatusKeyField = "<attachment key>"; readers decode the
// list into Multus's NetworkStatus type, which ignores unknown members. Only entries carrying
// our marker with the same key are ever replaced or removed, so the marker also works after a
// restart, without any memory of what was written before.
//
// Each write is GET pod → merge in memory → JSON merge patch of the annotation carrying
// metadata.resourceVersion (optimistic concurrency: a concurrent writer makes it fail with
// 409, and the update is redone on a fresh read, a bounded number of times). The pod's uid
// must match the one given, so a pod recreated under the same name is never annotated. Other
// failures are retried with backoff; a pod that is gone, or an annotation that is not a JSON
// list (someone else's, never rewritten), drops the update.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "kube/client.h"
#include "kube/worker_thread.h"

namespace knd::kube {

inline constexpr char kNetworkStatusAnnotation[] = "k8s.v1.cni.cncf.io/network-status";
// The member that marks an entry as knd's and names the attachment it belongs to.
inline constexpr char kNetworkStatusKeyField[] = "knd.k8s.cni.cncf.io/attachment";

struct NetworkStatusEntry {
  // "<claim ns>/<claim name>/<request>" for a native attachment, "<ns>/<nad>" for a NAD.
  std::string name;
  std::string interface;         // in-pod interface name
  std::vector<std::string> ips;  // with or without "/prefix"; written without (like Multus)
  std::string mac;
  int mtu = 0;              // 0: not written
  std::string pci_address;  // non-empty: device-info {type pci, version 1.1.0}
  std::vector<std::string> gateway;
};

// The JSON entry (without marker): name, interface, ips, mac, mtu, dns {}, device-info.
nlohmann::json NetworkStatusJson(const NetworkStatusEntry& e);

// Pure merge. `current` is the annotation value ("" when absent). Entries not marked with
// `key` keep their content and order; the ones marked with `key` are replaced by `entries`
// (marked), which go where the first old one was, or at the end. Returns "" when the result
// is an empty list (the annotation is then removed rather than written as "[]").
// InvalidArgument when `current` is not a JSON list.
absl::StatusOr<std::string> MergeNetworkStatus(const std::string& current, const std::string& key,
                                               const std::vector<nlohmann::json>& entries);

struct PodRef {
  std::string ns;
  std::string name;
  std::string uid;
};

struct NetworkStatusWriterOptions {
  int conflict_attempts = 5;  // GET + patch rounds per update on 409
  std::chrono::milliseconds backoff_initial{500};
  std::chrono::milliseconds backoff_max{30000};
  int max_attempts = 10;  // failed rounds (non-conflict) before an update is dropped
};

struct NetworkStatusStats {
  uint64_t patches = 0;    // successful patches
  uint64_t conflicts = 0;  // 409s (each followed by a re-read)
  uint64_t failures = 0;   // failed rounds that will be retried
  uint64_t dropped = 0;    // updates given up (pod gone, uid mismatch, bad annotation, attempts)
};

class NetworkStatusWriter {
 public:
  NetworkStatusWriter(Client& client, NetworkStatusWriterOptions opts = {});
  ~NetworkStatusWriter();  // Stop()s
  NetworkStatusWriter(const NetworkStatusWriter&) = delete;
  NetworkStatusWriter& operator=(const NetworkStatusWriter&) = delete;

  void Start();
  void Stop();  // prompt; pending updates are abandoned. Idempotent.

  // Puts `entries` in the pod's network-status as the entries of attachment `key` (replacing
  // that key's earlier ones). Never blocks on the network; later calls for the same pod and
  // key supersede earlier ones that are not written yet.
  void AddOrReplace(const PodRef& pod, const std::string& key,
                    const std::vector<NetworkStatusEntry>& entries);
  // Removes the entries of attachment `key` from the pod's network-status.
  void Remove(const PodRef& pod, const std::string& key);

  // Uids of the pods with an update not yet written (queued, in flight or backing off).
  std::vector<std::string> PendingPods() const;
  // Waits until no update is queued or in flight; false on timeout.
  bool WaitIdle(std::chrono::milliseconds timeout) const;
  NetworkStatusStats Stats() const;

  // One synchronous GET → merge → patch round trip with conflict retry (used by the worker;
  // public for tests).
  absl::Status Write(const PodRef& pod, const std::string& key,
                     const std::vector<nlohmann::json>& entries);

 private:
  using Clock = std::chrono::steady_clock;
  struct Update {
    PodRef pod;
    std::string key;
    std::vector<nlohmann::json> entries;  // empty = remove
    int attempts = 0;
    Clock::time_point not_before{};
    uint64_t seq = 0;  // tells a superseded update from the current one
  };
  void Enqueue(const PodRef& pod, const std::string& key, std::vector<nlohmann::json> entries);
  void Loop();

  Client& client_;
  NetworkStatusWriterOptions opts_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  bool stop_ = false;
  bool busy_ = false;
  // By "<pod uid>\n<key>": the latest desired state; older ones are superseded.
  std::map<std::string, Update> queue_;
  uint64_t seq_ = 0;
  NetworkStatusStats stats_;
  WorkerThread worker_{mu_, cv_, stop_};  // last: stopped before the members it uses go
};

}  // namespace knd::kube
