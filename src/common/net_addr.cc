#include "common/net_addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace knd {
namespace {

// absl::StrSplit for std::string_view (Debian's abseil has a string_view of its own).
std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  for (size_t start = 0;;) {
    const size_t at = s.find(sep, start);
    out.push_back(
        s.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start));
    if (at == std::string_view::npos) return out;
    start = at + 1;
  }
}

// Why `s` is not an address, beyond "it is not": the mistakes people make.
std::string IpHint(std::string_view s) {
  if (size_t pct = s.find('%'); pct != std::string_view::npos) {
    return absl::StrCat(" (an IPv6 zone such as \"", std::string(s.substr(pct)),
                        "\" is not allowed: it names an interface of the host)");
  }
  if (!s.empty() && s.front() == '[') return " (without brackets)";
  if (s.find(':') == std::string_view::npos) {
    std::vector<std::string_view> parts = Split(s, '.');
    bool digits = parts.size() == 4;
    bool leading_zero = false;
    for (std::string_view p : parts) {
      for (char c : p) digits = digits && absl::ascii_isdigit(static_cast<unsigned char>(c));
      leading_zero = leading_zero || (p.size() > 1 && p.front() == '0');
    }
    if (digits && leading_zero) return " (leading zeros are not allowed)";
  }
  return "";
}

// inet_pton, which needs a NUL-terminated string; false if it is not an address.
bool Pton(std::string_view s, IpAddr* out) {
  const std::string str(s);
  out->family = str.find(':') != std::string::npos ? AF_INET6 : AF_INET;
  return inet_pton(out->family, str.c_str(), out->bytes.data()) == 1;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

size_t IpAddr::len() const { return family == AF_INET ? 4 : 16; }
int IpAddr::max_prefix() const { return family == AF_INET ? 32 : 128; }

absl::StatusOr<IpAddr> ParseIp(std::string_view s) {
  IpAddr ip;
  if (!Pton(s, &ip)) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", std::string(s), "\" is not an IP address", IpHint(s)));
  }
  return ip;
}

absl::StatusOr<IpPrefix> ParseCidr(std::string_view s) {
  const size_t slash = s.find('/');
  if (slash == std::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", std::string(s), "\" is not a CIDR (expected address/prefix-length)"));
  }
  const std::string_view addr = s.substr(0, slash);
  IpPrefix p;
  if (!Pton(addr, &p.addr)) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", std::string(s), "\": invalid IP address", IpHint(addr)));
  }
  const std::string_view len = s.substr(slash + 1);
  const int max = p.addr.max_prefix();
  const bool leading_zero = len.size() > 1 && len.front() == '0';
  // Digits only: from_chars would take a '-' ("/-0"); a leading zero ("/024") is refused too.
  bool ok = !len.empty() && !leading_zero && std::all_of(len.begin(), len.end(), [](char c) {
    return absl::ascii_isdigit(static_cast<unsigned char>(c));
  });
  if (ok) {
    auto [end, ec] = std::from_chars(len.data(), len.data() + len.size(), p.prefix);
    ok = ec == std::errc() && end == len.data() + len.size() && p.prefix <= max;
  }
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat("\"", std::string(s),
                                                   "\": prefix length must be 0..", max,
                                                   leading_zero ? ", without leading zeros" : ""));
  }
  return p;
}

absl::StatusOr<IpPrefix> ParseIpOrCidr(std::string_view s) {
  if (s.find('/') != std::string_view::npos) return ParseCidr(s);
  absl::StatusOr<IpAddr> ip = ParseIp(s);
  if (!ip.ok()) return ip.status();
  return IpPrefix{*ip, ip->max_prefix()};
}

std::string FormatIp(int family, const void* data, size_t len) {
  if (!((family == AF_INET && len == 4) || (family == AF_INET6 && len == 16))) return "";
  char buf[INET6_ADDRSTRLEN] = {};
  if (inet_ntop(family, data, buf, sizeof(buf)) == nullptr) return "";
  return buf;
}

std::string FormatIp(const IpAddr& ip) { return FormatIp(ip.family, ip.bytes.data(), ip.len()); }

std::string FormatCidr(int family, const void* data, size_t len, int prefix) {
  std::string ip = FormatIp(family, data, len);
  if (ip.empty()) return "";
  return absl::StrCat(ip, "/", prefix);
}

std::string FormatCidr(const IpPrefix& p) {
  return FormatCidr(p.addr.family, p.addr.bytes.data(), p.addr.len(), p.prefix);
}

absl::StatusOr<MacAddr> ParseMac(std::string_view s) {
  std::vector<std::string_view> groups = Split(s, ':');
  bool pairs = true;
  for (std::string_view g : groups) {
    pairs = pairs && g.size() == 2 && HexDigit(g[0]) >= 0 && HexDigit(g[1]) >= 0;
  }
  if (!pairs) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", std::string(s),
                     "\" is not a MAC address (expected six hex bytes like 02:00:00:00:00:01)"));
  }
  if (groups.size() != 6) {
    return absl::InvalidArgumentError(absl::StrCat("\"", std::string(s),
                                                   "\" is not a MAC address: ", groups.size(),
                                                   " bytes, expected 6 (like 02:00:00:00:00:01)"));
  }
  MacAddr mac{};
  for (size_t i = 0; i < 6; ++i) {
    mac[i] = static_cast<uint8_t>(HexDigit(groups[i][0]) * 16 + HexDigit(groups[i][1]));
  }
  return mac;
}

std::string FormatMac(const uint8_t* data, size_t len) {
  std::string out;
  for (size_t i = 0; i < len; ++i) {
    char buf[4];
    std::snprintf(buf, sizeof(buf), i == 0 ? "%02x" : ":%02x", data[i]);
    out += buf;
  }
  return out;
}

std::string FormatMac(const MacAddr& mac) { return FormatMac(mac.data(), mac.size()); }

std::string NormalizeMac(std::string_view s) {
  absl::StatusOr<MacAddr> mac = ParseMac(s);
  return mac.ok() ? FormatMac(*mac) : std::string(s);
}

}  // namespace knd
