// From devices to the Kubernetes objects the node publishes: device names (unique in the
// pool), the attribute map of one device (resource.k8s.io/v1 Device), and the ResourceSlices
// of a pool. Pure functions, no I/O: the publisher diffs and writes what these return.
//
// API limits that would make the API server refuse a whole slice are enforced here: string
// values ≤64 bytes, ≤32 attributes per device, ≤128 devices per slice (wire-facts.md §4.1).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "inventory/device.h"

namespace knd::inventory {

inline constexpr size_t kMaxAttributeValueBytes = 64;
inline constexpr size_t kMaxAttributesPerDevice = 32;
inline constexpr size_t kMaxDevicesPerSlice = 128;
inline constexpr char kDefaultDriverName[] = "knd.k8s.cni.cncf.io";

// RFC 1123 label: 1..63 chars of [a-z0-9-], starting and ending alphanumeric.
bool IsDnsLabel(const std::string& s);
// "0000:03:00.0" -> "pci-0000-03-00-0"; "" when not a PCI address.
std::string PciDeviceName(const std::string& pci_address);
// The name design.md gives a device: PCI netdevs by address, else the ifName when it is a
// DNS label, else "net-<16 hex digits of FNV-1a 64 of the ifName>".
std::string BaseDeviceName(const Device& d);
// Sets Device::name on each device, unique within the vector: on a clash (two netdevs of
// one PCI function, an ifName that looks like another's PCI name) the device with the
// smaller ifName keeps the name and the others get their "net-<hash>" name.
void AssignNames(std::vector<Device>& devices);

// `v` as UTF-8 (invalid bytes, e.g. of an interface name, become U+FFFD), cut to at most
// `max` bytes between characters.
std::string ClampString(const std::string& v, size_t max = kMaxAttributeValueBytes);
// Sorted, comma-joined, cut after the last whole entry that fits in `max` bytes.
std::string JoinClamped(std::vector<std::string> entries, size_t max = kMaxAttributeValueBytes);

// One attribute: fully qualified key and its DeviceAttribute JSON ({"string": ...} etc.).
using Attribute = std::pair<std::string, nlohmann::json>;
// All attributes of a device in priority order (most important first), absent values
// omitted, strings clamped. `domain` is the driver name (own-domain keys "<domain>/ifName").
std::vector<Attribute> DeviceAttributes(const Device& d, const std::string& domain);
// Capacity names of a shared parent (KEP-5075 consumable capacity), in the driver's domain.
inline constexpr char kChildrenCapacity[] = "children";
inline constexpr char kBandwidthCapacity[] = "bandwidth";
// The `capacity` map of a shared parent: children (each claim consumes exactly one) and,
// when configured, bandwidth (a claim consumes what it requests, else bandwidthPerChild).
nlohmann::json DeviceCapacity(const Device::Shared& sh, const std::string& domain);
// resource.k8s.io/v1 Device: {"name": ..., "attributes": {...}} with at most
// `max_attributes` attributes and capacities together (the lowest-priority attributes are
// dropped); a shared parent also carries allowMultipleAllocations and its capacity.
nlohmann::json DeviceToJson(const Device& d, const std::string& domain,
                            size_t max_attributes = kMaxAttributesPerDevice);

// The ResourceSlices of one node pool (pool name = node name): devices sorted by name and
// split into slices of at most `per_slice` devices; every slice carries the same generation
// and resourceSliceCount. No devices -> one empty slice (so the pool still exists and old
// slices can be replaced). Slice names: "<node>-<driver, dots->dashes>-<index>".
std::vector<nlohmann::json> BuildSlices(const std::string& node_name,
                                        const std::string& driver_name, std::vector<Device> devices,
                                        int64_t generation, size_t per_slice = kMaxDevicesPerSlice);

}  // namespace knd::inventory
