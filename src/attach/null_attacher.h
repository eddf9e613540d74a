// An Attacher that touches no kernel object: every operation succeeds as if the device moved
// (Attach hands `persist` a snapshot holding only the device's name), nothing is ever found in
// a pod and every device is on the host. For tests and fuzz harnesses of the layers above
// attach/ (nri/, dra/), which override what they need to observe or to fail.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "attach/attacher.h"

namespace knd::attach {

class NullAttacher : public Attacher {
 public:
  absl::StatusOr<state::AttachResult> Attach(
      const AttachRequest& req,
      const std::function<absl::Status(const state::HostSnapshot&)>& persist) override {
    state::HostSnapshot snap;
    snap.ifname = req.identity.ifname;
    if (absl::Status st = persist(snap); !st.ok()) return st;
    return Result(req, req.identity.ifname);
  }
  absl::StatusOr<state::AttachResult> AttachChild(
      const AttachRequest& req, const std::function<absl::Status()>& persist) override {
    if (absl::Status st = persist(); !st.ok()) return st;
    return Result(req, "net1");
  }
  absl::Status DetachChild(const std::string&, const std::string&, const state::ChildPlan&,
                           const std::string&) override {
    return absl::OkStatus();
  }
  absl::Status Detach(const state::DeviceIdentity&, const state::HostSnapshot&, const std::string&,
                      const std::string&, const std::string&) override {
    return absl::OkStatus();
  }
  absl::StatusOr<bool> IsAttached(const std::string&, const std::string&) override { return false; }
  absl::StatusOr<bool> OnHost(const state::DeviceIdentity&) override { return true; }
  absl::Status CheckDevice(const state::DeviceIdentity&, const config::NetworkConfig&) override {
    return absl::OkStatus();
  }
  absl::StatusOr<std::optional<state::AttachResult>> FindInPod(
      const std::string&, const state::DeviceIdentity&) override {
    return std::optional<state::AttachResult>();
  }
  absl::StatusOr<state::HostSnapshot> Snapshot(const state::DeviceIdentity& identity) override {
    state::HostSnapshot s;
    s.ifname = identity.ifname;
    return s;
  }
  absl::Status Restore(const state::DeviceIdentity&, const state::HostSnapshot&) override {
    return absl::OkStatus();
  }
  absl::StatusOr<state::HostSnapshot> TakeVf(
      const state::DeviceIdentity& identity, const config::SriovConfig&,
      const std::function<absl::Status(const state::HostSnapshot&)>& persist) override {
    absl::StatusOr<state::HostSnapshot> snap = Snapshot(identity);
    if (snap.ok()) {
      if (absl::Status st = persist(*snap); !st.ok()) return st;
    }
    return snap;
  }

 protected:
  // What an attach reports: the pod netns and the requested name, else `default_ifname`.
  static state::AttachResult Result(const AttachRequest& req, const std::string& default_ifname) {
    state::AttachResult r;
    r.netns = req.netns_path;
    r.ifname = req.config.interface.name.value_or(default_ifname);
    return r;
  }
};

}  // namespace knd::attach
