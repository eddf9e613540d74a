// ResourceSlice publishing cost (issue 9, benchmark 4): kube::SlicePublisher against the
// stand-in API server with N synthetic devices (inventory::DeviceToJson of made-up PCI NICs).
//
//   floor    the same slice objects POSTed one after the other by the same client, with no
//            publisher logic (the least any publisher must send for a first publish);
//   publish  time from SetDevices() to the whole pool on the server, and the writes it took;
//   burst    B link changes (one device's MTU each, 1 ms apart, as a flapping link would
//            send them) and the writes they caused once the publisher is quiet again;
//   idle     writes during a quiet period (must be 0).
//
// Writes are counted by the server (/_knd/stats writesTotal), not by the publisher.
// Prints one JSON object on stdout.
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "inventory/device.h"
#include "inventory/slices.h"
#include "kube/client.h"
#include "kube/slice_publisher.h"

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
constexpr char kDriver[] = "knd.k8s.cni.cncf.io";

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "knd-bench-publish: %s\n", msg.c_str());
  std::exit(1);
}

double Secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// A dual-port 25G NIC per PCI slot, with the attributes a real one publishes.
std::vector<json> SyntheticDevices(int n) {
  std::vector<json> out;
  for (int i = 0; i < n; ++i) {
    knd::inventory::Device d;
    int bus = 0x10 + i / 16, dev = (i / 2) % 8, fn = i % 2;
    d.pci_address = absl::StrFormat("0000:%02x:%02x.%d", bus, dev, fn);
    d.name = absl::StrFormat("pci-0000-%02x-%02x-%d", bus, dev, fn);
    d.ifname = absl::StrFormat("ens%df%d", bus * 8 + dev, fn);
    d.ifindex = 100 + i;
    d.mac = absl::StrFormat("02:00:00:%02x:%02x:%02x", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
    d.perm_mac = d.mac;
    d.mtu = 1500;
    d.kind = "device";
    d.operstate = "up";
    d.speed_mbps = 25000;
    d.driver = "mlx5_core";
    d.pci_vendor = "0x15b3";
    d.pci_device = "0x101d";
    d.numa_node = i % 2;
    d.pcie_root = absl::StrFormat("pci0000:%02x", bus & 0xf0);
    d.ipv4 = {absl::StrFormat("10.%d.%d.1/24", i / 250, i % 250)};
    out.push_back(knd::inventory::DeviceToJson(d, kDriver));
  }
  return out;
}

struct Bench {
  std::unique_ptr<knd::kube::Client> client;

  uint64_t Writes() {
    absl::StatusOr<json> s = client->Get("/_knd/stats");
    if (!s.ok()) Die("GET /_knd/stats: " + std::string(s.status().message()));
    return s->value("writesTotal", uint64_t{0});
  }
  void ResetStats() {
    absl::StatusOr<json> r = client->Create("/_knd/reset-stats", json::object());
    if (!r.ok()) Die("POST /_knd/reset-stats: " + std::string(r.status().message()));
  }
};

// Waits until the publisher has done a pass after `since` passes and is quiet (no new pass
// for `quiet`); returns the time the last pass finished being observed, or dies at `limit`.
Clock::time_point WaitQuiet(knd::kube::SlicePublisher& p, uint64_t since,
                            std::chrono::milliseconds quiet, std::chrono::seconds limit) {
  Clock::time_point start = Clock::now(), changed = start;
  uint64_t last = p.Stats().reconciles;
  while (Clock::now() - start < limit) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    uint64_t now = p.Stats().reconciles;
    if (now != last) {
      last = now;
      changed = Clock::now();
    }
    // Settled: a pass since `since`, none for `quiet`, and nothing waiting or running (a slow
    // machine may spend longer than `quiet` in the debounce and the last pass).
    if (now > since && Clock::now() - changed >= quiet && !p.Stats().pending) return changed;
  }
  Die("publisher did not settle");
}

}  // namespace

int main(int argc, char** argv) {
  std::string kubeconfig, node = "node1";
  int devices = 1000, burst = 100;
  double idle_seconds = 5;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) Die(a + ": missing value");
      return argv[++i];
    };
    if (a == "--kubeconfig") {
      kubeconfig = next();
    } else if (a == "--node") {
      node = next();
    } else if (a == "--devices") {
      devices = std::stoi(next());
    } else if (a == "--burst") {
      burst = std::stoi(next());
    } else if (a == "--idle-seconds") {
      idle_seconds = std::stod(next());
    } else {
      Die("unknown argument " + a +
          " (--kubeconfig PATH --node NAME --devices N --burst N --idle-seconds S)");
    }
  }
  if (kubeconfig.empty()) Die("--kubeconfig is required");
  absl::StatusOr<knd::kube::ClientConfig> cfg = knd::kube::LoadKubeconfig(kubeconfig);
  if (!cfg.ok()) Die("kubeconfig " + kubeconfig + ": " + std::string(cfg.status().message()));
  absl::StatusOr<std::unique_ptr<knd::kube::Client>> client = knd::kube::NewClient(*cfg);
  if (!client.ok()) Die("client: " + std::string(client.status().message()));
  Bench b;
  b.client = std::move(*client);
  std::vector<json> devs = SyntheticDevices(devices);
  json out{{"devices", devices}, {"burstChanges", burst}, {"idleSeconds", idle_seconds}};

  // Floor: the same pool written as bare POSTs (another node name, so it does not collide).
  {
    knd::kube::SlicePublisherOptions fo;
    fo.node_name = node + "-floor";
    fo.driver_name = kDriver;
    knd::kube::SliceChanges ch = knd::kube::PlanSliceChanges({}, devs, fo);
    b.ResetStats();
    Clock::time_point t0 = Clock::now();
    for (const json& s : ch.creates) {
      absl::StatusOr<json> r = b.client->Create(knd::kube::kResourceSlicesPath, s);
      if (!r.ok()) Die("floor POST slice: " + std::string(r.status().message()));
    }
    out["floor"] = {{"seconds", Secs(Clock::now() - t0)}, {"writes", b.Writes()}};
    for (const json& s : ch.creates) {
      (void)b.client->Delete(std::string(knd::kube::kResourceSlicesPath) + "/" +
                             s["metadata"]["name"].get<std::string>());
    }
  }

  knd::kube::SlicePublisherOptions opts;
  opts.node_name = node;
  opts.driver_name = kDriver;
  knd::kube::SlicePublisher pub(*b.client, opts);
  b.ResetStats();
  Clock::time_point t0 = Clock::now();
  pub.SetDevices(devs);
  pub.Start();
  for (;;) {
    knd::kube::PublisherStats st = pub.Stats();
    if (st.published_devices == static_cast<size_t>(devices) && st.reconciles > 0) break;
    if (Clock::now() - t0 > std::chrono::seconds(60)) Die("first publish did not finish in 60 s");
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  double publish_s = Secs(Clock::now() - t0);
  WaitQuiet(pub, 0, std::chrono::milliseconds(500), std::chrono::seconds(30));
  knd::kube::PublisherStats st = pub.Stats();
  out["publish"] = {{"seconds", publish_s},
                    {"writes", b.Writes()},
                    {"slices", st.creates + st.updates},
                    {"errors", st.errors}};

  // Burst: one device's MTU changes B times, 1 ms apart.
  b.ResetStats();
  uint64_t passes = pub.Stats().reconciles;
  const std::string mtu_key = std::string(kDriver) + "/mtu";
  Clock::time_point b0 = Clock::now();
  for (int k = 0; k < burst; ++k) {
    devs[static_cast<size_t>(k) % devs.size()]["attributes"][mtu_key] = {{"int", 9000 + k}};
    pub.SetDevices(devs);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  Clock::time_point b1 = Clock::now();
  Clock::time_point settled =
      WaitQuiet(pub, passes, std::chrono::milliseconds(1000), std::chrono::seconds(60));
  knd::kube::PublisherStats after = pub.Stats();
  out["burst"] = {{"writes", b.Writes()},
                  {"passes", after.reconciles - passes},
                  {"burstSeconds", Secs(b1 - b0)},
                  {"lastChangeToPublishedSeconds", Secs(settled - b1)},
                  {"slices", (devices + 127) / 128}};

  // Idle.
  b.ResetStats();
  uint64_t idle_passes = pub.Stats().reconciles;
  std::this_thread::sleep_for(std::chrono::duration<double>(idle_seconds));
  out["idle"] = {{"writes", b.Writes()}, {"passes", pub.Stats().reconciles - idle_passes}};
  pub.Stop();
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
