// Publishes this node's devices as ResourceSlices (resource.k8s.io/v1) and keeps them there.
//
// One pool named after the node, split into slices of at most max_devices_per_slice devices,
// named "<node>-<driver with dots as dashes>-<i>". The decision of what to write is a pure
// function (PlanSliceChanges); the publisher runs it on its own thread whenever the desired
// devices change (bursts coalesce) or its slices change on the server (the kubelet deletes a
// node's slices when it starts), and backs off and retries while the API is unreachable.
// When nothing changed it writes nothing.
//
// It takes devices as v1 Device JSON objects and does not depend on the inventory code.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "kube/client.h"

namespace knd::kube {

inline constexpr char kResourceSlicesPath[] = "/apis/resource.k8s.io/v1/resourceslices";

struct SlicePublisherOptions {
  std::string node_name;
  std::string driver_name;
  std::string node_uid;  // ownerReference; looked up once from the Node when empty
  int max_devices_per_slice = 128;
  // Quiet time after a change before reconciling, so a burst of updates costs one publish.
  std::chrono::milliseconds debounce{100};
  std::chrono::milliseconds backoff_initial{500};
  std::chrono::milliseconds backoff_max{30000};
  int watch_timeout_seconds = 300;
};

struct SliceChanges {
  std::vector<nlohmann::json> creates;  // full objects, POST to the collection
  std::vector<nlohmann::json> updates;  // full objects with metadata.resourceVersion, PUT
  std::vector<std::string> deletes;     // slice names
  bool empty() const { return creates.empty() && updates.empty() && deletes.empty(); }
};

// "<node>-<driver with '.' replaced by '-'>-<index>".
std::string SliceName(const std::string& node, const std::string& driver, int index);

// Decides the writes that turn `existing` (the server's slices of this node and driver) into
// the desired pool for `devices`. Devices are sorted by name and chunked. When the existing
// slices already hold exactly this content the result is empty; otherwise every slice of the
// pool is written with generation = max existing generation + 1 and the new slice count, and
// surplus or foreign-named slices are deleted. opts.node_uid, when set, becomes the Node
// ownerReference.
SliceChanges PlanSliceChanges(const std::vector<nlohmann::json>& existing,
                              std::vector<nlohmann::json> devices,
                              const SlicePublisherOptions& opts);

struct PublisherStats {
  uint64_t creates = 0;
  uint64_t updates = 0;
  uint64_t deletes = 0;
  uint64_t reconciles = 0;  // completed reconcile passes (with or without writes)
  uint64_t errors = 0;      // failed reconcile passes
  std::chrono::system_clock::time_point last_publish{};  // last pass that wrote something
  size_t published_devices = 0;
  int64_t generation = 0;  // pool generation on the server after the last pass
  // A change is waiting for a pass, or a pass is running: what was last set is not yet known
  // to be published.
  bool pending = false;
};

class SlicePublisher {
 public:
  SlicePublisher(Client& client, SlicePublisherOptions opts);
  ~SlicePublisher();  // Stop()s
  SlicePublisher(const SlicePublisher&) = delete;
  SlicePublisher& operator=(const SlicePublisher&) = delete;

  // Sets the desired devices (v1 Device objects). Nothing is published before the first call,
  // so a restarting driver does not wipe its slices before it has scanned.
  void SetDevices(std::vector<nlohmann::json> devices);
  void Start();
  // Prompt: interrupts waits and the watch; joins the threads. Idempotent.
  void Stop();
  PublisherStats Stats() const;

  // One synchronous reconcile pass with the current desired devices (used by the thread;
  // public for tests). Retries internally on write conflicts.
  absl::Status ReconcileOnce();

 private:
  void ReconcileLoop();
  void WatchLoop();
  void Trigger();
  absl::Status ReconcileAttempt(const std::vector<nlohmann::json>& devices);
  // Sleeps up to `d`; returns false if stopping.
  bool SleepFor(std::chrono::milliseconds d);
  std::string FieldSelector() const;

  Client& client_;
  SlicePublisherOptions opts_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> stop_{false};
  bool started_ = false;
  bool dirty_ = false;
  bool busy_ = false;  // a reconcile pass is running
  bool have_desired_ = false;
  std::vector<nlohmann::json> desired_;
  bool node_looked_up_ = false;
  std::string node_uid_;
  // The spec we last wrote per slice name and the names we deleted, recorded before the write
  // is sent: watch events matching them are echoes of our own work and trigger nothing.
  std::map<std::string, nlohmann::json> own_specs_;
  std::set<std::string> own_deletes_;
  PublisherStats stats_;
  std::thread reconcile_thread_;
  std::thread watch_thread_;
};

}  // namespace knd::kube
