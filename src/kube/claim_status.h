// Writes this driver's entries of ResourceClaim `status.devices[]` (KEP-4817) in the background.
//
// Each entry (resource.k8s.io/v1 AllocatedDeviceStatus) is written through the claim's `status`
// subresource with server-side apply, field manager = the driver name, force: the list is a
// list-map keyed by driver/pool/device(/shareID) and each manager owns the entries it applied,
// so other drivers' entries in the same claim are never touched. Applying an empty list gives
// up every entry we own (that is how a claim is cleared).
//
// The NRI hooks call Set/Clear, which only record the desired state and return at once. One
// worker thread writes: the latest desired state per claim wins (bursts coalesce into one
// write), failures (409, 5xx, connection errors, 403) are retried with jittered exponential
// backoff, a claim that is gone (404) or a write the API refuses as invalid (400/422 — e.g. the
// claim was replaced by one with another uid) is dropped and logged. Pending() lists claims
// whose desired state is not yet on the server, so the owner can persist them and Set them
// again after a restart; `on_written` reports when a claim needs no more writing.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "kube/client.h"
#include "kube/worker_thread.h"

namespace knd::kube {

// RFC 3339 in UTC with second precision ("2025-01-02T03:04:05Z"), as metav1.Time serializes.
std::string FormatTime(std::chrono::system_clock::time_point t);

// What one device of a claim looks like after (or instead of) its attachment.
struct DeviceStatus {
  std::string driver;
  std::string pool;
  std::string device;
  std::string share_id;  // consumable-capacity share, usually empty
  bool ready = false;
  // Condition reason (CamelCase, `[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?`); empty gives
  // "Attached" / "NotAttached".
  std::string reason;
  std::string message;
  int64_t observed_generation = 0;  // claim metadata.generation; 0 = not set
  std::string interface_name;       // networkData.interfaceName (in-pod name)
  std::vector<std::string> ips;     // networkData.ips, CIDR form ("192.0.2.5/24")
  std::string hardware_address;     // networkData.hardwareAddress
  nlohmann::json data;              // `data`: a JSON object (e.g. the CNI result) or null
};

// Builds the status.devices[] entry: driver/pool/device, one `Ready` condition with
// lastTransitionTime = `now`, networkData when any of its fields is set, data when it is an
// object.
nlohmann::json DeviceStatusEntry(const DeviceStatus& s, std::chrono::system_clock::time_point now);

// The server-side apply body for a claim's status holding exactly `devices` (our entries).
nlohmann::json ClaimStatusApplyBody(const std::string& ns, const std::string& name,
                                    const std::string& uid, const nlohmann::json& devices);

// "/apis/resource.k8s.io/v1/namespaces/<ns>/resourceclaims/<name>/status"
std::string ClaimStatusPath(const std::string& ns, const std::string& name);

struct ClaimStatusWriterOptions {
  std::string driver_name;  // field manager; also the only driver whose entries we send
  std::chrono::milliseconds backoff_initial{500};
  std::chrono::milliseconds backoff_max{30000};
  // Called on the worker thread (no lock held) once a claim's latest desired state is on the
  // server, or was dropped because the claim is gone or the write is refused for good. A
  // cleared claim is forgotten after this call.
  std::function<void(const std::string& uid)> on_written;
};

struct ClaimStatusStats {
  uint64_t writes = 0;    // successful applies
  uint64_t failures = 0;  // failed applies that will be retried
  uint64_t dropped = 0;   // claims given up (404, invalid)
};

class ClaimStatusWriter {
 public:
  ClaimStatusWriter(Client& client, ClaimStatusWriterOptions opts);
  ~ClaimStatusWriter();  // Stop()s
  ClaimStatusWriter(const ClaimStatusWriter&) = delete;
  ClaimStatusWriter& operator=(const ClaimStatusWriter&) = delete;

  void Start();
  // Prompt: interrupts backoff waits; an apply in flight finishes (bounded by the client's
  // timeout). Unwritten state stays listed by Pending(). Idempotent.
  void Stop();

  // Desired entries of our driver for the claim (built with DeviceStatusEntry; entries of
  // other drivers are ignored). Replaces any earlier desired state of the claim. A condition
  // whose type and status did not change keeps its earlier lastTransitionTime. Never blocks
  // on the network.
  void Set(const std::string& ns, const std::string& name, const std::string& uid,
           std::vector<nlohmann::json> devices);
  // Removes all our entries from the claim (also ones written before a restart).
  void Clear(const std::string& ns, const std::string& name, const std::string& uid);

  // Claim uids whose desired state is not (yet) on the server.
  std::vector<std::string> Pending() const;
  // Waits until nothing is pending; false on timeout. For tests and orderly shutdown.
  bool WaitIdle(std::chrono::milliseconds timeout) const;
  ClaimStatusStats Stats() const;

 private:
  using Clock = std::chrono::steady_clock;
  struct Claim {
    std::string ns, name;
    nlohmann::json devices = nlohmann::json::array();
    bool cleared = false;
    uint64_t version = 1;  // bumped by every Set/Clear
    uint64_t written = 0;  // version on the server (or dropped)
    int attempts = 0;      // consecutive failures
    Clock::time_point not_before{};
  };

  void Loop();
  void Upsert(const std::string& ns, const std::string& name, const std::string& uid,
              nlohmann::json devices, bool cleared);

  Client& client_;
  ClaimStatusWriterOptions opts_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  bool stop_ = false;
  bool busy_ = false;                    // an apply is in flight
  std::map<std::string, Claim> claims_;  // by uid
  ClaimStatusStats stats_;
  WorkerThread worker_{mu_, cv_, stop_};  // last: stopped before the members it uses go
};

}  // namespace knd::kube
