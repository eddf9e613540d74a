// knd-cri: a CRI (Kubernetes Container Runtime Interface, runtime.v1) client in the kubelet's
// runtime-client role. The real-runtime tests run it, one subcommand per step, to drive a real
// containerd (2.1, 1.7) through pod sandboxes and containers exactly as the kubelet would, so
// that knd's NRI plugin and CDI specs meet the runtime's own code paths. Only the calls and
// fields of proto/cri/v1/api.proto; no image pulls (tests import their images beforehand).
//
//   knd-cri [--endpoint PATH] [--timeout SECONDS] COMMAND ...
//     version
//     run-pod --uid U --namespace NS --name N [--attempt A] [--label K=V]... [--annotation K=V]...
//             [--host-network] [--privileged] [--log-dir DIR] [--cgroup-parent P]
//             [--runtime-handler H]
//     pod-status ID | stop-pod ID | remove-pod ID
//     list-pods [--label K=V]...
//     create-container POD_ID --name N --image IMG [--attempt A] [--command ARG]... [--arg ARG]...
//             [--workdir DIR] [--env K=V]... [--label K=V]... [--annotation K=V]...
//             [--cdi-device NAME]... [--log-path P] [--privileged]
//             --pod-uid U --pod-namespace NS --pod-name N [--pod-attempt A] [--pod-label K=V]...
//             [--pod-annotation K=V]... [--pod-host-network] [--pod-privileged]
//             [--pod-log-dir DIR] [--pod-cgroup-parent P]
//     start-container ID | stop-container ID [--grace SECONDS] | remove-container ID
//     container-status ID [--verbose]
//     list-containers [--pod POD_ID]
//     image-status IMAGE
//
// The --pod-* flags of create-container repeat the pod's run-pod flags: CreateContainerRequest
// carries the sandbox config, as the kubelet sends it. A repeatable flag takes one value per use,
// even one that starts with '-': --command sh --command -c --command 'echo hi'.
//
// Output: one JSON document on stdout, exit 0. A runtime error: exit 1 and, on stderr,
// "knd-cri: <RPC>: <gRPC code name>: <the runtime's message, verbatim>". Bad usage: exit 2.
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <iostream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cri/v1/api.grpc.pb.h"

namespace {

namespace cri = runtime::v1;
using nlohmann::json;

struct GlobalFlags {
  std::string endpoint = "/run/containerd/containerd.sock";
  double timeout_s = 30;
};

const char* CodeName(grpc::StatusCode code) {
  // clang-format off
  static constexpr const char* kNames[] = {
      "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
      "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
      "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
      "UNAUTHENTICATED"};
  // clang-format on
  auto i = static_cast<size_t>(code);
  return i < std::size(kNames) ? kNames[i] : "UNKNOWN";
}

int Print(const json& j) {
  std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
  return 0;
}

using RuntimeStub = cri::RuntimeService::Stub;
using ImageStub = cri::ImageService::Stub;

// One channel to the runtime's socket; each call gets its own deadline.
class Client {
 public:
  explicit Client(const GlobalFlags& g)
      : timeout_(std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::duration<double>(g.timeout_s))) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(16 << 20);  // as the kubelet: verbose status can be large
    auto channel =
        grpc::CreateCustomChannel(Target(g.endpoint), grpc::InsecureChannelCredentials(), args);
    runtime_ = cri::RuntimeService::NewStub(channel);
    images_ = cri::ImageService::NewStub(channel);
  }

  // Calls (stub.*method)(req, resp) with the deadline --timeout (plus `extra`). Returns 0, or
  // reports the error, the one way the tests parse it, and returns 1.
  template <class Req, class Resp>
  int Call(const char* rpc,
           grpc::Status (RuntimeStub::*method)(grpc::ClientContext*, const Req&, Resp*),
           const Req& req, Resp* resp, std::chrono::seconds extra = std::chrono::seconds(0)) {
    return Report(rpc, Invoke(*runtime_, method, req, resp, extra));
  }
  template <class Req, class Resp>
  int Call(const char* rpc,
           grpc::Status (ImageStub::*method)(grpc::ClientContext*, const Req&, Resp*),
           const Req& req, Resp* resp) {
    return Report(rpc, Invoke(*images_, method, req, resp, std::chrono::seconds(0)));
  }

 private:
  // A bare path, as --endpoint takes it, or already a gRPC target ("unix:///...").
  static std::string Target(const std::string& endpoint) {
    if (endpoint.starts_with("unix:")) return endpoint;
    return endpoint.starts_with("/") ? "unix://" + endpoint : "unix:" + endpoint;
  }

  template <class Stub, class Method, class Req, class Resp>
  grpc::Status Invoke(Stub& stub, Method method, const Req& req, Resp* resp,
                      std::chrono::seconds extra) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + timeout_ + extra);
    return (stub.*method)(&ctx, req, resp);
  }

  static int Report(const char* rpc, const grpc::Status& s) {
    if (s.ok()) return 0;
    std::cerr << "knd-cri: " << rpc << ": " << CodeName(s.error_code()) << ": " << s.error_message()
              << "\n";
    return 1;
  }

  std::chrono::milliseconds timeout_;
  std::unique_ptr<RuntimeStub> runtime_;
  std::unique_ptr<ImageStub> images_;
};

// ---- flags and request building ----

const CLI::Validator kKeyValue(
    [](std::string& s) {
      auto eq = s.find('=');
      return eq == std::string::npos || eq == 0 ? "expected KEY=VALUE, got '" + s + "'"
                                                : std::string();
    },
    "KEY=VALUE");

template <class Map>
void PutKeyValues(const std::vector<std::string>& kvs, Map* out) {
  for (const std::string& kv : kvs) {
    auto eq = kv.find('=');
    (*out)[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
}

// A repeatable flag: one value per use, all uses kept in order.
CLI::Option* AddList(CLI::App* cmd, const std::string& name, std::vector<std::string>& values,
                     const std::string& help) {
  return cmd->add_option(name, values, help)->allow_extra_args(false);
}

// What run-pod sends, and create-container repeats as the sandbox config.
struct PodFlags {
  std::string uid, ns, name, log_dir, cgroup_parent;
  uint32_t attempt = 0;
  std::vector<std::string> labels, annotations;
  bool host_network = false;
  bool privileged = false;
};

// prefix "" gives run-pod's --uid ...; "pod-" gives create-container's --pod-uid ...
void AddPodFlags(CLI::App* cmd, PodFlags& f, const std::string& prefix) {
  auto flag = [&prefix](const char* name) { return "--" + prefix + name; };
  cmd->add_option(flag("uid"), f.uid, "Pod UID")->required();
  cmd->add_option(flag("namespace"), f.ns, "Pod namespace")->required();
  cmd->add_option(flag("name"), f.name, "Pod name (also its hostname)")->required();
  cmd->add_option(flag("attempt"), f.attempt, "Sandbox attempt")->capture_default_str();
  AddList(cmd, flag("label"), f.labels, "Pod label K=V (repeatable)")->check(kKeyValue);
  AddList(cmd, flag("annotation"), f.annotations, "Pod annotation K=V (repeatable)")
      ->check(kKeyValue);
  cmd->add_flag(flag("host-network"), f.host_network, "Use the node's network namespace");
  cmd->add_flag(flag("privileged"), f.privileged, "Privileged sandbox");
  cmd->add_option(flag("log-dir"), f.log_dir, "Pod log directory (default: none)");
  cmd->add_option(flag("cgroup-parent"), f.cgroup_parent, "Pod cgroup parent");
}

// The kubelet's namespace choice for a pod and its containers (NamespacesForPod).
cri::NamespaceOption PodNamespaces(bool host_network) {
  cri::NamespaceOption n;
  n.set_network(host_network ? cri::NODE : cri::POD);
  n.set_pid(cri::CONTAINER);
  n.set_ipc(cri::POD);
  return n;
}

cri::PodSandboxConfig BuildPodConfig(const PodFlags& f) {
  cri::PodSandboxConfig c;
  cri::PodSandboxMetadata* md = c.mutable_metadata();
  md->set_name(f.name);
  md->set_uid(f.uid);
  md->set_namespace_(f.ns);
  md->set_attempt(f.attempt);
  // As the kubelet: a host-network pod keeps the node's hostname (runc refuses to set one
  // without a private UTS namespace, which such a pod does not get).
  if (!f.host_network) c.set_hostname(f.name);
  c.set_log_directory(f.log_dir);
  PutKeyValues(f.labels, c.mutable_labels());
  PutKeyValues(f.annotations, c.mutable_annotations());
  cri::LinuxPodSandboxConfig* lx = c.mutable_linux();
  lx->set_cgroup_parent(f.cgroup_parent);
  lx->mutable_security_context()->set_privileged(f.privileged);
  *lx->mutable_security_context()->mutable_namespace_options() = PodNamespaces(f.host_network);
  return c;
}

struct ContainerFlags {
  std::string pod_id, name, image, workdir, log_path;
  uint32_t attempt = 0;
  std::vector<std::string> command, args, envs, labels, annotations, cdi_devices;
  bool privileged = false;
  PodFlags pod;
};

cri::CreateContainerRequest BuildCreateContainer(const ContainerFlags& f) {
  cri::CreateContainerRequest req;
  req.set_pod_sandbox_id(f.pod_id);
  cri::ContainerConfig* c = req.mutable_config();
  c->mutable_metadata()->set_name(f.name);
  c->mutable_metadata()->set_attempt(f.attempt);
  c->mutable_image()->set_image(f.image);
  for (const std::string& a : f.command) c->add_command(a);
  for (const std::string& a : f.args) c->add_args(a);
  c->set_working_dir(f.workdir);
  for (const std::string& kv : f.envs) {
    cri::KeyValue* e = c->add_envs();
    auto eq = kv.find('=');
    e->set_key(kv.substr(0, eq));
    e->set_value(kv.substr(eq + 1));
  }
  PutKeyValues(f.labels, c->mutable_labels());
  PutKeyValues(f.annotations, c->mutable_annotations());
  c->set_log_path(f.log_path);
  for (const std::string& d : f.cdi_devices) c->add_cdi_devices()->set_name(d);
  cri::LinuxContainerSecurityContext* sc = c->mutable_linux()->mutable_security_context();
  sc->set_privileged(f.privileged);
  *sc->mutable_namespace_options() = PodNamespaces(f.pod.host_network);
  *req.mutable_sandbox_config() = BuildPodConfig(f.pod);
  return req;
}

// ---- reading responses ----

// containerd's verbose info["info"] as JSON (the text itself if it is not JSON); null if absent.
json ParseInfo(const google::protobuf::Map<std::string, std::string>& info) {
  auto it = info.find("info");
  if (it == info.end()) return nullptr;
  json j = json::parse(it->second, nullptr, false);
  return j.is_discarded() ? json(it->second) : j;
}

// The sandbox's network namespace: the path of the network namespace in its OCI runtime spec
// (info.runtimeSpec, containerd 1.7 and 2.x); "" for none (a host-network pod).
std::string NetnsPath(const json& info) {
  const json* cur = &info;
  for (const char* key : {"runtimeSpec", "linux", "namespaces"}) {
    if (!cur->is_object() || !cur->contains(key)) return "";
    cur = &(*cur)[key];
  }
  if (!cur->is_array()) return "";
  for (const json& ns : *cur) {
    if (ns.is_object() && ns.value("type", "") == "network") return ns.value("path", "");
  }
  return "";
}

// ---- subcommands ----

int RunVersion(Client& c) {
  cri::VersionRequest req;
  req.set_version("0.1.0");  // what the kubelet sends
  cri::VersionResponse resp;
  if (int rc = c.Call("Version", &RuntimeStub::Version, req, &resp)) return rc;
  return Print({{"runtimeName", resp.runtime_name()},
                {"runtimeVersion", resp.runtime_version()},
                {"runtimeApiVersion", resp.runtime_api_version()},
                {"version", resp.version()}});
}

int RunPod(Client& c, const PodFlags& f, const std::string& handler) {
  cri::RunPodSandboxRequest req;
  *req.mutable_config() = BuildPodConfig(f);
  req.set_runtime_handler(handler);
  cri::RunPodSandboxResponse resp;
  if (int rc = c.Call("RunPodSandbox", &RuntimeStub::RunPodSandbox, req, &resp)) return rc;
  return Print({{"id", resp.pod_sandbox_id()}});
}

int RunPodStatus(Client& c, const std::string& id) {
  cri::PodSandboxStatusRequest req;
  req.set_pod_sandbox_id(id);
  req.set_verbose(true);
  cri::PodSandboxStatusResponse resp;
  if (int rc = c.Call("PodSandboxStatus", &RuntimeStub::PodSandboxStatus, req, &resp)) return rc;
  const cri::PodSandboxStatus& s = resp.status();
  json info = ParseInfo(resp.info());
  return Print({{"id", s.id()},
                {"state", cri::PodSandboxState_Name(s.state())},
                {"uid", s.metadata().uid()},
                {"namespace", s.metadata().namespace_()},
                {"name", s.metadata().name()},
                {"ip", s.network().ip()},
                {"netns", NetnsPath(info)},
                {"info", info}});
}

int RunListPods(Client& c, const std::vector<std::string>& labels) {
  cri::ListPodSandboxRequest req;
  if (!labels.empty()) PutKeyValues(labels, req.mutable_filter()->mutable_label_selector());
  cri::ListPodSandboxResponse resp;
  if (int rc = c.Call("ListPodSandbox", &RuntimeStub::ListPodSandbox, req, &resp)) return rc;
  json out = json::array();
  for (const cri::PodSandbox& p : resp.items()) {
    out.push_back({{"id", p.id()},
                   {"state", cri::PodSandboxState_Name(p.state())},
                   {"uid", p.metadata().uid()},
                   {"namespace", p.metadata().namespace_()},
                   {"name", p.metadata().name()},
                   {"createdAt", p.created_at()}});
  }
  return Print(out);
}

int RunCreateContainer(Client& c, const ContainerFlags& f) {
  cri::CreateContainerRequest req = BuildCreateContainer(f);
  cri::CreateContainerResponse resp;
  if (int rc = c.Call("CreateContainer", &RuntimeStub::CreateContainer, req, &resp)) return rc;
  return Print({{"id", resp.container_id()}});
}

int RunStopContainer(Client& c, const std::string& id, int64_t grace) {
  cri::StopContainerRequest req;
  req.set_container_id(id);
  req.set_timeout(grace);
  cri::StopContainerResponse resp;
  // The runtime answers only after the grace period: the deadline must cover it.
  if (int rc = c.Call("StopContainer", &RuntimeStub::StopContainer, req, &resp,
                      std::chrono::seconds(grace)))
    return rc;
  return Print(json::object());
}

int RunContainerStatus(Client& c, const std::string& id, bool verbose) {
  cri::ContainerStatusRequest req;
  req.set_container_id(id);
  req.set_verbose(verbose);
  cri::ContainerStatusResponse resp;
  if (int rc = c.Call("ContainerStatus", &RuntimeStub::ContainerStatus, req, &resp)) return rc;
  const cri::ContainerStatus& s = resp.status();
  return Print({{"id", s.id()},
                {"name", s.metadata().name()},
                {"state", cri::ContainerState_Name(s.state())},
                {"exitCode", s.exit_code()},
                {"reason", s.reason()},
                {"message", s.message()},
                {"createdAt", s.created_at()},
                {"startedAt", s.started_at()},
                {"finishedAt", s.finished_at()},
                {"info", ParseInfo(resp.info())}});
}

int RunListContainers(Client& c, const std::string& pod_id) {
  cri::ListContainersRequest req;
  if (!pod_id.empty()) req.mutable_filter()->set_pod_sandbox_id(pod_id);
  cri::ListContainersResponse resp;
  if (int rc = c.Call("ListContainers", &RuntimeStub::ListContainers, req, &resp)) return rc;
  json out = json::array();
  for (const cri::Container& k : resp.containers()) {
    out.push_back({{"id", k.id()},
                   {"podSandboxId", k.pod_sandbox_id()},
                   {"name", k.metadata().name()},
                   {"state", cri::ContainerState_Name(k.state())},
                   {"createdAt", k.created_at()}});
  }
  return Print(out);
}

int RunImageStatus(Client& c, const std::string& image) {
  cri::ImageStatusRequest req;
  req.mutable_image()->set_image(image);
  cri::ImageStatusResponse resp;
  if (int rc = c.Call("ImageStatus", &ImageStub::ImageStatus, req, &resp)) return rc;
  const cri::Image& im = resp.image();
  std::vector<std::string> tags(im.repo_tags().begin(), im.repo_tags().end());
  return Print({{"image", image},
                {"present", resp.has_image()},
                {"id", im.id()},
                {"repoTags", tags},
                {"size", im.size()}});
}

// ---- the command line ----

// Runs fn(Client&) -> exit code when `cmd` is the chosen subcommand.
template <class Fn>
void OnRun(CLI::App* cmd, const GlobalFlags& g, int& rc, Fn fn) {
  cmd->callback([&g, &rc, fn] {
    Client c(g);
    rc = fn(c);
  });
}

// stop-pod, remove-pod, start-container, remove-container: ID in, {} out.
template <class Req, class Resp>
void AddIdCommand(CLI::App& app, const GlobalFlags& g, int& rc, const char* name, const char* rpc,
                  std::string* (Req::*id_field)(),
                  grpc::Status (RuntimeStub::*method)(grpc::ClientContext*, const Req&, Resp*)) {
  auto id = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand(name, rpc);
  cmd->add_option("ID", *id, "Pod sandbox or container ID")->required();
  OnRun(cmd, g, rc, [id, rpc, id_field, method](Client& c) {
    Req req;
    *(req.*id_field)() = *id;
    Resp resp;
    if (int err = c.Call(rpc, method, req, &resp)) return err;
    return Print(json::object());
  });
}

void AddCommands(CLI::App& app, const GlobalFlags& g, int& rc) {
  OnRun(app.add_subcommand("version", "Runtime name and versions"), g, rc, RunVersion);

  auto pod = std::make_shared<PodFlags>();
  auto handler = std::make_shared<std::string>();
  CLI::App* run_pod = app.add_subcommand("run-pod", "RunPodSandbox; prints the sandbox id");
  AddPodFlags(run_pod, *pod, "");
  run_pod->add_option("--runtime-handler", *handler, "Runtime handler (default: the runtime's)");
  OnRun(run_pod, g, rc, [pod, handler](Client& c) { return RunPod(c, *pod, *handler); });

  auto pod_id = std::make_shared<std::string>();
  CLI::App* pod_status =
      app.add_subcommand("pod-status", "PodSandboxStatus (verbose): state, IP, netns, info");
  pod_status->add_option("ID", *pod_id, "Pod sandbox ID")->required();
  OnRun(pod_status, g, rc, [pod_id](Client& c) { return RunPodStatus(c, *pod_id); });

  auto labels = std::make_shared<std::vector<std::string>>();
  CLI::App* list_pods = app.add_subcommand("list-pods", "ListPodSandbox");
  AddList(list_pods, "--label", *labels, "Only pods with label K=V (repeatable)")->check(kKeyValue);
  OnRun(list_pods, g, rc, [labels](Client& c) { return RunListPods(c, *labels); });

  AddIdCommand(app, g, rc, "stop-pod", "StopPodSandbox",
               &cri::StopPodSandboxRequest::mutable_pod_sandbox_id, &RuntimeStub::StopPodSandbox);
  AddIdCommand(app, g, rc, "remove-pod", "RemovePodSandbox",
               &cri::RemovePodSandboxRequest::mutable_pod_sandbox_id,
               &RuntimeStub::RemovePodSandbox);

  auto ctr = std::make_shared<ContainerFlags>();
  CLI::App* create = app.add_subcommand("create-container", "CreateContainer; prints its id");
  create->add_option("POD_ID", ctr->pod_id, "Pod sandbox ID")->required();
  create->add_option("--name", ctr->name, "Container name")->required();
  create->add_option("--image", ctr->image, "Image (present in the runtime)")->required();
  create->add_option("--attempt", ctr->attempt, "Container attempt")->capture_default_str();
  AddList(create, "--command", ctr->command, "Entrypoint argv, one ARG per use");
  AddList(create, "--arg", ctr->args, "Arguments after the entrypoint, one per use");
  create->add_option("--workdir", ctr->workdir, "Working directory");
  AddList(create, "--env", ctr->envs, "Environment K=V (repeatable)")->check(kKeyValue);
  AddList(create, "--label", ctr->labels, "Container label K=V (repeatable)")->check(kKeyValue);
  AddList(create, "--annotation", ctr->annotations, "Container annotation K=V (repeatable)")
      ->check(kKeyValue);
  AddList(create, "--cdi-device", ctr->cdi_devices, "CDI device vendor/class=name (repeatable)");
  create->add_option("--log-path", ctr->log_path, "Log path, relative to the pod's log dir");
  create->add_flag("--privileged", ctr->privileged, "Privileged container");
  AddPodFlags(create, ctr->pod, "pod-");
  OnRun(create, g, rc, [ctr](Client& c) { return RunCreateContainer(c, *ctr); });

  AddIdCommand(app, g, rc, "start-container", "StartContainer",
               &cri::StartContainerRequest::mutable_container_id, &RuntimeStub::StartContainer);

  auto stop_id = std::make_shared<std::string>();
  auto grace = std::make_shared<int64_t>(10);
  CLI::App* stop = app.add_subcommand("stop-container", "StopContainer");
  stop->add_option("ID", *stop_id, "Container ID")->required();
  stop->add_option("--grace", *grace, "Seconds between SIGTERM and SIGKILL")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  OnRun(stop, g, rc, [stop_id, grace](Client& c) { return RunStopContainer(c, *stop_id, *grace); });

  AddIdCommand(app, g, rc, "remove-container", "RemoveContainer",
               &cri::RemoveContainerRequest::mutable_container_id, &RuntimeStub::RemoveContainer);

  auto ctr_id = std::make_shared<std::string>();
  auto verbose = std::make_shared<bool>(false);
  CLI::App* ctr_status = app.add_subcommand("container-status", "ContainerStatus");
  ctr_status->add_option("ID", *ctr_id, "Container ID")->required();
  ctr_status->add_flag("--verbose", *verbose, "Ask for the runtime's info (containerd: its spec)");
  OnRun(ctr_status, g, rc,
        [ctr_id, verbose](Client& c) { return RunContainerStatus(c, *ctr_id, *verbose); });

  auto filter_pod = std::make_shared<std::string>();
  CLI::App* list_ctrs = app.add_subcommand("list-containers", "ListContainers");
  list_ctrs->add_option("--pod", *filter_pod, "Only this pod sandbox's containers");
  OnRun(list_ctrs, g, rc, [filter_pod](Client& c) { return RunListContainers(c, *filter_pod); });

  auto image = std::make_shared<std::string>();
  CLI::App* image_status = app.add_subcommand("image-status", "ImageStatus: is IMAGE present");
  image_status->add_option("IMAGE", *image, "Image reference")->required();
  OnRun(image_status, g, rc, [image](Client& c) { return RunImageStatus(c, *image); });
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"knd-cri: CRI runtime.v1 client (the kubelet's runtime-client role)"};
  app.require_subcommand(1);
  app.fallthrough();  // global flags may also follow the subcommand
  GlobalFlags g;
  app.add_option("--endpoint", g.endpoint, "Runtime's CRI unix socket path")->capture_default_str();
  app.add_option("--timeout", g.timeout_s, "Deadline of each call, in seconds")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  int rc = 0;
  AddCommands(app, g, rc);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  return rc;
}
