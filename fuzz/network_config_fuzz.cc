// NetworkConfig from a claim or DeviceClass (JSON a namespace user writes): decode, resolve
// with the claim-CNI policy, validate, and the plan round trip. Properties checked beyond "no
// crash": a config that resolved encodes to JSON that decodes and validates again, to the
// same JSON (the plan store keeps ToJson and the NRI hook decodes it later).
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "common/text.h"
#include "config/network_config.h"
#include "fuzz_util.h"

using nlohmann::json;
namespace cfg = knd::config;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  knd::fuzz::Input in(data, size);
  const uint8_t mode = in.Byte();
  json params = json::parse(in.Rest(), nullptr, /*allow_exceptions=*/false);
  if (params.is_discarded()) return 0;

  cfg::ClaimCniPolicy policy{{"macvlan", "bridge", "host-device"}, {"host-local", "static"}};
  cfg::Context ctx{"ns", "claim", "nic", (mode & 1) ? "fast" : "", (mode & 2) ? &policy : nullptr};
  std::vector<cfg::Entry> entries;
  entries.push_back({(mode & 4) ? cfg::Source::kClaim : cfg::Source::kClass, {}, params});
  if (mode & 8) entries.push_back({cfg::Source::kClaim, {"nic"}, params});

  absl::StatusOr<cfg::NetworkConfig> resolved = cfg::Resolve(entries, ctx);
  if (!resolved.ok()) {
    (void)knd::DumpJson(json(std::string(resolved.status().message())));
    return 0;
  }
  const json stored = cfg::ToJson(*resolved);
  const std::string text = knd::DumpJson(stored);
  absl::StatusOr<cfg::NetworkConfig> again = cfg::Decode(stored, "plan");
  if (!again.ok()) {
    fprintf(stderr, "resolved config does not decode again: %s\n%s\n",
            std::string(again.status().message()).c_str(), text.c_str());
    abort();
  }
  if (absl::Status st = cfg::Validate(*again, "plan"); !st.ok()) {
    fprintf(stderr, "resolved config does not validate again: %s\n%s\n",
            std::string(st.message()).c_str(), text.c_str());
    abort();
  }
  if (cfg::ToJson(*again) != stored) {
    fprintf(stderr, "plan round trip changed the config:\n%s\n%s\n", text.c_str(),
            knd::DumpJson(cfg::ToJson(*again)).c_str());
    abort();
  }
  return 0;
}
