// For tests: a feature's state as Debian's `ethtool -k DEV` prints it, a reader independent
// of the netlink client under test.
#pragma once

#include <string>

namespace knd::netlink {

// "on"/"off" of `feature` in `ethtool -k` output `text` (without " [fixed]" or
// " [requested on]"); "absent" when it is not listed. ethtool prints a feature alone in its
// alias group under the alias's long name ("generic-segmentation-offload" for
// tx-generic-segmentation).
inline std::string FeatureAsShown(const std::string& text, const std::string& feature) {
  const std::string key = feature + ": ";
  size_t at = text.find("\t" + key);
  if (at == std::string::npos) at = text.find("\n" + key);
  if (at == std::string::npos) return "absent";
  at += 1 + key.size();
  return text.substr(at, text.find_first_of(" \n", at) - at);
}

}  // namespace knd::netlink
