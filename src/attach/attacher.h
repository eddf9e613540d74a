// Native attach/detach of a host netdev into a pod network namespace.
//
// Attach, in the order the kernel makes cheapest (design.md "Budgets"):
//   1. find the host device by its stable identity (state::DeviceIdentity);
//   2. snapshot its host settings (name, MTU, MAC, up, addresses, routes, per-interface
//      sysctls, the wanted state of the ethtool features the config sets) and hand the snapshot to
//      `persist` BEFORE anything changes, so a crash can always restore it;
//   3. one RTM_NEWLINK that carries IFLA_NET_NS_FD + the in-pod name + MTU + MAC;
//   4. inside the pod netns (through a netlink socket opened there): IPv6 RA off and
//      addr_gen_mode none for IPv4-only attachments, interface sysctls, ethtool features,
//      addresses (IFA_F_NODAD), link up, routes.
// Any failure rolls back: the device goes back to the host under its original name with its
// original settings, and the error names the step that failed.
//
// Detach puts the device back (original name, MTU, MAC, sysctls, ethtool features,
// addresses, routes). It works when
// the pod netns is already gone (CRI-O destroys it before StopPodSandbox): the kernel then
// has moved a physical device back to the host, possibly as "devN", and the device is found
// by identity. A virtual device destroyed with the netns is reported as NotFound.
// Both operations are idempotent.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "config/network_config.h"
#include "state/plan.h"

namespace knd::attach {

struct AttachRequest {
  state::DeviceIdentity identity;
  std::string netns_path;  // pod network namespace (e.g. /var/run/netns/cni-...)
  config::NetworkConfig config;
  std::string where;  // "pod ns/name claim ns/name device X", prefixes error messages
  // Set for a shared parent: `identity` is the parent, which stays on the host; the child is
  // created in the pod netns (AttachChild).
  std::optional<state::ChildPlan> child = std::nullopt;
};

class Attacher {
 public:
  virtual ~Attacher() = default;

  // `persist` is called with the host snapshot before the device is touched; if it fails,
  // nothing is changed. Re-attaching a device that is already in `netns_path` under the
  // requested name succeeds without changes (idempotent).
  virtual absl::StatusOr<state::AttachResult> Attach(
      const AttachRequest& req,
      const std::function<absl::Status(const state::HostSnapshot&)>& persist) = 0;

  // A virtual child of the shared parent `req.identity` (req.child: macvlan, ipvlan, vlan),
  // created by one netlink message directly in the pod netns under its final name, MTU and
  // MAC, then configured like a moved device. `persist` runs before the child exists, so a
  // crash leaves a plan that names it. Any failure deletes the child again. A child of that
  // name and kind on the same parent already in the pod is taken as is (idempotent).
  virtual absl::StatusOr<state::AttachResult> AttachChild(
      const AttachRequest& req, const std::function<absl::Status()>& persist) = 0;

  // Deletes the child `pod_ifname` from `netns_path`. A netns that is gone took the child
  // with it, and a name that is no longer there or is not a `child.type` link is left alone:
  // both are success.
  virtual absl::Status DetachChild(const std::string& netns_path, const std::string& pod_ifname,
                                   const state::ChildPlan& child, const std::string& where) = 0;

  // Returns the device to the host namespace of this process and restores `host`.
  // `netns_path` may no longer exist. `pod_ifname` is the in-pod name used at attach.
  virtual absl::Status Detach(const state::DeviceIdentity& identity,
                              const state::HostSnapshot& host, const std::string& netns_path,
                              const std::string& pod_ifname, const std::string& where) = 0;

  // Is the device currently in `netns_path` under `pod_ifname`? (kndctl status, reconcile)
  virtual absl::StatusOr<bool> IsAttached(const std::string& netns_path,
                                          const std::string& pod_ifname) = 0;

  // Is the device on the host now, under any name? (Prepare's "attachable now" check; one
  // link dump.)
  virtual absl::StatusOr<bool> OnHost(const state::DeviceIdentity& identity) = 0;

  // Can the device, on the host now, take what `cfg` asks of the device itself: every
  // interface.ethtool feature and private flag one it can change, no channel count or ring
  // size above its maxima, no size the kernel would ignore (CheckKernelSizes)? Prepare's check, so
  // that a claim the device cannot serve is refused before the pod's sandbox is made. An error
  // names the field (InvalidArgument; Unimplemented for what the driver does not offer at all);
  // NotFound when the device is not on the host. Changes nothing.
  virtual absl::Status CheckDevice(const state::DeviceIdentity& identity,
                                   const config::NetworkConfig& cfg) = 0;

  // The device inside `netns_path`, found by identity (PCI parent device, permanent MAC, MAC
  // as last seen on the host), under whatever name another component (the pod's CNI) gave
  // it: its in-pod name, MAC and global addresses. nullopt when it is not there (or the netns
  // is gone).
  virtual absl::StatusOr<std::optional<state::AttachResult>> FindInPod(
      const std::string& netns_path, const state::DeviceIdentity& identity) = 0;

  // The device's host settings now (for a device that CNI plugins will take): NotFound when
  // it is not on the host.
  virtual absl::StatusOr<state::HostSnapshot> Snapshot(const state::DeviceIdentity& identity) = 0;

  // Puts a device that is back on the host (after a CNI DEL, or a netns that died) back to
  // `host`: name, MTU, MAC, addresses, admin state, routes. NotFound when it is not on the
  // host.
  virtual absl::Status Restore(const state::DeviceIdentity& identity,
                               const state::HostSnapshot& host) = 0;

  // A VF about to leave its kernel driver (sriov.driver: vfio-pci), which takes its netdev
  // away: snapshots the netdev's host settings and the PF's settings for the VF, hands the
  // snapshot to `persist` before anything changes, then has the PF apply `sriov` (MAC, VLAN,
  // ...; a refusal puts the PF's settings back). The netdev itself is not touched. Restore puts
  // it all back once the VF has its kernel driver again. NotFound when not on the host.
  virtual absl::StatusOr<state::HostSnapshot> TakeVf(
      const state::DeviceIdentity& identity, const config::SriovConfig& sriov,
      const std::function<absl::Status(const state::HostSnapshot&)>& persist) = 0;
};

// What `ic` sets that this kernel would silently ignore on the link `ifname`, whose
// IFLA_GRO_MAX_SIZE netlink reported as `reported_gro_max_size` (0: not reported):
// interface.groMaxSize before Linux 5.19, which has no GRO size for links. FailedPrecondition
// naming the field; OK otherwise. Checked in Prepare and before the attach.
absl::Status CheckKernelSizes(const std::string& ifname, uint32_t reported_gro_max_size,
                              const config::InterfaceConfig& ic);

// The netlink-backed implementation.
std::unique_ptr<Attacher> NewNetlinkAttacher();

}  // namespace knd::attach
