// What the API server (or a proxy in front of it) sends: watch streams cut into arbitrary
// chunks, error bodies, Pod objects as the pod watch reads them, and the network-status
// annotation knd merges into.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "common/text.h"
#include "fuzz_util.h"
#include "kube/http_util.h"
#include "kube/network_status.h"
#include "kube/pod_cache.h"

using nlohmann::json;
namespace kube = knd::kube;
namespace kint = knd::kube::internal;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  knd::fuzz::Input in(data, size);
  const uint8_t mode = in.Byte();
  const size_t chunk = 1 + in.Byte();
  const std::string_view text = in.Rest();
  switch (mode % 4) {
    case 0: {
      // A small cap, so the fuzzer reaches the over-long-line path.
      kint::WatchLineDecoder dec(/*max_line_bytes=*/512);
      for (size_t at = 0; at < text.size(); at += chunk) {
        absl::StatusOr<kint::WatchLineDecoder::Result> r =
            dec.Feed(text.substr(at, chunk), [](const kube::WatchEvent& ev) {
              (void)knd::DumpJson(ev.object);
              (void)kube::PodFactsOf(ev.object);
              return ev.type != "DELETED";
            });
        if (dec.pending() > dec.max_line_bytes()) abort();
        if (!r.ok() || *r == kint::WatchLineDecoder::Result::kStopped) break;
      }
      break;
    }
    case 1:
      (void)kint::StatusFromHttp(400 + chunk % 200, text, "GET /api/v1/pods");
      (void)kint::ParseRetryAfter(text);
      break;
    case 2: {
      json pod = json::parse(text, nullptr, /*allow_exceptions=*/false);
      if (pod.is_discarded()) return 0;
      (void)kube::PodFactsOf(pod);
      (void)kint::StatusFromApiStatus(pod, "PATCH pod");
      (void)kint::MetadataString(pod, "name");
      break;
    }
    default: {
      kube::NetworkStatusEntry e;
      e.name = "ns/net";
      e.interface = "net1";
      e.ips = {"10.0.0.2/24"};
      absl::StatusOr<std::string> merged =
          kube::MergeNetworkStatus(std::string(text), "knd/claim-1", {kube::NetworkStatusJson(e)});
      if (merged.ok() && !merged->empty()) {
        json back = json::parse(*merged, nullptr, false);
        if (!back.is_array()) abort();  // knd writes what it can read back
      }
      break;
    }
  }
  return 0;
}
