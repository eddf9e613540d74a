// knd-driver: the node daemon. Flags -> options, build the objects, start them, wait for
// SIGTERM/SIGINT, stop in reverse order. No logic lives here.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/logging.h"
#include "config/node_config.h"
#include "inventory/discovery.h"
#include "inventory/monitor.h"
#include "inventory/slices.h"
#include "kube/client.h"
#include "kube/slice_publisher.h"

namespace {

struct DriverOptions {
  std::string kubeconfig;
  std::string node_name;
  std::string driver_name = "knd.k8s.cni.cncf.io";
  std::string config_path;
  double kube_api_qps = 20;
  int kube_api_burst = 40;
  std::string log_format = "text";
  int verbosity = 0;
};

const char* Env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

int Fail(const std::string& what, const absl::Status& st) {
  spdlog::critical("{}: {}", what, st.ToString());
  return 1;
}

// Turns a scan into the desired devices of the publisher (the only inventory <-> kube seam).
void Rescan(const knd::inventory::Scanner& scanner, const std::string& driver_name,
            knd::kube::SlicePublisher& publisher) {
  auto devices = scanner.Scan();
  if (!devices.ok()) {
    spdlog::error("inventory scan failed (keeping the last published devices): {}",
                  devices.status().ToString());
    return;
  }
  std::vector<nlohmann::json> out;
  out.reserve(devices->size());
  for (const auto& d : *devices) out.push_back(knd::inventory::DeviceToJson(d, driver_name));
  spdlog::debug("inventory: {} devices", out.size());
  publisher.SetDevices(std::move(out));
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
  app.add_option("--kube-api-qps", o.kube_api_qps, "API client QPS limit")
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

  knd::kube::SlicePublisherOptions popts;
  popts.node_name = o.node_name;
  popts.driver_name = o.driver_name;
  knd::kube::SlicePublisher publisher(**client, popts);
  knd::inventory::ScanOptions sopts;
  sopts.config = node_cfg;
  knd::inventory::Scanner scanner(sopts);

  spdlog::info("knd-driver starting: node={} driver={} server={}", o.node_name, o.driver_name,
               kcfg->server);
  publisher.Start();
  Rescan(scanner, o.driver_name, publisher);
  knd::inventory::LinkMonitor monitor([&] { Rescan(scanner, o.driver_name, publisher); });
  if (auto st = monitor.Start(); !st.ok()) {
    publisher.Stop();
    return Fail("link monitor", st);
  }

  int sig = 0;
  sigwait(&sigs, &sig);
  spdlog::info("received signal {}; stopping", sig);
  monitor.Stop();
  publisher.Stop();
  auto stats = publisher.Stats();
  spdlog::info("stopped: {} creates, {} updates, {} deletes, {} devices published", stats.creates,
               stats.updates, stats.deletes, stats.published_devices);
  return 0;
}
