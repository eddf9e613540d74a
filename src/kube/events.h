// Kubernetes Events (core/v1 Event) about claims and pods: what failed, in words a user can act
// on, visible in `kubectl describe` and `kubectl get events`.
//
// Recording never blocks: Record() puts the event in a bounded queue (full → the oldest
// queued event is dropped and counted) and one worker thread writes it. Like client-go's
// event correlator, repeats are folded and floods are cut:
// - an event identical to one recorded within `dedup_window` (same object, type, reason and
//   message) is not created again: the existing Event's `count` and `lastTimestamp` are
//   patched (JSON merge patch), and repeats still waiting in the queue are folded into one
//   write;
// - every object has a token bucket (`burst` writes, refilled at `refill_per_second`); an
//   event that finds the bucket empty is dropped (counted), and a repeat that finds it empty
//   is only counted locally and written with the next patch that gets a token.
// Writing is best effort: a failed write is logged and counted, not retried beyond the
// client's own retries.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <list>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "kube/client.h"
#include "kube/worker_thread.h"

namespace knd::kube {

// Stable reasons (part of the user contract: alerts and docs match on them).
namespace event_reason {
inline constexpr char kInvalidConfig[] = "InvalidConfig";
inline constexpr char kDeviceNotFound[] = "DeviceNotFound";
inline constexpr char kDeviceBusy[] = "DeviceBusy";
inline constexpr char kDeviceLost[] = "DeviceLost";
inline constexpr char kAttachFailed[] = "AttachFailed";
inline constexpr char kDetachFailed[] = "DetachFailed";
inline constexpr char kNADNotFound[] = "NADNotFound";
inline constexpr char kCNIPluginFailed[] = "CNIPluginFailed";
inline constexpr char kIPAMFailed[] = "IPAMFailed";
inline constexpr char kPrepareFailed[] = "PrepareFailed";
inline constexpr char kAttached[] = "Attached";
inline constexpr char kDetached[] = "Detached";
// A child is in its pod, but its shared parent is down or gone (Ready=False until it is back).
inline constexpr char kParentUnhealthy[] = "ParentUnhealthy";
}  // namespace event_reason

inline constexpr char kEventNormal[] = "Normal";
inline constexpr char kEventWarning[] = "Warning";

// The object an event is about (involvedObject).
struct ObjectRef {
  std::string api_version;  // "resource.k8s.io/v1", "v1"
  std::string kind;         // "ResourceClaim", "Pod"
  std::string ns;
  std::string name;
  std::string uid;
};
ObjectRef ClaimObject(const std::string& ns, const std::string& name, const std::string& uid);
ObjectRef PodObject(const std::string& ns, const std::string& name, const std::string& uid);
// A Node (cluster-scoped: its events go to the "default" namespace, as the kubelet's do).
ObjectRef NodeObject(const std::string& name);

struct EventRecorderOptions {
  std::string driver_name;  // source.component and reportingComponent
  std::string node_name;    // source.host and reportingInstance
  size_t max_queue = 1000;
  std::chrono::milliseconds dedup_window{std::chrono::minutes(10)};
  int burst = 25;                        // per object
  double refill_per_second = 1.0 / 300;  // per object: one more event every 5 minutes
  size_t max_tracked = 4096;             // dedup entries and buckets kept
};

struct EventStats {
  uint64_t created = 0;        // Events POSTed
  uint64_t patched = 0;        // count/lastTimestamp PATCHes of existing Events
  uint64_t folded = 0;         // repeats folded into a queued event
  uint64_t dropped_queue = 0;  // dropped because the queue was full
  uint64_t dropped_flood = 0;  // dropped (or held back, for repeats) by the object's bucket
  uint64_t failed = 0;         // writes the API refused or that did not reach it
};

class EventRecorder {
 public:
  EventRecorder(Client& client, EventRecorderOptions opts);
  ~EventRecorder();  // Stop()s
  EventRecorder(const EventRecorder&) = delete;
  EventRecorder& operator=(const EventRecorder&) = delete;

  void Start();
  void Stop();  // prompt; queued events are abandoned. Idempotent.

  // Queues an event. `type` is kEventNormal or kEventWarning, `reason` one of event_reason.
  // Messages longer than 1024 bytes are cut.
  void Record(const ObjectRef& obj, const std::string& type, const std::string& reason,
              const std::string& message);

  // Waits until the queue is empty and no write is in flight; false on timeout.
  bool WaitIdle(std::chrono::milliseconds timeout) const;
  EventStats Stats() const;

 private:
  using SysClock = std::chrono::system_clock;
  using Clock = std::chrono::steady_clock;
  struct Item {
    std::string key;  // dedup key
    ObjectRef obj;
    std::string type, reason, message;
    uint64_t times = 1;  // occurrences folded into this item
    SysClock::time_point first, last;
  };
  struct Written {  // an Event on the server that repeats are patched into
    std::string ns, name;
    uint64_t count = 0;  // occurrences so far (the server may have fewer, see Process)
    SysClock::time_point first;
    Clock::time_point last;  // last occurrence, for the window
  };
  struct Bucket {
    double tokens = 0;
    Clock::time_point last;
  };

  void Loop();
  void Process(Item item);
  bool TakeToken(const std::string& obj_key, Clock::time_point now);  // mu_ held
  std::string NewEventName(const ObjectRef& obj);                     // mu_ held
  void Trim(Clock::time_point now);                                   // mu_ held

  Client& client_;
  EventRecorderOptions opts_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  bool stop_ = false;
  bool busy_ = false;
  std::list<Item> queue_;
  std::unordered_map<std::string, std::list<Item>::iterator> queued_;  // by dedup key
  std::unordered_map<std::string, Written> written_;                   // by dedup key
  std::unordered_map<std::string, Bucket> buckets_;                    // by object
  int64_t last_name_ns_ = 0;
  EventStats stats_;
  WorkerThread worker_{mu_, cv_, stop_};  // last: stopped before the members it uses go
};

}  // namespace knd::kube
