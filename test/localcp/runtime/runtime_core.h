// The runtime side of NRI, as containerd/CRI-O run it, for tests and the local control plane:
// serve the NRI socket, accept external plugins (RegisterPlugin on ConnID 2, Configure +
// Synchronize on ConnID 1), deliver pod/container events to subscribed plugins in index
// order, and drop plugins that time out or break the protocol (the runtime never reconnects;
// plugins must dial again). Emulates NRI v0.8 / v0.10 / v0.12 event delivery (wire-facts §3).
//
// ControlApi puts an HTTP control surface on top (the knd-runtime binary), creating real or
// fake pod network namespaces through NetnsOps, and running the pod's own CNI networks (the
// default network, Multus and its delegates) through knd's CNI executor.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "nri/api.pb.h"

namespace httplib {
class Server;
}

namespace knd::cni {
class Executor;
}

namespace knd::localcp {

namespace api = ::nri::pkg::api::v1alpha1;

struct RuntimeOptions {
  std::string socket_path = "/var/run/nri/nri.sock";
  std::string nri_version = "0.12";  // "0.8" | "0.10" | "0.12"
  absl::Duration request_timeout = absl::Seconds(2);
  absl::Duration registration_timeout = absl::Seconds(5);
  std::string runtime_name = "knd-runtime";
  std::string runtime_version = "0.1.0";
  // >0: send Synchronize in chunks of this many pods (more=true on all but the last), the
  // way runtimes split an oversized sync. 0: one message.
  size_t sync_chunk_pods = 0;
};

struct PluginInfo {
  std::string name;
  std::string index;
  int32_t events = 0;  // effective mask (0 from Configure already expanded to ValidEvents)
};

// ValidEvents of an emulated NRI version: 0x7FF (0.8), 0x3FFF (0.10, 0.12).
absl::StatusOr<int32_t> ValidEventsFor(const std::string& nri_version);

class RuntimeCore {
 public:
  // Removes and recreates the socket (parent dir 0700) and starts accepting plugins.
  static absl::StatusOr<std::unique_ptr<RuntimeCore>> Start(RuntimeOptions opts);
  ~RuntimeCore();
  // Closes every plugin connection and removes the socket. Idempotent.
  void Stop();

  // Plugins that completed Configure+Synchronize and are still connected, in index order.
  std::vector<PluginInfo> Plugins();
  // Waits until at least `n` plugins are active.
  bool WaitForPlugins(size_t n, absl::Duration timeout);

  // Pod events. A plugin error (non-OK ttrpc status) is returned, naming the plugin; a plugin
  // that times out or whose connection broke is dropped and the event continues without it.
  // RunPodSandbox records the pod (it is part of later Synchronize calls) only on success.
  absl::Status RunPodSandbox(const api::PodSandbox& pod);
  absl::Status StopPodSandbox(const api::PodSandbox& pod);
  // Also forgets the pod.
  absl::Status RemovePodSandbox(const api::PodSandbox& pod);
  // Returns the adjustments of all plugins merged in index order.
  absl::StatusOr<api::ContainerAdjustment> CreateContainer(const api::PodSandbox& pod,
                                                           const api::Container& container);

  const RuntimeOptions& options() const { return opts_; }
  // How many times each Plugin-service method was called (tests check the delivery path:
  // dedicated RPC vs StateChange).
  std::map<std::string, int> CallCounts();

 private:
  struct Conn;
  explicit RuntimeCore(RuntimeOptions opts);
  void AcceptLoop();
  void SetUp(Conn* c);
  absl::Status Synchronize(Conn* c);
  absl::Status PodEvent(api::Event ev, const api::PodSandbox& pod);
  // Drops a plugin whose call failed fatally; returns true if the error was fatal.
  bool DropIfFatal(Conn* c, const absl::Status& st, const char* what);
  std::vector<Conn*> Active(api::Event ev);
  void Count(const std::string& method);

  RuntimeOptions opts_;
  int32_t valid_events_ = 0;
  int listen_fd_ = -1;
  std::thread acceptor_;

  std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  bool stopped_ = false;
  std::list<std::unique_ptr<Conn>> conns_;
  std::map<std::string, api::PodSandbox> pods_;  // by sandbox id
  std::vector<api::Container> containers_;
  std::map<std::string, int> calls_;

  std::mutex event_mu_;  // one event at a time, like a single CRI caller
};

// Creates and deletes pod network namespaces for the control API.
class NetnsOps {
 public:
  virtual ~NetnsOps() = default;
  virtual absl::StatusOr<std::string> Create(const std::string& name) = 0;
  virtual absl::Status Delete(const std::string& path) = 0;
};

// Real named namespaces under `dir` (netns::CreateNamed / DeleteNamed).
std::unique_ptr<NetnsOps> RealNetnsOps(const std::string& dir);

// HTTP control API of knd-runtime:
//   GET  /plugins              -> [{name, index, events}]
//   GET  /pods                 -> [{uid, id, namespace, name, netns, hostNetwork}]
//   GET  /sandboxes            -> {ready: [{uid, id, namespace, name, netns}],
//                                  notReady: [same; stopped, not yet removed],
//                                  failed: [{uid, id, namespace, name, error}], failedTotal}
//        (failed: every POST /pods/run whose CNI ADD or NRI RunPodSandbox failed, kept for
//        good, as containerd 2.1.9 keeps a sandbox record per RunPodSandbox an NRI plugin
//        failed (wire-facts §9: 41 of them for one retried pod, and containerd could not
//        restart). /pods/remove does not clear them: tests count what a run produced.)
//   POST /pods/run             {uid, namespace, name, hostNetwork?, networks?}
//                              -> {id, netns, networks: [<CNI ADD result of each entry>]}
//        networks: [{conflist: {<CNI conflist>}, ifname?: "net1", deviceID?: "..."}]: the
//        pod's CNI networks, as containerd + Multus run them: CNI ADD of each conflist in
//        order, in the new pod netns, BEFORE NRI RunPodSandbox (wire-facts §9). ifname
//        defaults to net<N> (N = position, from 1), Multus's naming. deviceID is handed over
//        the way Multus's DRA path does (see InjectDeviceId in control_api.cc). CNI args:
//        IgnoreUnknown=1, K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_INFRA_CONTAINER_ID (the
//        sandbox id, also the CNI container id), K8S_POD_UID. A failed ADD: DEL of that entry
//        and of the ones added before it (reverse order), netns deleted, failed sandbox
//        recorded, 500 with the plugin error. A failed NRI RunPodSandbox: DEL of every entry
//        (reverse), netns deleted, failed sandbox recorded, 500.
//   POST /pods/stop            {uid, order?: "containerd"|"crio"}   -> {}
//        containerd: NRI StopPodSandbox, then CNI DEL of the networks (reverse, the netns still
//        there), then the netns is deleted. crio: CNI DEL, netns deleted, then NRI
//        StopPodSandbox. A failed CNI DEL answers 500 and keeps the netns and the networks not
//        yet deleted, so a retried stop (the kubelet retries StopPodSandbox) DELs them again.
//   POST /pods/remove          {uid}                                -> {}
//        (networks of a pod never stopped are DEL'ed first, with its netns)
//   POST /containers/create    {uid, name, cdiDevices?}             -> {containerId, adjust}
//        (cdiDevices: the qualified CDI ids the kubelet got from Prepare; their createRuntime
//        hooks run as runc would run them, and a failing hook fails the creation: 500)
// Bad requests -> 400 {error}, unknown pod -> 404, plugin errors -> 500 {error}.
class ControlApi {
 public:
  // `cdi_dir`: where CDI specs are resolved ("" = CDI devices are refused). `cni`: runs the
  // pods' networks (nullptr = a /pods/run with networks is refused).
  ControlApi(RuntimeCore& core, NetnsOps& netns, std::string cdi_dir = "",
             cni::Executor* cni = nullptr);
  ~ControlApi();
  // Binds host:port (port 0 = pick one) and serves on a thread; returns the bound port.
  absl::StatusOr<int> Listen(const std::string& host, int port);
  void Stop();

 private:
  // One entry of /pods/run "networks".
  struct PodNetwork {
    nlohmann::json conflist;  // normalized, the device id already injected
    std::string ifname;
    std::string device_id;
  };
  struct Pod {
    api::PodSandbox sandbox;
    std::string netns;
    bool host_network = false;
    bool stopped = false;
    std::vector<PodNetwork> networks;  // ADDed and not yet DEL'ed, in ADD order
  };
  struct FailedSandbox {
    std::string uid, id, namespace_, name, error;
  };
  void Routes();
  // CNI DEL of `nets` in reverse order in `netns` ("" = gone). Every entry is tried; the ones
  // whose DEL failed stay in `nets` (for a retry) and the first error is returned.
  absl::Status DelNetworks(const api::PodSandbox& sandbox, const std::string& netns,
                           std::vector<PodNetwork>& nets);
  void RecordFailed(const api::PodSandbox& sandbox, const std::string& error);

  RuntimeCore& core_;
  NetnsOps& netns_;
  const std::string cdi_dir_;
  cni::Executor* const cni_;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  std::mutex mu_;
  std::map<std::string, Pod> pods_;  // by pod UID
  std::vector<FailedSandbox> failed_;
};

}  // namespace knd::localcp
