// A ResourceClaim as the API server returns it (written by a namespace user, allocated by the
// scheduler): the kubelet's NodePrepareResources for it, then NodeUnprepareResources. The
// claim read is the input; the pod, two NICs and the API are stand-ins. Whatever Prepare
// answers, Unprepare must leave no plan behind.
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "dra/fake_kube.h"
#include "dra/preparer.h"
#include "fuzz_util.h"
#include "state/plan_store.h"

using nlohmann::json;
namespace dra = knd::dra;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static knd::fuzz::ScratchDir* dir = new knd::fuzz::ScratchDir();
  json claim = json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (claim.is_discarded()) return 0;

  dir->Reset();
  dra::fakes::FakeKube kube;
  kube.objects["/apis/resource.k8s.io/v1/namespaces/team-a/resourceclaims/claim-a"] = claim;
  kube.objects["/api/v1/namespaces/team-a/pods/pod-a"] = {
      {"apiVersion", "v1"},
      {"kind", "Pod"},
      {"metadata", {{"namespace", "team-a"}, {"name", "pod-a"}, {"uid", "pod-uid-1"}}},
      {"spec", {{"containers", json::array()}}}};
  knd::state::PlanStore store(dir->path() + "/plans");
  dra::Preparer::Options opts;
  opts.driver_name = "knd.k8s.cni.cncf.io";
  opts.node_name = "node1";
  opts.cdi_dir = dir->path() + "/cdi";
  opts.device_wait = std::chrono::milliseconds(0);
  dra::Preparer preparer(
      kube, store,
      [](const std::string& name) -> std::optional<knd::inventory::Device> {
        if (name != "eth1" && name != "eth2") return std::nullopt;
        knd::inventory::Device d;
        d.name = d.ifname = name;
        d.ifindex = name == "eth1" ? 7 : 8;
        d.mac = "02:11:22:33:44:5" + name.substr(3);
        d.pci_address = "0000:03:00." + name.substr(3);
        return d;
      },
      opts);
  const dra::ClaimRef ref{"team-a", "claim-uid-1", "claim-a"};
  (void)preparer.Prepare(ref, std::chrono::steady_clock::now());
  if (absl::Status st = preparer.Unprepare(ref); !st.ok()) {
    fprintf(stderr, "Unprepare failed: %s\n", std::string(st.message()).c_str());
    abort();
  }
  if (!store.List().empty()) {
    fprintf(stderr, "Unprepare left a plan behind\n");
    abort();
  }
  return 0;
}
