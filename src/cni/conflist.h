// Pure CNI data handling (no I/O): network config lists, the per-plugin stdin a runtime
// builds from them, the Multus-style hand-over of a device to the plugins, and result
// parsing. The executor (cni/executor.h) runs plugins with what these functions build.
//
// Facts: CNI SPEC 1.0/1.1 (wire-facts.md §6.4), Multus pkg/types/conf.go (§6.2).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace knd::cni {

// CNI versions knd can speak, highest first. A result of any of them parses.
const std::vector<std::string>& SupportedVersions();

// Orders CNI versions ("0.3.1" < "0.4.0" < "1.0.0" < "1.1.0"); unparsable ones sort first.
int CompareVersions(std::string_view a, std::string_view b);

// Top-level key knd adds to a conflist resolved from a NetworkAttachmentDefinition, holding
// "<namespace>/<name>" of the NAD (network-status names entries after it). Not a plugin key:
// list-level keys other than name/cniVersion never reach a plugin.
inline constexpr char kNadKey[] = "knd.k8s.cni.cncf.io/networkAttachment";

// A plugin `type` becomes a file name inside a CNI bin dir, never a path: empty, "/", "..",
// NUL and whitespace are refused. Returns the reason, or nullopt when fine.
std::optional<std::string> InvalidPluginType(std::string_view type);

// A network name (CNI: ^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$). Returns the reason or nullopt.
std::optional<std::string> InvalidNetworkName(std::string_view name);

// A container id (CNI: non-empty, alnum first, then alnum "_.-"). Returns the reason or nullopt.
std::optional<std::string> InvalidContainerId(std::string_view id);

// Accepts a network config list or a single plugin config (CNI < 1.0 style, as NADs often
// hold) and returns a validated conflist: {cniVersion?, cniVersions?, name, plugins:[...]}.
// A single config becomes a one-plugin list (its name/cniVersion move to the list).
// `where` prefixes errors ("NAD team-a/storage spec.config").
absl::StatusOr<nlohmann::json> NormalizeConfList(const nlohmann::json& config,
                                                 std::string_view where);

// Parses NAD spec.config (a JSON string) into a normalized conflist.
absl::StatusOr<nlohmann::json> ParseConfList(std::string_view text, std::string_view where);

// Picks the CNI version to run a conflist with. `plugin_versions[i]` holds what plugin i
// answered to VERSION (empty = not asked / unknown). Rules: with `cniVersions` (1.1), the
// highest listed version knd and every asked plugin support; else `cniVersion` as given;
// else the highest version knd and every asked plugin support.
absl::StatusOr<std::string> PickVersion(
    const nlohmann::json& conflist, const std::vector<std::vector<std::string>>& plugin_versions);

// The stdin of plugin `index` of `conflist` (CNI SPEC "Deriving execution configuration"):
// the plugin's keys, `name` and `cniVersion` of the list, `runtimeConfig` holding the
// capability args the plugin declared in `capabilities` (merged over a runtimeConfig already
// in the plugin), `capabilities` removed, and `prevResult` when given (not null).
nlohmann::json PluginStdin(const nlohmann::json& conflist, size_t index,
                           const std::string& cni_version, const nlohmann::json& capability_args,
                           const nlohmann::json& prev_result);

// The stdin of an IPAM plugin run by itself for a native attachment:
// {cniVersion, name, ipam: {...}}.
nlohmann::json IpamStdin(const nlohmann::json& ipam, const std::string& network_name,
                         const std::string& cni_version);

// How a device is handed to the plugins, the way Multus does it.
struct DeviceHandoff {
  std::string device_id;    // k8s.cni.cncf.io/deviceID: PCI address, or the ifName otherwise
  std::string pci_address;  // empty for non-PCI devices
  std::string netdev;       // the device's current host netdev name
};

// Returns `conflist` with the device given to every plugin: `deviceID` at the top of each
// plugin config; `runtimeConfig.deviceID` for plugins declaring the `deviceID` capability;
// `host-device` gets `pciBusID` (PCI) or `device` (netdev) and no other selector, and no
// runtimeConfig.deviceID for a non-PCI device (host-device reads it as a PCI address).
nlohmann::json HandDevice(const nlohmann::json& conflist, const DeviceHandoff& dev);

// What knd reads back from an ADD result (any supported version).
struct ParsedResult {
  std::vector<std::string> ips;  // CIDRs of the interface (or all ips when unattributed)
  std::string mac;               // of the interface named `ifname` inside the sandbox
  struct Route {
    std::string dst;
    std::string gw;  // may be empty
  };
  std::vector<Route> routes;
  std::vector<std::string> gateways;  // ips[].gateway, per address (may be empty strings)
};

// Parses an ADD result. `ifname` selects the sandbox interface whose MAC and addresses are
// reported; ips that name no interface count as that interface's.
absl::StatusOr<ParsedResult> ParseResult(const nlohmann::json& result, const std::string& ifname);

// Formats a plugin's error object {code, msg, details} into a message.
std::string FormatError(const nlohmann::json& error);

}  // namespace knd::cni
