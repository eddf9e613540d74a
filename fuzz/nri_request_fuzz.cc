// NRI requests as the runtime sends them (protobuf payloads), handled by knd's DriverHandler
// and PodNetwork over a plan store holding claims for one pod, as the NRI plugin dispatches
// them (src/nri/plugin.cc). The attacher is attach::NullAttacher: it never touches the kernel.
// First byte: which request; the rest: its serialized payload.
#include <cstdint>
#include <memory>
#include <string>

#include "attach/null_attacher.h"
#include "config/network_config.h"
#include "fuzz_util.h"
#include "nri/api.pb.h"
#include "nri/driver_handler.h"
#include "nri/pod_network.h"
#include "state/plan_store.h"

namespace knri = knd::nri;
namespace api = knd::nri::api;
namespace state = knd::state;

namespace {

// A claim prepared for pod uid "pod-1" (the seed corpus uses it): one device to move.
void AddPlans(state::PlanStore& store) {
  state::ClaimPlan p;
  p.claim_uid = "claim-1";
  p.claim_namespace = "ns";
  p.claim_name = "claim";
  p.pods.push_back({"pod-1", "ns", "pod"});
  state::DevicePlan d;
  d.request = "nic";
  d.pool = "node";
  d.device = "eth1";
  d.identity.ifname = "eth1";
  knd::config::NetworkConfig cfg;
  cfg.interface.name = "net1";
  d.config = knd::config::ToJson(cfg);
  p.devices.push_back(d);
  (void)store.Put(p);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static knd::fuzz::ScratchDir* dir = new knd::fuzz::ScratchDir();
  knd::fuzz::Input in(data, size);
  const uint8_t which = in.Byte();
  const std::string payload(in.Rest());

  dir->Reset();
  state::PlanStore store(dir->path());
  AddPlans(store);
  knd::attach::NullAttacher attacher;
  knri::PodNetwork pods(store, attacher);
  knri::DriverHandler handler(pods, (which & 0x80) ? knri::SandboxFailurePolicy::kDefer
                                                   : knri::SandboxFailurePolicy::kAuto);
  switch (which % 7) {
    case 0: {
      api::ConfigureRequest req;
      if (!req.ParseFromString(payload)) return 0;
      (void)handler.Configure(req.runtime_name(), req.runtime_version(),
                              std::chrono::milliseconds(req.request_timeout()));
      break;
    }
    case 1: {
      api::SynchronizeRequest req;
      if (!req.ParseFromString(payload)) return 0;
      std::vector<api::PodSandbox> ps(req.pods().begin(), req.pods().end());
      std::vector<api::Container> cs(req.containers().begin(), req.containers().end());
      (void)handler.Synchronize(ps, cs);
      break;
    }
    case 2: {
      api::RunPodSandboxRequest req;
      if (!req.ParseFromString(payload)) return 0;
      (void)handler.RunPodSandbox(req.pod());
      (void)handler.StopPodSandbox(req.pod());
      break;
    }
    case 3: {
      api::StopPodSandboxRequest req;
      if (!req.ParseFromString(payload)) return 0;
      (void)handler.StopPodSandbox(req.pod());
      break;
    }
    case 4: {
      api::RemovePodSandboxRequest req;
      if (!req.ParseFromString(payload)) return 0;
      (void)handler.RemovePodSandbox(req.pod());
      break;
    }
    case 5: {
      api::StateChangeEvent ev;
      if (!ev.ParseFromString(payload)) return 0;
      (void)knri::ToPodInfo(ev.pod());
      (void)knri::NetnsPath(ev.pod());
      break;
    }
    default: {
      api::CreateContainerRequest req;
      if (!req.ParseFromString(payload)) return 0;
      (void)handler.CreateContainer(req.pod(), req.container());
      break;
    }
  }
  return 0;
}
