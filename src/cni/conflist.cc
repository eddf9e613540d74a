#include "cni/conflist.h"

#include <algorithm>
#include <cctype>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/text.h"

namespace knd::cni {

using nlohmann::json;

namespace {

std::string Q(std::string_view s) { return absl::StrCat("\"", std::string(s), "\""); }

const char* TypeName(const json& j) {
  switch (j.type()) {
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "a list";
    case json::value_t::string:
      return "a string";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::null:
      return "null";
    default:
      return "a number";
  }
}

absl::Status Bad(std::string_view where, std::string_view field, std::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(std::string(where), field.empty() ? "" : ": ",
                                                 std::string(field), ": ", std::string(why)));
}

bool Supported(const std::string& v) {
  const auto& all = SupportedVersions();
  return std::find(all.begin(), all.end(), v) != all.end();
}

bool AllPluginsSupport(const std::vector<std::vector<std::string>>& plugin_versions,
                       const std::string& v) {
  for (const auto& pv : plugin_versions) {
    if (pv.empty()) continue;  // not asked
    if (std::find(pv.begin(), pv.end(), v) == pv.end()) return false;
  }
  return true;
}

}  // namespace

const std::vector<std::string>& SupportedVersions() {
  static const std::vector<std::string> kVersions = {"1.1.0", "1.0.0", "0.4.0", "0.3.1", "0.3.0"};
  return kVersions;
}

int CompareVersions(std::string_view a, std::string_view b) {
  auto parse = [](std::string_view v) {
    std::vector<int> out;
    size_t start = 0;
    while (start <= v.size()) {
      size_t dot = v.find('.', start);
      std::string_view part =
          v.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
      start = dot == std::string_view::npos ? v.size() + 1 : dot + 1;
      int n = 0;
      if (part.empty()) return std::vector<int>{};
      for (char c : part) {
        if (!std::isdigit(static_cast<unsigned char>(c))) return std::vector<int>{};
        n = n * 10 + (c - '0');
        if (n > 1000000) return std::vector<int>{};
      }
      out.push_back(n);
    }
    return out;
  };
  std::vector<int> x = parse(a), y = parse(b);
  if (x < y) return -1;
  if (y < x) return 1;
  return 0;
}

std::optional<std::string> InvalidPluginType(std::string_view t) {
  if (t.empty()) return std::string("must not be empty");
  if (t.find('/') != std::string_view::npos) return absl::StrCat(Q(t), " must not contain '/'");
  if (t.find("..") != std::string_view::npos) return absl::StrCat(Q(t), " must not contain '..'");
  if (t == ".") return absl::StrCat(Q(t), " is not a plugin name");
  for (char c : t) {
    if (c == '\0' || std::isspace(static_cast<unsigned char>(c)) ||
        std::iscntrl(static_cast<unsigned char>(c))) {
      return absl::StrCat(Q(t), " must not contain whitespace or control characters");
    }
  }
  return std::nullopt;
}

namespace {
std::optional<std::string> InvalidId(std::string_view s, const char* what) {
  if (s.empty()) return absl::StrCat(what, " must not be empty");
  if (!std::isalnum(static_cast<unsigned char>(s[0]))) {
    return absl::StrCat(what, " ", Q(s), " must start with a letter or digit");
  }
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-') {
      return absl::StrCat(what, " ", Q(s), " may hold only letters, digits, '_', '.' and '-'");
    }
  }
  return std::nullopt;
}
}  // namespace

std::optional<std::string> InvalidNetworkName(std::string_view name) {
  return InvalidId(name, "network name");
}

std::optional<std::string> InvalidContainerId(std::string_view id) {
  return InvalidId(id, "container id");
}

absl::StatusOr<json> NormalizeConfList(const json& config, std::string_view where) {
  if (!config.is_object())
    return Bad(where, "", absl::StrCat("expected an object, got ", TypeName(config)));
  json list;
  if (config.contains("plugins")) {
    list = config;
  } else {
    // A single plugin config: the list takes its name and version, the plugin keeps the rest.
    if (!config.contains("type")) {
      return Bad(where, "", "neither a network config list (plugins) nor a plugin config (type)");
    }
    json plugin = config;
    list = json::object();
    for (const char* k : {"name", "cniVersion"}) {
      if (auto it = plugin.find(k); it != plugin.end()) {
        list[k] = *it;
        plugin.erase(k);
      }
    }
    list["plugins"] = json::array({std::move(plugin)});
  }
  auto name = list.find("name");
  if (name == list.end()) return Bad(where, "name", "required field is missing");
  if (!name->is_string()) {
    return Bad(where, "name", absl::StrCat("expected a string, got ", TypeName(*name)));
  }
  if (auto why = InvalidNetworkName(name->get<std::string>())) return Bad(where, "name", *why);
  if (auto v = list.find("cniVersion"); v != list.end() && !v->is_string()) {
    return Bad(where, "cniVersion", absl::StrCat("expected a string, got ", TypeName(*v)));
  }
  if (auto v = list.find("cniVersions"); v != list.end()) {
    if (!v->is_array()) {
      return Bad(where, "cniVersions", absl::StrCat("expected a list, got ", TypeName(*v)));
    }
    for (const json& e : *v) {
      if (!e.is_string()) return Bad(where, "cniVersions", "expected a list of strings");
    }
  }
  // libcni refuses a list whose disableCheck is not a boolean.
  if (auto dc = list.find("disableCheck"); dc != list.end() && !dc->is_boolean()) {
    return Bad(where, "disableCheck", absl::StrCat("expected a boolean, got ", TypeName(*dc)));
  }
  const json& plugins = list["plugins"];
  if (!plugins.is_array()) {
    return Bad(where, "plugins", absl::StrCat("expected a list, got ", TypeName(plugins)));
  }
  if (plugins.empty()) return Bad(where, "plugins", "must list at least one plugin");
  for (size_t i = 0; i < plugins.size(); ++i) {
    const std::string path = absl::StrCat("plugins[", i, "]");
    const json& p = plugins[i];
    if (!p.is_object())
      return Bad(where, path, absl::StrCat("expected an object, got ", TypeName(p)));
    auto t = p.find("type");
    if (t == p.end()) return Bad(where, path + ".type", "required field is missing");
    if (!t->is_string()) {
      return Bad(where, path + ".type", absl::StrCat("expected a string, got ", TypeName(*t)));
    }
    if (auto why = InvalidPluginType(t->get<std::string>()))
      return Bad(where, path + ".type", *why);
    if (auto c = p.find("capabilities"); c != p.end() && !c->is_object()) {
      return Bad(where, path + ".capabilities",
                 absl::StrCat("expected an object, got ", TypeName(*c)));
    }
    if (auto rc = p.find("runtimeConfig"); rc != p.end() && !rc->is_object()) {
      return Bad(where, path + ".runtimeConfig",
                 absl::StrCat("expected an object, got ", TypeName(*rc)));
    }
    if (auto ipam = p.find("ipam"); ipam != p.end() && ipam->is_object()) {
      auto it = ipam->find("type");
      if (it != ipam->end() && it->is_string()) {
        if (auto why = InvalidPluginType(it->get<std::string>())) {
          return Bad(where, path + ".ipam.type", *why);
        }
      }
    }
  }
  return list;
}

absl::StatusOr<json> ParseConfList(std::string_view text, std::string_view where) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Bad(where, "", "is not valid JSON");
  return NormalizeConfList(j, where);
}

absl::StatusOr<std::string> PickVersion(const json& conflist,
                                        const std::vector<std::vector<std::string>>& pv) {
  const std::string name = JsonString(conflist, "name");
  if (auto it = conflist.find("cniVersions");
      it != conflist.end() && it->is_array() && !it->empty()) {
    std::vector<std::string> listed;
    for (const json& v : *it) {
      if (v.is_string()) listed.push_back(v.get<std::string>());
    }
    std::sort(listed.begin(), listed.end(),
              [](const std::string& a, const std::string& b) { return CompareVersions(a, b) > 0; });
    for (const auto& v : listed) {
      if (Supported(v) && AllPluginsSupport(pv, v)) return v;
    }
    return absl::FailedPreconditionError(
        absl::StrCat("network ", Q(name), ": none of cniVersions [", absl::StrJoin(listed, ", "),
                     "] is supported by knd and all of its plugins"));
  }
  const std::string given = JsonString(conflist, "cniVersion");
  if (!given.empty()) return given;
  for (const auto& v : SupportedVersions()) {
    if (AllPluginsSupport(pv, v)) return v;
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "network ", Q(name), ": no CNI version is supported by knd and all of its plugins"));
}

json PluginStdin(const json& conflist, size_t index, const std::string& cni_version,
                 const json& capability_args, const json& prev_result) {
  json in = conflist["plugins"][index];
  in["name"] = JsonString(conflist, "name");
  in["cniVersion"] = cni_version;
  json rc = json::object();
  if (auto it = in.find("runtimeConfig"); it != in.end() && it->is_object()) rc = *it;
  if (auto caps = in.find("capabilities"); caps != in.end()) {
    if (caps->is_object() && capability_args.is_object()) {
      for (const auto& [cap, enabled] : caps->items()) {
        if (!enabled.is_boolean() || !enabled.get<bool>()) continue;
        auto arg = capability_args.find(cap);
        if (arg != capability_args.end()) rc[cap] = *arg;
      }
    }
    in.erase("capabilities");
  }
  if (!rc.empty()) {
    in["runtimeConfig"] = std::move(rc);
  } else {
    in.erase("runtimeConfig");
  }
  if (!prev_result.is_null()) {
    in["prevResult"] = prev_result;
  } else {
    in.erase("prevResult");
  }
  return in;
}

json IpamStdin(const json& ipam, const std::string& network_name, const std::string& cni_version) {
  return json{{"cniVersion", cni_version}, {"name", network_name}, {"ipam", ipam}};
}

json HandDevice(const json& conflist, const DeviceHandoff& dev) {
  json out = conflist;
  if (!out.contains("plugins") || !out["plugins"].is_array()) return out;
  for (json& p : out["plugins"]) {
    if (!p.is_object()) continue;
    const bool host_device = JsonString(p, "type") == "host-device";
    if (!dev.device_id.empty()) p["deviceID"] = dev.device_id;
    if (host_device) {
      // host-device takes exactly the selector knd gives it; a stale one would pick another NIC.
      for (const char* k : {"device", "hwaddr", "kernelpath", "pciBusID"}) p.erase(k);
      if (!dev.pci_address.empty()) {
        p["pciBusID"] = dev.pci_address;
      } else {
        p["device"] = dev.netdev;
      }
    }
    auto caps = p.find("capabilities");
    const bool wants = caps != p.end() && caps->is_object() && caps->contains("deviceID") &&
                       (*caps)["deviceID"].is_boolean() && (*caps)["deviceID"].get<bool>();
    if (!wants || dev.device_id.empty()) continue;
    if (host_device && dev.pci_address.empty()) continue;  // would be read as a PCI address
    json& rc = p["runtimeConfig"];
    if (!rc.is_object()) rc = json::object();
    rc["deviceID"] = host_device ? dev.pci_address : dev.device_id;
  }
  return out;
}

absl::StatusOr<ParsedResult> ParseResult(const json& result, const std::string& ifname) {
  if (!result.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("CNI result: expected an object, got ", TypeName(result)));
  }
  ParsedResult out;
  // Index of the sandbox interface called `ifname` (the one the runtime asked for).
  std::optional<size_t> mine;
  if (auto it = result.find("interfaces"); it != result.end() && it->is_array()) {
    for (size_t i = 0; i < it->size(); ++i) {
      const json& itf = (*it)[i];
      if (JsonString(itf, "name") == ifname && !JsonString(itf, "sandbox").empty()) {
        mine = i;
        out.mac = JsonString(itf, "mac");
        break;
      }
    }
    if (!mine) {  // plugins that leave `sandbox` empty still name the interface
      for (size_t i = 0; i < it->size(); ++i) {
        if (JsonString((*it)[i], "name") == ifname) {
          mine = i;
          out.mac = JsonString((*it)[i], "mac");
          break;
        }
      }
    }
  }
  if (auto it = result.find("ips"); it != result.end()) {
    if (!it->is_array()) return absl::InvalidArgumentError("CNI result: ips: expected a list");
    for (size_t i = 0; i < it->size(); ++i) {
      const json& ip = (*it)[i];
      std::string addr = JsonString(ip, "address");
      if (addr.empty()) {
        return absl::InvalidArgumentError(absl::StrCat("CNI result: ips[", i, "].address missing"));
      }
      auto idx = ip.find("interface");
      if (idx != ip.end() && idx->is_number_integer() && mine &&
          idx->get<int64_t>() != static_cast<int64_t>(*mine)) {
        continue;  // another interface's address (e.g. the host side of a veth)
      }
      out.ips.push_back(std::move(addr));
      out.gateways.push_back(JsonString(ip, "gateway"));
    }
  }
  if (auto it = result.find("routes"); it != result.end() && it->is_array()) {
    for (const json& r : *it) {
      std::string dst = JsonString(r, "dst");
      if (dst.empty()) continue;
      out.routes.push_back({std::move(dst), JsonString(r, "gw")});
    }
  }
  return out;
}

std::string FormatError(const json& error) {
  std::string msg = JsonString(error, "msg");
  std::string details = JsonString(error, "details");
  std::string code;
  if (auto c = error.find("code"); c != error.end() && c->is_number_integer()) {
    code = absl::StrCat("code ", c->get<int64_t>());
  }
  std::string out = code;
  if (!msg.empty()) absl::StrAppend(&out, out.empty() ? "" : ": ", msg);
  if (!details.empty()) absl::StrAppend(&out, out.empty() ? "" : ": ", details);
  return out.empty() ? DumpJson(error) : out;
}

}  // namespace knd::cni
