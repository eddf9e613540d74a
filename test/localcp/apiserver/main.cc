// knd-apiserver: runs the stand-in Kubernetes API server of the local control plane until
// SIGTERM/SIGINT. See apiserver.h for what it serves.
#include <signal.h>

#include <cstdio>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "apiserver.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "spdlog/spdlog.h"

int main(int argc, char** argv) {
  CLI::App app{"knd-apiserver: stand-in Kubernetes API server for the knd local control plane"};
  std::string listen = "127.0.0.1:0";
  std::string port_file, kubeconfig_out;
  std::vector<std::string> seeds;
  knd::localcp::ApiServerOptions opt;
  int verbosity = 0;
  app.add_option("--listen", listen, "HOST:PORT to listen on (PORT 0 picks a free port)");
  app.add_option("--port-file", port_file, "write the chosen port here once listening");
  app.add_option("--kubeconfig-out", kubeconfig_out, "write a kubeconfig for this server here");
  app.add_option("--token", opt.token, "require Authorization: Bearer <token>");
  app.add_option("--tls-cert", opt.tls_cert_file, "serve HTTPS with this certificate (PEM)");
  app.add_option("--tls-key", opt.tls_key_file, "private key (PEM) for --tls-cert");
  app.add_option("--seed", seeds, "YAML/JSON manifests (objects or Lists) to create at start");
  app.add_option("--history", opt.history_size, "watch events kept for resuming watches");
  app.add_option("--bookmark-interval-ms", opt.bookmark_interval_ms, "idle watch bookmark period");
  app.add_flag("-v", verbosity, "more logging (repeatable)");
  CLI11_PARSE(app, argc, argv);
  knd::InitLogging(knd::LogFormat::kText, verbosity);
  opt.log_requests = verbosity > 0;

  auto colon = listen.rfind(':');
  if (colon == std::string::npos) {
    std::fprintf(stderr, "--listen: want HOST:PORT, got \"%s\"\n", listen.c_str());
    return 2;
  }
  opt.host = listen.substr(0, colon);
  if (opt.host.size() > 2 && opt.host.front() == '[')
    opt.host = opt.host.substr(1, opt.host.size() - 2);
  try {
    opt.port = std::stoi(listen.substr(colon + 1));
  } catch (...) {
    opt.port = -1;
  }
  if (opt.port < 0 || opt.port > 65535) {
    std::fprintf(stderr, "--listen: bad port in \"%s\"\n", listen.c_str());
    return 2;
  }
  if (opt.tls_cert_file.empty() != opt.tls_key_file.empty()) {
    std::fprintf(stderr, "--tls-cert and --tls-key go together\n");
    return 2;
  }

  // Signals are taken by sigwait below; block them before any thread starts.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  knd::localcp::ApiServer server(opt);
  for (const std::string& file : seeds) {
    auto text = knd::ReadFile(file);
    if (!text.ok()) {
      spdlog::error("--seed {}: {}", file, text.status().ToString());
      return 1;
    }
    auto docs = knd::localcp::ParseManifests(*text);
    if (!docs.ok()) {
      spdlog::error("--seed {}: {}", file, docs.status().ToString());
      return 1;
    }
    for (const auto& doc : *docs) {
      if (absl::Status s = server.Seed(doc); !s.ok()) {
        spdlog::error("--seed {}: {}", file, s.ToString());
        return 1;
      }
    }
  }
  if (absl::Status s = server.Start(); !s.ok()) {
    spdlog::error("{}", s.ToString());
    return 1;
  }
  if (!kubeconfig_out.empty()) {
    if (absl::Status s = knd::WriteFileAtomic(kubeconfig_out, server.Kubeconfig(), 0600); !s.ok()) {
      spdlog::error("--kubeconfig-out: {}", s.ToString());
      return 1;
    }
  }
  // The port file last: whoever waits for it may use the server (and kubeconfig) at once.
  if (!port_file.empty()) {
    if (absl::Status s = knd::WriteFileAtomic(port_file, std::to_string(server.port()) + "\n");
        !s.ok()) {
      spdlog::error("--port-file: {}", s.ToString());
      return 1;
    }
  }
  spdlog::info("knd-apiserver listening on {}://{}:{}", server.tls() ? "https" : "http", opt.host,
               server.port());
  int sig = 0;
  sigwait(&sigs, &sig);
  spdlog::info("signal {}: stopping", sig);
  server.Stop();
  return 0;
}
