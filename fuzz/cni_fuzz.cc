// CNI text knd reads: a NAD's spec.config (any namespace user's NAD), then what knd derives
// from it for each plugin; and what a plugin prints (an ADD result or an error object).
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "cni/conflist.h"
#include "common/text.h"
#include "fuzz_util.h"

using nlohmann::json;
namespace cni = knd::cni;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  knd::fuzz::Input in(data, size);
  const uint8_t mode = in.Byte();
  const std::string_view text = in.Rest();
  if (mode % 2 == 0) {
    absl::StatusOr<json> list = cni::ParseConfList(text, "NAD ns/net spec.config");
    if (!list.ok()) return 0;
    const size_t n = (*list)["plugins"].size();
    absl::StatusOr<std::string> version =
        cni::PickVersion(*list, std::vector<std::vector<std::string>>(n));
    json handed = cni::HandDevice(*list, {"0000:03:00.1", "0000:03:00.1", "eth1"});
    for (size_t i = 0; i < n && i < 8; ++i) {
      (void)knd::DumpJson(
          cni::PluginStdin(handed, i, version.ok() ? *version : "1.0.0", json::object(), json()));
    }
    if (list->contains("plugins") && !(*list)["plugins"].empty() &&
        (*list)["plugins"][0].contains("ipam")) {
      (void)knd::DumpJson(cni::IpamStdin((*list)["plugins"][0]["ipam"], "net", "1.0.0"));
    }
    return 0;
  }
  json out = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (out.is_discarded()) return 0;
  (void)cni::FormatError(out);
  absl::StatusOr<cni::ParsedResult> r = cni::ParseResult(out, "net1");
  if (r.ok()) {
    for (const auto& ip : r->ips) (void)knd::ValidUtf8(ip);
  }
  return 0;
}
