// knd-driver: the node daemon. Flags -> options, build the objects, start them, wait for
// SIGTERM/SIGINT, stop in reverse order. No logic lives here.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "attach/attacher.h"
#include "attach/vfio.h"
#include "cni/executor.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "config/node_config.h"
#include "dra/plugin.h"
#include "dra/preparer.h"
#include "early_release.h"
#include "health_server.h"
#include "inventory/discovery.h"
#include "inventory/inventory.h"
#include "inventory/monitor.h"
#include "inventory/rdma.h"
#include "inventory/slices.h"
#include "kube/claim_status.h"
#include "kube/client.h"
#include "kube/events.h"
#include "kube/network_status.h"
#include "kube/pod_cache.h"
#include "kube/slice_publisher.h"
#include "nri/driver_handler.h"
#include "nri/plugin.h"
#include "nri/pod_network.h"
#include "state/plan_store.h"
#include "status_reporter.h"
#include "sysfs/reader.h"

namespace {

struct DriverOptions {
  std::string kubeconfig;
  std::string node_name;
  std::string driver_name = "knd.k8s.cni.cncf.io";
  std::string config_path;
  // The kubelet's own defaults (kubeAPIQPS 50, kubeAPIBurst 100): Prepare reads the claim (and
  // a pod the pod watch has not seen yet), so a lower limit caps how fast a burst of pods can
  // start on this node.
  double kube_api_qps = 50;
  int kube_api_burst = 100;
  std::string kubelet_dir = "/var/lib/kubelet";
  std::string state_dir = "/var/lib/knd";
  std::string cdi_dir = "/var/run/cdi";
  std::string nri_socket = "/var/run/nri/nri.sock";
  std::string metrics_address = ":9177";
  std::string log_format = "text";
  std::vector<std::string> cni_bin_dirs = {"/opt/cni/bin", "/usr/lib/cni"};
  std::string cni_cache_dir;  // default <state-dir>/cni
  std::string netns_guard;    // host path of knd-netns-guard; "" = no guard
  std::string netns_guard_install_from;
  // Prepare waits this long for a device to come back from a pod that is stopping.
  double device_return_wait_s = 10;
  std::string sandbox_failure = "auto";
  // A claimed device that is neither on the host nor in a pod is withdrawn after this.
  double lost_device_grace_s = 10;
  int verbosity = 0;
};

const char* Env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

// A client for a component that retries on its own schedule (backoff, watch): without the
// client's internal retries its Stop() stays prompt while the API server is unreachable.
absl::StatusOr<std::unique_ptr<knd::kube::Client>> NewClientWithoutRetries(
    knd::kube::ClientConfig cfg) {
  cfg.max_retries = 0;
  return knd::kube::NewClient(cfg);
}

int Fail(const std::string& what, const absl::Status& st) {
  spdlog::critical("{}: {}", what, st.ToString());
  return 1;
}

// Turns a scan into the desired devices of the publisher (the only inventory <-> kube seam),
// and asks the monitor for another look when a missing device's grace period ends.
void Rescan(knd::inventory::Inventory& inventory, const std::string& driver_name,
            knd::kube::SlicePublisher& publisher, knd::inventory::LinkMonitor& monitor) {
  if (auto st = inventory.Rescan(); !st.ok()) {
    spdlog::error("inventory scan failed (keeping the last published devices): {}", st.ToString());
    return;
  }
  std::vector<nlohmann::json> out;
  for (const auto& d : inventory.Devices()) {
    out.push_back(knd::inventory::DeviceToJson(d, driver_name));
  }
  spdlog::debug("inventory: {} devices", out.size());
  publisher.SetDevices(std::move(out));
  if (auto next = inventory.NextReview()) monitor.ScheduleAt(*next);
}

// Where a device the scan did not find on the host is, by the plans: in a pod while knd put it
// there and that pod's netns still exists (a veth dies with its netns; a physical NIC comes
// back to the host and is found by the scan).
knd::inventory::Whereabouts WhereIs(const knd::state::PlanStore& plans, const std::string& device) {
  bool claimed = false;
  for (const auto& plan : plans.List()) {
    for (const auto& d : plan.devices) {
      if (d.device != device) continue;
      claimed = true;
      // A shared parent's children are in pods; the parent itself never leaves the host.
      if (d.child) continue;
      // A VF on vfio-pci has no netdev from Prepare to Unprepare, in a pod or not.
      if (d.vfio) return knd::inventory::Whereabouts::kInPod;
      if (d.state == knd::state::DeviceState::kAttaching)
        return knd::inventory::Whereabouts::kInPod;
      if (d.state == knd::state::DeviceState::kAttached) {
        const std::string netns = d.result ? d.result->netns : "";
        if (netns.empty() || ::access(netns.c_str(), F_OK) == 0) {
          return knd::inventory::Whereabouts::kInPod;
        }
      }
    }
  }
  return claimed ? knd::inventory::Whereabouts::kClaimed : knd::inventory::Whereabouts::kUnclaimed;
}

// Why a shared parent cannot carry its children's traffic, or nullopt when it can: its link
// is down, or it is gone from the host.
std::optional<std::string> ParentUnhealthy(const knd::inventory::Inventory& inventory,
                                           const std::string& device) {
  for (const auto& m : inventory.MissingDevices()) {
    if (m.device.name == device) return "gone from the host";
  }
  std::optional<knd::inventory::Device> d = inventory.Find(device);
  if (!d) return "gone from the host";
  if (d->operstate == "up" || d->operstate == "unknown") return std::nullopt;
  return "link is " + d->operstate;
}

// Shared parents whose health changed since the last call: their children's claims get their
// status written again (Ready=False while the parent is down). Called after every rescan.
class ParentWatch {
 public:
  void Check(const knd::inventory::Inventory& inventory, const knd::state::PlanStore& plans,
             knd::driver::StatusReporter& reporter) {
    std::map<std::string, std::optional<std::string>> now;
    for (const auto& d : inventory.Devices()) {
      if (d.shared) now[d.name] = ParentUnhealthy(inventory, d.name);
    }
    for (const auto& m : inventory.MissingDevices()) {
      if (m.device.shared) now[m.device.name] = std::string("gone from the host");
    }
    std::vector<std::string> changed;
    {
      std::lock_guard<std::mutex> l(mu_);
      for (const auto& [name, why] : now) {
        auto it = last_.find(name);
        // First sight of a healthy parent: nothing was reported otherwise.
        if (it == last_.end() ? why.has_value() : it->second != why) changed.push_back(name);
      }
      for (const auto& [name, why] : last_) {
        if (now.count(name) == 0 && why) changed.push_back(name);  // no longer shared
      }
      last_ = std::move(now);
    }
    for (const auto& name : changed) {
      spdlog::info("shared parent {}: {}", name,
                   ParentUnhealthy(inventory, name).value_or("healthy again"));
      reporter.ParentHealthChanged(name, plans);
    }
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::optional<std::string>> last_;
};

// Device health for the kubelet: the link state of every published device; the devices in
// pods are healthy; claimed devices that are missing (in doubt, or lost and withdrawn) are
// not.
std::vector<knd::dra::DeviceHealthInfo> DeviceHealth(const knd::inventory::Inventory& inventory,
                                                     const knd::state::PlanStore& plans,
                                                     const std::string& node) {
  std::vector<knd::dra::DeviceHealthInfo> out;
  std::set<std::string> in_pod, on_vfio, missing;
  for (const auto& plan : plans.List()) {
    for (const auto& dev : plan.devices) {
      // A VF on vfio-pci has no link to report on: its claim holds it from Prepare on.
      if (dev.vfio) on_vfio.insert(dev.device);
      if (knd::state::InPod(dev) && !dev.child) in_pod.insert(dev.device);
    }
  }
  const std::vector<knd::inventory::Inventory::Missing> gone = inventory.MissingDevices();
  for (const auto& m : gone) missing.insert(m.device.name);
  for (const auto& d : inventory.Devices()) {
    if (missing.count(d.name) > 0) continue;
    if (on_vfio.count(d.name) > 0) {
      out.push_back({node, d.name, true, "on vfio-pci for its claim"});
      continue;
    }
    if (in_pod.count(d.name) > 0) {
      out.push_back({node, d.name, true, "in pod"});
      continue;
    }
    const bool up = d.operstate == "up" || d.operstate == "unknown";
    out.push_back({node, d.name, up, up ? "ok" : "link is " + d.operstate});
  }
  for (const auto& m : gone) {
    out.push_back({node, m.device.name, false,
                   m.lost ? "lost: neither on the host nor in a pod; withdrawn from the "
                            "ResourceSlice"
                          : "missing: neither on the host nor in a pod (not found by the last "
                            "inventory scan)"});
  }
  return out;
}

// Scrape-time metrics of components that keep their own counters.
void RegisterMetrics(const knd::kube::SlicePublisher& publisher, const knd::dra::Plugin& dra,
                     const knd::nri::Plugin& nri, const knd::state::PlanStore& plans,
                     const knd::kube::ClaimStatusWriter& claim_status,
                     const knd::kube::NetworkStatusWriter& network_status,
                     const knd::kube::EventRecorder& events, const knd::kube::PodCache& pod_cache,
                     const knd::inventory::Inventory& inventory) {
  using knd::metrics::Registry;
  Registry& m = knd::metrics::Default();
  m.GaugeFunc("knd_published_devices", "Devices in this node's ResourceSlices.",
              [&] { return double(publisher.Stats().published_devices); });
  m.CounterFunc("knd_resourceslice_writes_total", "ResourceSlice API writes, by verb.", {"verb"},
                [&] {
                  auto st = publisher.Stats();
                  return Registry::Samples{{{"create"}, double(st.creates)},
                                           {{"update"}, double(st.updates)},
                                           {{"delete"}, double(st.deletes)}};
                });
  m.CounterFunc("knd_resourceslice_publish_errors_total", "Failed ResourceSlice reconcile passes.",
                {}, [&] {
                  return Registry::Samples{{{}, double(publisher.Stats().errors)}};
                });
  m.GaugeFunc("knd_resourceslice_last_publish_timestamp_seconds",
              "Unix time of the last ResourceSlice write (0: none yet).", [&] {
                auto t = publisher.Stats().last_publish.time_since_epoch();
                return double(std::chrono::duration_cast<std::chrono::seconds>(t).count());
              });
  m.GaugeFunc("knd_prepared_claims", "Claims prepared on this node.",
              [&] { return double(plans.List().size()); });
  m.GaugeFunc("knd_attached_devices", "Devices attached to pods on this node.", [&] {
    size_t n = 0;
    for (const auto& p : plans.List()) {
      for (const auto& d : p.devices) n += d.state == knd::state::DeviceState::kAttached;
    }
    return double(n);
  });
  m.GaugeFunc("knd_devices_missing",
              "Claimed devices that are neither on the host nor in a pod (lost or in doubt).",
              [&inventory] { return double(inventory.MissingDevices().size()); });
  m.GaugeFunc("knd_kubelet_registered", "1 when registered with the kubelet.",
              [&] { return dra.registered() ? 1.0 : 0.0; });
  m.GaugeFunc("knd_nri_connected", "1 when registered with the container runtime.",
              [&] { return nri.connected() ? 1.0 : 0.0; });
  m.GaugeFunc("knd_nri_request_timeout_seconds",
              "The container runtime's NRI request timeout: it drops knd if a hook takes longer "
              "(NRI's default of 2 s when the runtime does not say, as containerd 1.7).",
              [&] {
                auto t = nri.runtime().request_timeout;
                if (t.count() <= 0) t = std::chrono::seconds(2);
                return std::chrono::duration<double>(t).count();
              });
  m.GaugeFunc("knd_nri_runtime_info",
              "The container runtime knd last registered with (labels), 1 while connected.",
              {"runtime", "version", "nri_version"}, [&] {
                auto rt = nri.runtime();
                if (rt.name.empty()) return Registry::Samples{};
                return Registry::Samples{
                    {{rt.name, rt.version, rt.nri_version}, nri.connected() ? 1.0 : 0.0}};
              });
  m.CounterFunc("knd_nri_disconnected_seconds_total",
                "Seconds since start without a connection to the container runtime (pods the "
                "runtime started then got no knd hook).",
                {}, [&] {
                  return Registry::Samples{{{}, nri.disconnected_seconds()}};
                });
  m.CounterFunc("knd_claim_status_writes_total",
                "ResourceClaim status applies, by outcome (failed ones are retried).", {"outcome"},
                [&] {
                  auto st = claim_status.Stats();
                  return Registry::Samples{{{"success"}, double(st.writes)},
                                           {{"error"}, double(st.failures)},
                                           {{"dropped"}, double(st.dropped)}};
                });
  m.CounterFunc("knd_network_status_writes_total",
                "Pod network-status annotation patches, by outcome.", {"outcome"}, [&] {
                  auto st = network_status.Stats();
                  return Registry::Samples{{{"success"}, double(st.patches)},
                                           {{"conflict"}, double(st.conflicts)},
                                           {{"error"}, double(st.failures)},
                                           {{"dropped"}, double(st.dropped)}};
                });
  m.GaugeFunc("knd_pod_cache_pods", "Pods of this node held by the pod watch.",
              [&] { return double(pod_cache.Stats().pods); });
  m.CounterFunc(
      "knd_pod_cache_lookups_total",
      "Prepare's pod lookups, by result (a miss is a pod read from the API).", {"result"}, [&] {
        auto st = pod_cache.Stats();
        return Registry::Samples{{{"hit"}, double(st.hits)}, {{"miss"}, double(st.misses)}};
      });
  m.CounterFunc("knd_events_total", "Kubernetes Events, by what became of them.", {"outcome"}, [&] {
    auto st = events.Stats();
    return Registry::Samples{{{"created"}, double(st.created)},
                             {{"patched"}, double(st.patched)},
                             {{"folded"}, double(st.folded)},
                             {{"dropped"}, double(st.dropped_queue + st.dropped_flood)},
                             {{"error"}, double(st.failed)}};
  });
}

}  // namespace

int main(int argc, char** argv) {
  DriverOptions o;
  o.node_name = Env("NODE_NAME");
  CLI::App app{"knd-driver: Kubernetes Network Driver (DRA + NRI) node daemon"};
  app.add_option("--kubeconfig", o.kubeconfig,
                 "kubeconfig file (default: in-cluster config when KUBERNETES_SERVICE_HOST is "
                 "set)");
  app.add_option("--node-name", o.node_name, "this node's name (default: $NODE_NAME)");
  auto* driver_opt =
      app.add_option("--driver-name", o.driver_name, "DRA driver name")->capture_default_str();
  app.add_option("--config", o.config_path, "node config YAML (which devices to publish)");
  app.add_option("--kubelet-dir", o.kubelet_dir,
                 "kubelet root (plugin sockets in plugins/ and plugins_registry/)")
      ->capture_default_str();
  app.add_option("--state-dir", o.state_dir, "knd's state (claim plans, device cache)")
      ->capture_default_str();
  app.add_option("--cdi-dir", o.cdi_dir, "runtime's dynamic CDI spec dir")->capture_default_str();
  app.add_option("--nri-socket", o.nri_socket, "container runtime's NRI socket")
      ->capture_default_str();
  app.add_option("--cni-bin-dir", o.cni_bin_dirs,
                 "directory of CNI plugin binaries (repeatable; searched in order)")
      ->capture_default_str();
  app.add_option("--cni-cache-dir", o.cni_cache_dir,
                 "CNI result cache (DEL after a restart) (default: <state-dir>/cni)");
  app.add_option("--netns-guard", o.netns_guard,
                 "host path of knd-netns-guard: every claim's CDI spec runs it as an OCI "
                 "createRuntime hook that fails a container whose pod lacks the claim's "
                 "interfaces (the runtime dropped knd's NRI hook) (\"\" = no guard)");
  app.add_option("--netns-guard-install-from", o.netns_guard_install_from,
                 "copy this knd-netns-guard binary to the --netns-guard path at start (a "
                 "hostPath the runtime can run it from)");
  app.add_option("--sandbox-failure", o.sandbox_failure,
                 "what a failed attach does to RunPodSandbox: fail = fail it (the kubelet retries "
                 "the sandbox); defer = let it start and retry the attach in the background (the "
                 "netns guard holds the containers); auto = defer on runtimes that cannot "
                 "restart after a failed sandbox is retried (containerd 2.0 to 2.2.5), else fail")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "fail", "defer"}));
  app.add_option("--device-return-wait", o.device_return_wait_s,
                 "seconds NodePrepareResources waits for a device that is still in a pod which "
                 "is stopping (then it fails and the kubelet retries)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 40.0));
  app.add_option("--lost-device-grace", o.lost_device_grace_s,
                 "seconds a claimed device may be neither on the host nor in a pod before it is "
                 "withdrawn from the ResourceSlice and reported lost")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  app.add_option("--metrics-address", o.metrics_address,
                 "listen address of /healthz, /readyz and /metrics (\"\" disables)")
      ->capture_default_str();
  app.add_option(
         "--kube-api-qps", o.kube_api_qps,
         "API client QPS limit (each of the driver's clients: Prepare, slices, status, events)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--kube-api-burst", o.kube_api_burst, "API client burst")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--log-format", o.log_format, "log format")
      ->capture_default_str()
      ->check(CLI::IsMember({"text", "json"}));
  app.add_option("-v,--v", o.verbosity, "log verbosity (klog style: 0 info, 4 debug, 5 trace)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  knd::InitLogging(o.log_format == "json" ? knd::LogFormat::kJson : knd::LogFormat::kText,
                   o.verbosity);
  if (o.node_name.empty()) {
    spdlog::critical("--node-name (or $NODE_NAME) is required");
    return 2;
  }

  knd::config::NodeConfig node_cfg;
  if (!o.config_path.empty()) {
    auto c = knd::config::LoadNodeConfig(o.config_path);
    if (!c.ok()) return Fail("node config", c.status());
    node_cfg = *c;
  }
  // --driver-name wins when given; else the node config's driverName; else the default.
  if (driver_opt->count() == 0 && !node_cfg.driver_name.empty()) {
    o.driver_name = node_cfg.driver_name;
  }

  absl::StatusOr<knd::kube::ClientConfig> kcfg;
  if (!o.kubeconfig.empty()) {
    kcfg = knd::kube::LoadKubeconfig(o.kubeconfig);
  } else if (*Env("KUBERNETES_SERVICE_HOST") != '\0') {
    kcfg = knd::kube::InClusterConfig();
  } else {
    kcfg = absl::InvalidArgumentError(
        "--kubeconfig is required when not running in a cluster (KUBERNETES_SERVICE_HOST unset)");
  }
  if (!kcfg.ok()) return Fail("kubernetes API config", kcfg.status());
  kcfg->qps = o.kube_api_qps;
  kcfg->burst = o.kube_api_burst;
  kcfg->user_agent = "knd-driver/0.1.0";
  auto client = knd::kube::NewClient(*kcfg);
  if (!client.ok()) return Fail("kubernetes API client", client.status());

  // Block the stop signals before any thread starts so every thread inherits the mask and
  // sigwait below is the only receiver.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  if (!o.netns_guard_install_from.empty()) {
    if (o.netns_guard.empty()) {
      return Fail("--netns-guard-install-from",
                  absl::InvalidArgumentError("needs --netns-guard (where to install it)"));
    }
    auto bin = knd::ReadFile(o.netns_guard_install_from);
    absl::Status st = bin.status();
    if (st.ok()) st = knd::WriteFileAtomic(o.netns_guard, *bin, 0755);
    if (!st.ok()) return Fail("installing knd-netns-guard to " + o.netns_guard, st);
  }
  if (!o.netns_guard.empty() && ::access(o.netns_guard.c_str(), X_OK) != 0) {
    return Fail("--netns-guard", absl::FailedPreconditionError(
                                     o.netns_guard + " is not an executable file: every "
                                                     "container with a claim would fail to start"));
  }
  knd::state::PlanStore plans(o.state_dir + "/plans");
  if (auto loaded = plans.LoadAll(); !loaded.ok()) {
    return Fail("claim plans in " + plans.dir(), loaded.status());
  } else {
    spdlog::info("loaded {} claim plans from {}", loaded->size(), plans.dir());
  }

  knd::kube::SlicePublisherOptions popts;
  popts.node_name = o.node_name;
  popts.driver_name = o.driver_name;
  auto pub_client = NewClientWithoutRetries(*kcfg);
  if (!pub_client.ok()) return Fail("kubernetes API client", pub_client.status());
  knd::kube::SlicePublisher publisher(**pub_client, popts);

  // Status, network-status and events are written in the background by their own workers,
  // through a client of their own: a burst of attaches must not eat the rate limit that
  // Prepare's reads need. The two status writers retry with their own backoff (no client
  // retries, so Stop stays prompt); events are best effort with the client's retries.
  auto status_client = NewClientWithoutRetries(*kcfg);
  if (!status_client.ok()) return Fail("kubernetes API client", status_client.status());
  knd::kube::ClaimStatusWriterOptions cs_opts;
  cs_opts.driver_name = o.driver_name;
  knd::kube::ClaimStatusWriter claim_status(**status_client, cs_opts);
  knd::kube::NetworkStatusWriter network_status(**status_client);
  auto event_client = knd::kube::NewClient(*kcfg);
  if (!event_client.ok()) return Fail("kubernetes API client", event_client.status());
  knd::kube::EventRecorderOptions ev_opts;
  ev_opts.driver_name = o.driver_name;
  ev_opts.node_name = o.node_name;
  knd::kube::EventRecorder events(**event_client, ev_opts);
  knd::driver::StatusReporter reporter(o.driver_name, claim_status, network_status, events);

  knd::inventory::ScanOptions sopts;
  sopts.config = node_cfg;
  knd::inventory::InventoryOptions iopts;
  iopts.cache_path = o.state_dir + "/devices.json";
  iopts.where = [&plans](const std::string& device) { return WhereIs(plans, device); };
  iopts.lost_grace = std::chrono::milliseconds(static_cast<int64_t>(o.lost_device_grace_s * 1000));
  iopts.on_lost = [&events, node = o.node_name](const knd::inventory::Device& d,
                                                const std::string& why) {
    static auto& lost = knd::metrics::Default().Counter(
        "knd_devices_lost_total",
        "Claimed devices withdrawn from the ResourceSlice because they were neither on the host "
        "nor in a pod.",
        {});
    lost.Inc({});
    events.Record(knd::kube::NodeObject(node), knd::kube::kEventWarning,
                  knd::kube::event_reason::kDeviceLost,
                  absl::StrCat("device ", d.name, " is lost: ", why,
                               "; withdrawn from the ResourceSlice until it is back"));
  };
  knd::inventory::Inventory inventory(
      [scanner = knd::inventory::Scanner(sopts)] { return scanner.Scan(); }, std::move(iopts));
  if (auto st = inventory.cache_status(); !st.ok()) {
    return Fail("state of the previous run", st);
  }

  auto attacher = knd::attach::NewNetlinkAttacher();
  knd::cni::ExecutorOptions cni_opts;
  cni_opts.bin_dirs = o.cni_bin_dirs;
  cni_opts.cache_dir = o.cni_cache_dir.empty() ? o.state_dir + "/cni" : o.cni_cache_dir;
  knd::cni::Executor cni_executor(cni_opts);
  knd::nri::PodNetwork pod_network(plans, *attacher, &cni_executor);
  knd::metrics::Default().GaugeFunc(
      "knd_pod_netns_held", "Pod network namespaces knd holds open while its devices are in them.",
      [&pod_network] { return double(pod_network.held_netns()); });
  pod_network.SetObserver(&reporter);
  // This node's pods, watched, so that Prepare reads the claim and nothing else (a pod the
  // watch has not seen yet is read from the API).
  auto pods_client = NewClientWithoutRetries(*kcfg);
  if (!pods_client.ok()) return Fail("kubernetes API client", pods_client.status());
  knd::kube::PodCacheOptions pc_opts;
  pc_opts.node_name = o.node_name;
  // A pod that is over gives its devices back at once (confirmed with the API), so the next
  // pod's Prepare finds them home. Declared before the pod cache, whose watch calls it.
  knd::driver::EarlyRelease early_release(**client, plans, pod_network);
  knd::kube::PodCache pod_cache(**pods_client, pc_opts);
  pod_cache.SetOnGone(
      [&early_release](const std::string& ns, const std::string& name, const std::string& uid) {
        early_release.PodGone(ns, name, uid);
      });
  knd::metrics::Default().CounterFunc(
      "knd_devices_released_early_total",
      "Devices returned to the host when their pod was deleted or finished, before its sandbox "
      "stop.",
      {}, [&early_release] {
        return knd::metrics::Registry::Samples{{{}, double(early_release.released())}};
      });
  // A pod that uses a claim prepared for an earlier pod takes it over (the kubelet does not
  // prepare a claim twice); the claim's UID is checked with the API first.
  pod_network.SetClaimLookup(
      [&pod_cache](const knd::nri::PodInfo& pod) -> std::optional<std::vector<std::string>> {
        std::optional<knd::kube::PodFacts> f = pod_cache.Lookup(pod.namespace_, pod.name, pod.uid);
        if (!f) return std::nullopt;
        return f->claims;
      },
      [&client = **client](const std::string& ns,
                           const std::string& name) -> absl::StatusOr<std::string> {
        absl::StatusOr<nlohmann::json> c = client.Get(
            absl::StrCat("/apis/resource.k8s.io/v1/namespaces/", ns, "/resourceclaims/", name));
        if (!c.ok()) return c.status();
        const nlohmann::json* md =
            c->is_object() && c->contains("metadata") ? &(*c)["metadata"] : nullptr;
        if (md == nullptr || !md->contains("uid") || !(*md)["uid"].is_string()) {
          return absl::DataLossError("claim " + ns + "/" + name + " has no metadata.uid");
        }
        return (*md)["uid"].get<std::string>();
      });
  knd::dra::Preparer::Options prep_opts;
  prep_opts.driver_name = o.driver_name;
  prep_opts.node_name = o.node_name;
  prep_opts.cdi_dir = o.cdi_dir;
  prep_opts.cni = &cni_executor;
  prep_opts.pods = &pod_cache;
  prep_opts.netns_guard = o.netns_guard;
  if (node_cfg.claim_cni) {
    prep_opts.claim_cni = knd::config::ClaimCniPolicy{
        {node_cfg.claim_cni->plugins.begin(), node_cfg.claim_cni->plugins.end()},
        {node_cfg.claim_cni->ipam.begin(), node_cfg.claim_cni->ipam.end()}};
  }
  prep_opts.on_host = [&attacher](const knd::state::DeviceIdentity& id) {
    return attacher->OnHost(id);
  };
  prep_opts.check_device = [&attacher](const knd::state::DeviceIdentity& id,
                                       const knd::config::NetworkConfig& cfg) {
    return attacher->CheckDevice(id, cfg);
  };
  prep_opts.release = [&pod_network](const knd::state::ClaimPlan& holder, size_t index) {
    return pod_network.ReleaseDevice(holder, index);
  };
  prep_opts.lost = [&inventory](const std::string& device) { return inventory.LostReason(device); };
  prep_opts.rdma = [](const std::string& rdma) {
    return knd::inventory::ReadRdmaFacts(knd::sysfs::Reader("/sys"), rdma);
  };
  knd::attach::PciBinder pci_binder("/sys");
  prep_opts.vfio.check = [&pci_binder](const std::string& pci) {
    return pci_binder.CheckVfio(pci).status();
  };
  prep_opts.vfio.bind =
      [&pci_binder, &attacher](
          const knd::state::DevicePlan& d, const knd::config::SriovConfig& sriov,
          const std::function<absl::Status(const knd::state::HostSnapshot&)>& persist) {
        return knd::attach::TakeForVfio(*attacher, pci_binder, d, sriov, persist);
      };
  prep_opts.vfio.give_back = [&pci_binder, &attacher](const knd::state::DevicePlan& d) {
    return knd::attach::GiveBackFromVfio(*attacher, pci_binder, d);
  };
  prep_opts.device_wait =
      std::chrono::milliseconds(static_cast<int64_t>(o.device_return_wait_s * 1000));
  prep_opts.on_unprepare = [&pod_network](const knd::state::ClaimPlan& plan) {
    return pod_network.DetachClaim(plan);
  };
  prep_opts.on_failure = [&reporter](const knd::dra::ClaimRef& claim, const std::string& reason,
                                     const absl::Status& error) {
    reporter.PrepareFailed(claim, reason, error);
  };
  knd::dra::Preparer preparer(
      **client, plans, [&inventory](const std::string& name) { return inventory.Find(name); },
      prep_opts);
  knd::dra::Plugin::Options dra_opts{o.driver_name, o.kubelet_dir, o.node_name};
  dra_opts.health = [&inventory, &plans, node = o.node_name] {
    return DeviceHealth(inventory, plans, node);
  };
  knd::dra::Plugin dra_plugin(std::move(dra_opts), preparer);
  // The monitor is built here (started below) so that the reporter can poke it.
  std::unique_ptr<knd::inventory::LinkMonitor> monitor;
  ParentWatch parents;
  reporter.SetParentHealth(
      [&inventory](const std::string& device) { return ParentUnhealthy(inventory, device); });
  monitor = std::make_unique<knd::inventory::LinkMonitor>([&] {
    Rescan(inventory, o.driver_name, publisher, *monitor);
    parents.Check(inventory, plans, reporter);
    dra_plugin.NotifyHealthChanged();
  });
  // A device entering or leaving a pod changes where it is, and so its health and whether it
  // is published: a device destroyed with its pod makes no link event on the host.
  reporter.SetOnChange([&dra_plugin, &monitor] {
    dra_plugin.NotifyHealthChanged();
    monitor->Trigger();
  });
  knd::nri::DriverHandler nri_handler(pod_network,
                                      *knd::nri::ParseSandboxFailurePolicy(o.sandbox_failure));
  knd::metrics::Default().GaugeFunc(
      "knd_deferred_attach_pods",
      "Pods started without their devices after a failed attach (--sandbox-failure), whose "
      "attach knd retries.",
      [&nri_handler] { return double(nri_handler.deferred_pods()); });
  knd::nri::Plugin::Options nri_opts;
  nri_opts.socket_path = o.nri_socket;
  knd::nri::Plugin nri_plugin(nri_opts, nri_handler);

  knd::driver::HealthServer health(
      [&] {
        std::vector<std::string> failing;
        if (!dra_plugin.registered()) failing.push_back("kubelet registration");
        if (!nri_plugin.connected()) failing.push_back("runtime (NRI) connection");
        if (publisher.Stats().reconciles == 0) failing.push_back("ResourceSlices published");
        return failing;
      },
      [] { return knd::metrics::Default().Render(); });
  RegisterMetrics(publisher, dra_plugin, nri_plugin, plans, claim_status, network_status, events,
                  pod_cache, inventory);

  spdlog::info("knd-driver starting: node={} driver={} server={}", o.node_name, o.driver_name,
               kcfg->server);
  claim_status.Start();
  network_status.Start();
  events.Start();
  // What was still queued when the driver last stopped (everything after a crash).
  const std::string status_marker = o.state_dir + "/status-unwritten.json";
  reporter.ResyncAfterStart(status_marker, plans);
  early_release.Start();
  pod_cache.Start();
  // Inventory first: Prepare resolves devices through it.
  Rescan(inventory, o.driver_name, publisher, *monitor);
  publisher.Start();
  if (auto st = monitor->Start(); !st.ok()) {
    publisher.Stop();
    return Fail("link monitor", st);
  }
  if (!o.metrics_address.empty()) {
    if (auto st = health.Start(o.metrics_address); !st.ok()) {
      monitor->Stop();
      publisher.Stop();
      return Fail("health server", st);
    }
  }
  // NRI before DRA: a pod whose claims the kubelet prepares must find the hooks in place.
  if (auto st = nri_plugin.Start(); !st.ok()) {
    health.Stop();
    monitor->Stop();
    publisher.Stop();
    return Fail("NRI plugin", st);
  }
  if (auto st = dra_plugin.Start(); !st.ok()) {
    nri_plugin.Stop();
    health.Stop();
    monitor->Stop();
    publisher.Stop();
    return Fail("kubelet plugin", st);
  }

  int sig = 0;
  sigwait(&sigs, &sig);
  spdlog::info("received signal {}; stopping", sig);
  // Devices stay in running pods across a restart: nothing is detached on the way out.
  dra_plugin.Stop();
  nri_plugin.Stop();
  health.Stop();
  monitor->Stop();
  publisher.Stop();
  pod_cache.Stop();
  early_release.Stop();
  // Give queued status and events one second in all to reach the API server; what is left is
  // recorded and written at the next start.
  const auto flush_until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  auto left = [&flush_until] {
    return std::max(std::chrono::milliseconds(0),
                    std::chrono::duration_cast<std::chrono::milliseconds>(
                        flush_until - std::chrono::steady_clock::now()));
  };
  claim_status.WaitIdle(left());
  network_status.WaitIdle(left());
  events.WaitIdle(left());
  claim_status.Stop();
  network_status.Stop();
  events.Stop();
  if (auto st = reporter.SaveUnwritten(status_marker, plans); !st.ok()) {
    spdlog::error("recording unwritten status in {} (all of it is rewritten at the next start): {}",
                  status_marker, st.ToString());
  }
  auto stats = publisher.Stats();
  spdlog::info("stopped: {} creates, {} updates, {} deletes, {} devices published", stats.creates,
               stats.updates, stats.deletes, stats.published_devices);
  return 0;
}
