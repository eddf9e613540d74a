// The one parser (and printer) of the text forms of IP addresses, CIDRs and MAC addresses,
// shared by config validation (src/config), netlink messages (src/netlink) and attach
// (src/attach), so that what validation accepts is exactly what the kernel is then given.
//
// The forms are the strict ones Kubernetes and iproute2 print:
//  - IPv4: a dotted quad without leading zeros ("010.0.0.1" is octal to some parsers and
//    decimal to others, so it is refused, as Go's net.ParseIP does). glibc's inet_pton.
//  - IPv6: RFC 4291 text (inet_pton), "::ffff:192.0.2.1" included; no zone ("fe80::1%eth0":
//    a zone names an interface of the host, which means nothing inside a pod), no brackets.
//  - prefix length: decimal, no sign, no leading zero, 0..32 or 0..128.
//  - MAC (EUI-48): six two-digit hex bytes separated by ':', either case; printed lowercase.
//    Not ether_aton_r: it takes "2:0:0:0:0:1" and ignores whatever follows the sixth byte.
//
// Errors are InvalidArgument, quote the value and say what is wrong with it; the caller
// prefixes the field or operation ("interface.addresses[0]: ...", "add address ...: ...").
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace knd {

struct IpAddr {
  int family = 0;                   // AF_INET or AF_INET6
  std::array<uint8_t, 16> bytes{};  // network order; IPv4 uses the first 4
  size_t len() const;               // 4 or 16
  int max_prefix() const;           // 32 or 128
  bool operator==(const IpAddr&) const = default;
};

// "address/length"; the address keeps its host bits (192.0.2.10/24 is an interface address).
struct IpPrefix {
  IpAddr addr;
  int prefix = 0;
  bool operator==(const IpPrefix&) const = default;
};

// A bare address.
absl::StatusOr<IpAddr> ParseIp(std::string_view s);
// "address/length"; the length is required.
absl::StatusOr<IpPrefix> ParseCidr(std::string_view s);
// A CIDR, or a bare address meaning the host prefix (/32, /128).
absl::StatusOr<IpPrefix> ParseIpOrCidr(std::string_view s);

// Canonical text ("2001:db8::10"); "" when `len` does not fit `family` (a truncated netlink
// attribute, an unknown family).
std::string FormatIp(int family, const void* data, size_t len);
std::string FormatIp(const IpAddr& ip);
// "2001:db8::10/64" (host bits kept); "" like FormatIp.
std::string FormatCidr(int family, const void* data, size_t len, int prefix);
std::string FormatCidr(const IpPrefix& p);

using MacAddr = std::array<uint8_t, 6>;
absl::StatusOr<MacAddr> ParseMac(std::string_view s);
// "02:ab:00:10:ff:01" for any length of bytes (IPoIB has 20); "" when len == 0.
std::string FormatMac(const uint8_t* data, size_t len);
std::string FormatMac(const MacAddr& mac);
// The lowercase form of a MAC, or `s` unchanged when it does not parse.
std::string NormalizeMac(std::string_view s);

}  // namespace knd
