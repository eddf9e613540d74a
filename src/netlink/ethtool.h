// Offload features of a link through the kernel's ethtool netlink family (genetlink "ethtool",
// Linux >= 5.6; ETHTOOL_MSG_FEATURES_GET/SET), on libnl-genl-3. Features are named as the
// kernel names them (ETH_SS_FEATURES: "rx-gro", "tx-tcp-segmentation", "rx-checksum", ...),
// i.e. the indented names `ethtool -k DEV` prints, not ethtool's group aliases ("tso").
#pragma once

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "netlink/socket.h"
#include "netns/netns.h"

namespace knd::netlink {

// A NETLINK_GENERIC socket with the ethtool family resolved, in the namespace it was opened in.
class EthtoolSocket {
 public:
  // In the calling thread's network namespace. NotFound (naming it) when the kernel has no
  // ethtool netlink family.
  static absl::StatusOr<EthtoolSocket> Open();
  // Bound to `ns` (created on a helper thread inside it).
  static absl::StatusOr<EthtoolSocket> OpenIn(const netns::Netns& ns);

  struct Feature {
    bool wanted = false;      // what was asked for (ethtool -K)
    bool active = false;      // what is in effect
    bool changeable = false;  // in the device's hw_features and not fixed (NOCHANGE)
  };
  // Every feature the kernel reports for `ifname` (any feature in the HW, WANTED, ACTIVE or
  // NOCHANGE sets; a feature in none of them is off and cannot be changed). NotFound when
  // there is no such link.
  absl::StatusOr<std::map<std::string, Feature>> Features(const std::string& ifname);

  // Sets the wanted state of each named feature in one ETHTOOL_MSG_FEATURES_SET, then reads
  // them back. A name the device does not offer as changeable (fixed, or no such feature) is
  // refused before anything is sent (InvalidArgument naming it and listing the changeable
  // ones); a feature whose active
  // state does not follow (the driver or a dependency, e.g. TSO without checksumming, keeps
  // it) is FailedPrecondition naming it. The kernel may change dependent features with them.
  absl::Status SetFeatures(const std::string& ifname, const std::map<std::string, bool>& want);

 private:
  EthtoolSocket(NlSock sock, int family) : sock_(std::move(sock)), family_(family) {}
  NlSock sock_;
  int family_ = 0;
};

}  // namespace knd::netlink
