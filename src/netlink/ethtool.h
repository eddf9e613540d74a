// Offload features, private flags, channel counts and ring sizes of a link through the kernel's
// ethtool netlink family (genetlink "ethtool", Linux >= 5.6; ETHTOOL_MSG_FEATURES_*,
// _PRIVFLAGS_*, _CHANNELS_*, _RINGS_*), on libnl-genl-3. Features are named as the
// kernel names them (ETH_SS_FEATURES: "rx-gro", "tx-tcp-segmentation", "rx-checksum", ...),
// i.e. the indented names `ethtool -k DEV` prints; ethtool's group aliases ("tso") are
// expanded against the device like `ethtool -K` does.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "netlink/socket.h"
#include "netns/netns.h"

struct nl_msg;

namespace knd::netlink {

// Queue settings that are counts per kind, with a maximum each: channels (`ethtool -l/-L`:
// "rx", "tx", "other", "combined") and ring sizes (`ethtool -g/-G`: "rx", "rxMini", "rxJumbo",
// "tx").
enum class QueueKind { kChannels, kRings };

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

  // Sets the wanted state of each feature in `want` in one ETHTOOL_MSG_FEATURES_SET, then
  // reads them back. `want` names kernel features or ethtool's aliases (ResolveFeatures). A
  // name the device does not offer as changeable (fixed, or no such feature) is refused before
  // anything is sent (InvalidArgument naming it and listing the changeable ones); a feature
  // whose active state does not follow (the driver or a dependency, e.g. TSO without
  // checksumming, keeps it) is FailedPrecondition naming it. The kernel may change dependent
  // features with them. Returns the kernel features it set.
  absl::StatusOr<std::map<std::string, bool>> SetFeatures(const std::string& ifname,
                                                          const std::map<std::string, bool>& want);

  // Puts the wanted state of the changeable ones among `wanted` (kernel names) back, without
  // asking that the active state follow (a restore: the dependencies are back as they were).
  // Names the device does not have or cannot change are skipped.
  absl::Status RestoreWanted(const std::string& ifname, const std::map<std::string, bool>& wanted);

  // The private flags of `ifname`'s driver (`ethtool --show-priv-flags`: "legacy-rx" -> false),
  // every one it defines; empty when it defines none.
  absl::StatusOr<std::map<std::string, bool>> PrivateFlags(const std::string& ifname);
  // Sets the flags in `want` (the others stay) in one ETHTOOL_MSG_PRIVFLAGS_SET, then reads them
  // back. A name the driver does not define is refused before anything is sent
  // (CheckPrivateFlags); a flag that does not follow is FailedPrecondition naming it.
  absl::Status SetPrivateFlags(const std::string& ifname, const std::map<std::string, bool>& want);
  // Puts `flags` back (the ones that differ); names the driver does not define are skipped.
  absl::Status RestorePrivateFlags(const std::string& ifname,
                                   const std::map<std::string, bool>& flags);

  // What a device has of `kind`: the maximum and the current value of each of its keys (a
  // key the kernel does not report is absent; a maximum of 0: the device has none of those).
  struct Counts {
    std::map<std::string, uint32_t> max, now;
  };
  // Unimplemented, naming the device, when its driver has no such settings.
  absl::StatusOr<Counts> GetCounts(QueueKind kind, const std::string& ifname);
  // Sets the counts in `want` (the others stay) in one ETHTOOL_MSG_CHANNELS_SET or
  // ETHTOOL_MSG_RINGS_SET, after CheckCounts against the device (nothing is sent when that
  // fails).
  absl::Status SetCounts(QueueKind kind, const std::string& ifname,
                         const std::map<std::string, uint32_t>& want);

 private:
  absl::Status Get(uint8_t cmd, const std::string& ifname, const std::string& what,
                   int (*parse)(nl_msg*, void*), void* arg);
  absl::Status SendWanted(const std::string& ifname, const std::map<std::string, bool>& want);
  // One `cmd` whose bitset attribute `attr` lists the bits of `bits_on` by name, each set or
  // cleared (the listed bits are the mask), without a reply.
  absl::Status SendBits(uint8_t cmd, int attr, const std::string& ifname,
                        const std::map<std::string, bool>& bits_on, const std::string& what);
  EthtoolSocket(NlSock sock, int family) : sock_(std::move(sock)), family_(family) {}
  NlSock sock_;
  int family_ = 0;
};

// The pattern (fnmatch) of kernel feature names that one of `ethtool -K`'s aliases stands for
// ("tso" and "tcp-segmentation-offload": "tx-tcp*-segmentation"); nullptr for other names.
const char* FeatureAliasPattern(const std::string& name);

// The kernel features `want` sets on a device that has `features`: a kernel feature name as
// is, an alias as every changeable feature its pattern matches; a kernel name wins over an
// alias that covers it. InvalidArgument naming `ifname`, the name and the changeable features
// for a name that is fixed, unknown, or an alias that matches nothing changeable.
absl::StatusOr<std::map<std::string, bool>> ResolveFeatures(
    const std::map<std::string, bool>& want,
    const std::map<std::string, EthtoolSocket::Feature>& features, const std::string& ifname);

// Private flags `want` against a driver's `have`: InvalidArgument naming `ifname`, the name and
// the flags it has, for a name it does not define.
absl::Status CheckPrivateFlags(const std::map<std::string, bool>& want,
                               const std::map<std::string, bool>& have, const std::string& ifname);

// `want` against a device with `have`: InvalidArgument naming `ifname`, the key and the
// device's maximum for a value above it, or for a key the device does not have.
absl::Status CheckCounts(QueueKind kind, const std::map<std::string, uint32_t>& want,
                         const EthtoolSocket::Counts& have, const std::string& ifname);

}  // namespace knd::netlink
