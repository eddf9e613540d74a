// knd's own files on the node, as a crash, a full disk or an older release may leave them: claim
// plans (/var/lib/knd/plans) and the device cache. What decodes must encode and decode again to
// the same thing: a plan that does not survive a restart orphans the device it holds.
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "common/text.h"
#include "fuzz_util.h"
#include "inventory/inventory.h"
#include "state/plan.h"

using nlohmann::json;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  knd::fuzz::Input in(data, size);
  const uint8_t mode = in.Byte();
  const std::string_view text = in.Rest();
  if (mode % 2 == 0) {
    json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return 0;
    absl::StatusOr<knd::state::ClaimPlan> plan = knd::state::ClaimPlanFromJson(j);
    if (!plan.ok()) return 0;
    for (const auto& d : plan->devices) (void)knd::state::InPodName(d);
    const json out = knd::state::ToJson(*plan);
    absl::StatusOr<knd::state::ClaimPlan> again = knd::state::ClaimPlanFromJson(out);
    if (!again.ok() || knd::state::ToJson(*again) != out) {
      fprintf(stderr, "plan does not survive its own round trip: %s\n", knd::DumpJson(out).c_str());
      abort();
    }
    return 0;
  }
  absl::StatusOr<std::vector<knd::inventory::Device>> devs =
      knd::inventory::DeviceCacheFromText(text, "fuzz");
  if (!devs.ok()) return 0;
  const std::string out = knd::inventory::DeviceCacheToText(*devs);
  absl::StatusOr<std::vector<knd::inventory::Device>> again =
      knd::inventory::DeviceCacheFromText(out, "fuzz");
  if (!again.ok() || knd::inventory::DeviceCacheToText(*again) != out) {
    fprintf(stderr, "device cache does not survive its own round trip: %s\n", out.c_str());
    abort();
  }
  return 0;
}
