// knd-runtime: an NRI runtime stand-in (containerd/CRI-O's NRI side) with an HTTP control API
// that plays the CRI caller. Used by the local control plane and end-to-end tests.
#include <signal.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "cni/executor.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "runtime_core.h"

int main(int argc, char** argv) {
  CLI::App app{"knd-runtime: NRI runtime stand-in"};
  std::string socket = "/var/run/nri/nri.sock";
  std::string version = "0.12";
  int request_timeout_ms = 2000;
  int registration_timeout_ms = 5000;
  std::string listen = "127.0.0.1:0";
  std::string port_file;
  std::string netns_dir = "/run/netns";
  std::string cdi_dir;
  std::vector<std::string> cni_bin_dirs = {"/usr/lib/cni"};
  // Not libcni's /var/lib/cni: the stand-in must never touch a real runtime's cache on the
  // same host. Under /run (tmpfs) like the pod netns, so a cached result does not outlive the
  // namespace it describes.
  std::string cni_cache_dir = "/run/knd-runtime/cni";
  size_t sync_chunk = 0;
  int verbosity = 0;
  app.add_option("--nri-socket", socket, "NRI socket to serve (removed and recreated)");
  app.add_option("--nri-version", version, "emulated NRI version")
      ->check(CLI::IsMember({"0.8", "0.10", "0.12"}));
  app.add_option("--request-timeout-ms", request_timeout_ms, "per-call plugin timeout")
      ->check(CLI::PositiveNumber);
  app.add_option("--registration-timeout-ms", registration_timeout_ms,
                 "time a plugin has to register")
      ->check(CLI::PositiveNumber);
  app.add_option("--listen", listen, "control API address host:port (port 0 = pick)");
  app.add_option("--port-file", port_file, "write the bound control port to this file");
  app.add_option("--netns-dir", netns_dir, "where pod network namespaces are created");
  app.add_option("--cdi-dir", cdi_dir,
                 "CDI spec dir: /containers/create runs the createRuntime hooks of its cdiDevices");
  app.add_option("--cni-bin-dir", cni_bin_dirs,
                 "where the pods' CNI plugins are found (repeatable; searched in order)")
      ->capture_default_str();
  app.add_option("--cni-cache-dir", cni_cache_dir,
                 "CNI result cache of the pods' networks (results/ below it; read back at DEL)")
      ->capture_default_str();
  app.add_option("--sync-chunk-pods", sync_chunk, "split Synchronize into chunks of N pods");
  app.add_option("-v", verbosity, "log verbosity");
  CLI11_PARSE(app, argc, argv);
  knd::InitLogging(knd::LogFormat::kText, verbosity);

  auto colon = listen.rfind(':');
  if (colon == std::string::npos) {
    std::fprintf(stderr, "--listen %s: want host:port\n", listen.c_str());
    return 2;
  }
  std::string host = listen.substr(0, colon);
  int port = 0;
  try {
    port = std::stoi(listen.substr(colon + 1));
  } catch (...) {
    std::fprintf(stderr, "--listen %s: bad port\n", listen.c_str());
    return 2;
  }

  // Block the stop signals before any thread starts so only sigwait() below sees them.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  knd::localcp::RuntimeOptions opts;
  opts.socket_path = socket;
  opts.nri_version = version;
  opts.request_timeout = absl::Milliseconds(request_timeout_ms);
  opts.registration_timeout = absl::Milliseconds(registration_timeout_ms);
  opts.sync_chunk_pods = sync_chunk;
  auto core = knd::localcp::RuntimeCore::Start(opts);
  if (!core.ok()) {
    spdlog::error("knd-runtime: {}", core.status().ToString());
    return 1;
  }
  auto netns = knd::localcp::RealNetnsOps(netns_dir);
  knd::cni::ExecutorOptions cni_opts;
  cni_opts.bin_dirs = cni_bin_dirs;
  cni_opts.cache_dir = cni_cache_dir;
  knd::cni::Executor cni(cni_opts);
  knd::localcp::ControlApi api(**core, *netns, cdi_dir, &cni);
  absl::StatusOr<int> bound = api.Listen(host, port);
  if (!bound.ok()) {
    spdlog::error("knd-runtime: {}", bound.status().ToString());
    return 1;
  }
  spdlog::info("knd-runtime: control API on {}:{}; pod CNI plugins from {}, results in {}", host,
               *bound, absl::StrJoin(cni_bin_dirs, ":"), cni_cache_dir);
  if (!port_file.empty()) {
    absl::Status st = knd::WriteFileAtomic(port_file, std::to_string(*bound) + "\n");
    if (!st.ok()) {
      spdlog::error("knd-runtime: {}", st.ToString());
      return 1;
    }
  }
  int sig = 0;
  sigwait(&sigs, &sig);
  spdlog::info("knd-runtime: signal {}, shutting down", sig);
  api.Stop();
  (*core)->Stop();
  return 0;
}
