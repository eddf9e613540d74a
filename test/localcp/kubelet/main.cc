// knd-kubelet: flags, the control HTTP server, signal handling. The logic is in kubelet.cc.
#include <httplib.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <thread>

#include "common/file_util.h"
#include "common/logging.h"
#include "kubelet.h"

int main(int argc, char** argv) {
  CLI::App app{"knd-kubelet: kubelet stand-in speaking the DRA and plugin registration protocols"};
  knd::localcp::KubeletOptions opts;
  std::string kubeconfig, apiserver, listen = "127.0.0.1:0", port_file;
  int verbosity = 0;
  app.add_option("--registry-dir", opts.registry_dir, "plugin registry directory to watch")
      ->capture_default_str();
  app.add_option("--kubeconfig", kubeconfig, "kubeconfig of the API server");
  app.add_option("--apiserver", apiserver, "API server URL (instead of --kubeconfig)");
  app.add_option("--node-name", opts.node_name, "this node's name")->required();
  app.add_option("--listen", listen, "control API address host:port (port 0 = pick)")
      ->capture_default_str();
  app.add_option("--port-file", port_file, "write the control API port here once listening");
  app.add_flag("--wipe-slices-on-start", opts.wipe_slices_on_start,
               "delete all ResourceSlices of this node at start, like the real kubelet");
  app.add_flag("-v,--v", verbosity, "log verbosity (-v, -vv, or --v=N)");
  CLI11_PARSE(app, argc, argv);
  knd::InitLogging(knd::LogFormat::kText, verbosity);

  if (kubeconfig.empty() == apiserver.empty()) {
    spdlog::error("give exactly one of --kubeconfig and --apiserver");
    return 2;
  }
  absl::StatusOr<knd::localcp::ApiClient> api =
      kubeconfig.empty() ? knd::localcp::ApiClient::FromUrl(apiserver)
                         : knd::localcp::ApiClient::FromKubeconfig(kubeconfig);
  if (!api.ok()) {
    spdlog::error("{}", api.status().ToString());
    return 2;
  }
  auto colon = listen.rfind(':');
  if (colon == std::string::npos) {
    spdlog::error("--listen {}: want host:port", listen);
    return 2;
  }
  const std::string host = listen.substr(0, colon);
  int want_port = -1;
  const std::string port_text = listen.substr(colon + 1);
  auto [end, ec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), want_port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || want_port < 0 ||
      want_port > 65535) {
    spdlog::error("--listen {}: the port must be a number 0..65535", listen);
    return 2;
  }

  // Signals are taken by sigwait below; block them before any thread starts.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  knd::localcp::Kubelet kubelet(opts, std::move(*api));
  if (absl::Status st = kubelet.Start(); !st.ok()) {
    spdlog::error("start: {}", st.ToString());
    return 1;
  }

  httplib::Server svr;
  svr.set_tcp_nodelay(true);  // no Nagle/delayed-ACK stall on kept-alive control calls
  auto reply = [](httplib::Response& res, const knd::localcp::HttpAnswer& a) {
    res.status = a.status;
    res.set_content(a.body.dump(), "application/json");
  };
  svr.Get("/plugins", [&](const httplib::Request&, httplib::Response& res) {
    reply(res, {200, kubelet.Plugins()});
  });
  svr.Get("/health", [&](const httplib::Request&, httplib::Response& res) {
    reply(res, {200, kubelet.Health()});
  });
  auto handler = [&](bool pod, bool prepare) {
    return [&, pod, prepare](const httplib::Request& req, httplib::Response& res) {
      nlohmann::json body = nlohmann::json::parse(req.body, nullptr, false);
      if (body.is_discarded() || !body.is_object()) {
        reply(res, {400, {{"error", "body is not a JSON object"}}});
        return;
      }
      std::string api = req.get_param_value("api");
      if (!api.empty() && api != "v1" && api != "v1beta1") {
        reply(res, {400, {{"error", "api must be v1 or v1beta1"}}});
        return;
      }
      reply(res, pod ? kubelet.PreparePod(body, api, prepare)
                     : kubelet.PrepareClaims(body, api, prepare));
    };
  };
  svr.Post("/prepare", handler(true, true));
  svr.Post("/unprepare", handler(true, false));
  svr.Post("/prepare-claims", handler(false, true));
  svr.Post("/unprepare-claims", handler(false, false));

  int port = want_port == 0 ? svr.bind_to_any_port(host)
                            : (svr.bind_to_port(host, want_port) ? want_port : -1);
  if (port <= 0) {
    spdlog::error("--listen {}: cannot bind", listen);
    return 1;
  }
  std::thread http([&] { svr.listen_after_bind(); });
  spdlog::info("knd-kubelet: control API on {}:{}, registry {}", host, port, opts.registry_dir);
  if (!port_file.empty()) {
    if (absl::Status st = knd::WriteFileAtomic(port_file, std::to_string(port)); !st.ok()) {
      spdlog::error("--port-file: {}", st.ToString());
      svr.stop();
      http.join();
      return 1;
    }
  }

  int sig = 0;
  sigwait(&sigs, &sig);
  spdlog::info("knd-kubelet: signal {}, stopping", sig);
  svr.stop();
  http.join();
  kubelet.Stop();
  return 0;
}
