#include "nri/plugin.h"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <set>

#include "common/metrics.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "nri/mux.h"
#include "nri/ttrpc.h"

namespace knd::nri {
namespace {

constexpr char kPluginService[] = "nri.pkg.api.v1alpha1.Plugin";
constexpr char kRuntimeService[] = "nri.pkg.api.v1alpha1.Runtime";

absl::StatusOr<UniqueFd> Dial(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoStatus("socket(AF_UNIX)");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError("NRI socket path too long: " + path);
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return ErrnoStatus("connect " + path);
  }
  return fd;
}

// Which socket file this is: inode and change time (a re-created socket may get the same
// inode number, never the same change time).
std::string SocketId(const struct stat& st) {
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" +
         std::to_string(st.st_ctim.tv_sec) + "." + std::to_string(st.st_ctim.tv_nsec);
}

bool ValidIndex(const std::string& idx) {
  return idx.size() == 2 && std::isdigit(static_cast<unsigned char>(idx[0])) &&
         std::isdigit(static_cast<unsigned char>(idx[1]));
}

bool ValidName(const std::string& name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '+' &&
        c != '-') {
      return false;
    }
  }
  return true;
}

}  // namespace

// One connection to the runtime. Member order matters for teardown; see ~Session.
class Plugin::Session {
 public:
  Session(Plugin* p, UniqueFd fd) : plugin_(p), mux_(std::make_unique<Mux>(std::move(fd))) {
    server_ = std::make_unique<ttrpc::Server>(mux_->Open(kPluginServiceConn));
    client_ = std::make_unique<ttrpc::Client>(mux_->Open(kRuntimeServiceConn));
    mux_->Attach(kPluginServiceConn, server_.get());
    mux_->Attach(kRuntimeServiceConn, client_.get());
    RegisterMethods();
  }

  ~Session() {
    mux_->Close();
    server_->Shutdown();  // waits for a running handler
    mux_.reset();         // joins the reader, which may still be calling into server/client
    client_.reset();
    server_.reset();
  }

  void Start() { mux_->Start(); }
  void Close() { mux_->Close(); }
  bool Wait(absl::Duration d) { return mux_->Wait(d); }

  absl::Status Register() {
    api::RegisterPluginRequest req;
    req.set_plugin_name(plugin_->opts_.name);
    req.set_plugin_idx(plugin_->opts_.index);
    req.set_nri_version("v0.12.0");
    return client_
        ->CallTyped<api::Empty>(kRuntimeService, "RegisterPlugin", req,
                                plugin_->opts_.register_timeout)
        .status();
  }

 private:
  // Runs a handler call, warning when it is slow enough to risk the runtime's timeout.
  template <typename F>
  auto Timed(const char* what, const std::string& pod, F&& fn) {
    absl::Time start = absl::Now();
    auto result = fn();
    absl::Duration took = absl::Now() - start;
    static auto& hist = metrics::Default().Histogram(
        "knd_nri_hook_duration_seconds", "Time spent in an NRI hook, by event and outcome.",
        {"event", "outcome"});
    hist.Observe({what, result.ok() ? "success" : "error"}, absl::ToDoubleSeconds(took));
    if (took > plugin_->opts_.slow_handler) {
      spdlog::warn("NRI {} for pod {} took {} (runtimes drop plugins after ~2s)", what, pod,
                   absl::FormatDuration(took));
    }
    return result;
  }

  static std::string PodName(const api::PodSandbox& pod) {
    return pod.namespace_() + "/" + pod.name() + " (uid " + pod.uid() + ")";
  }

  absl::Status PodEvent(api::Event ev, const api::PodSandbox& pod) {
    Handler& h = plugin_->handler_;
    switch (ev) {
      case api::RUN_POD_SANDBOX:
        return Timed("RunPodSandbox", PodName(pod), [&] { return h.RunPodSandbox(pod); });
      case api::STOP_POD_SANDBOX:
        return Timed("StopPodSandbox", PodName(pod), [&] { return h.StopPodSandbox(pod); });
      case api::REMOVE_POD_SANDBOX:
        return Timed("RemovePodSandbox", PodName(pod), [&] { return h.RemovePodSandbox(pod); });
      default:
        return absl::OkStatus();  // not subscribed; nothing to do
    }
  }

  void RegisterMethods() {
    ttrpc::Server& s = *server_;
    Handler& h = plugin_->handler_;
    s.RegisterTyped<api::ConfigureRequest, api::ConfigureResponse>(
        kPluginService, "Configure",
        [this, &h](const api::ConfigureRequest& req) -> absl::StatusOr<api::ConfigureResponse> {
          spdlog::info("NRI: configured by runtime {} {} (NRI {}, request timeout {} ms)",
                       req.runtime_name(), req.runtime_version(), req.nri_version(),
                       req.request_timeout());
          {
            std::lock_guard<std::mutex> lock(plugin_->mu_);
            plugin_->runtime_ = {req.runtime_name(), req.runtime_version(), req.nri_version(),
                                 std::chrono::milliseconds(req.request_timeout())};
          }
          pods_.clear();
          containers_.clear();
          RETURN_IF_ERROR(h.Configure(req.runtime_name(), req.runtime_version(),
                                      std::chrono::milliseconds(req.request_timeout())));
          api::ConfigureResponse resp;
          resp.set_events(kSubscribedEvents);
          return resp;
        });
    s.RegisterTyped<api::SynchronizeRequest, api::SynchronizeResponse>(
        kPluginService, "Synchronize",
        [this, &h](const api::SynchronizeRequest& req) -> absl::StatusOr<api::SynchronizeResponse> {
          pods_.insert(pods_.end(), req.pods().begin(), req.pods().end());
          containers_.insert(containers_.end(), req.containers().begin(), req.containers().end());
          api::SynchronizeResponse resp;
          if (req.more()) {
            // Split sync: acknowledge each chunk with more=true and no updates.
            resp.set_more(true);
            return resp;
          }
          std::vector<api::PodSandbox> pods = std::move(pods_);
          std::vector<api::Container> containers = std::move(containers_);
          pods_.clear();
          containers_.clear();
          absl::Status st =
              Timed("Synchronize", "(all)", [&] { return h.Synchronize(pods, containers); });
          RETURN_IF_ERROR(st);
          plugin_->SetConnected(true);
          plugin_->sessions_++;
          spdlog::info("NRI: synchronized ({} pods, {} containers)", pods.size(),
                       containers.size());
          return resp;
        });
    s.RegisterTyped<api::Empty, api::Empty>(
        kPluginService, "Shutdown", [](const api::Empty&) -> absl::StatusOr<api::Empty> {
          spdlog::info("NRI: runtime asked the plugin to shut down");
          return api::Empty();
        });
    s.RegisterTyped<api::RunPodSandboxRequest, api::RunPodSandboxResponse>(
        kPluginService, "RunPodSandbox",
        [this](const api::RunPodSandboxRequest& req) -> absl::StatusOr<api::RunPodSandboxResponse> {
          RETURN_IF_ERROR(PodEvent(api::RUN_POD_SANDBOX, req.pod()));
          return api::RunPodSandboxResponse();
        });
    s.RegisterTyped<api::StopPodSandboxRequest, api::StopPodSandboxResponse>(
        kPluginService, "StopPodSandbox",
        [this](
            const api::StopPodSandboxRequest& req) -> absl::StatusOr<api::StopPodSandboxResponse> {
          RETURN_IF_ERROR(PodEvent(api::STOP_POD_SANDBOX, req.pod()));
          return api::StopPodSandboxResponse();
        });
    s.RegisterTyped<api::RemovePodSandboxRequest, api::RemovePodSandboxResponse>(
        kPluginService, "RemovePodSandbox",
        [this](const api::RemovePodSandboxRequest& req)
            -> absl::StatusOr<api::RemovePodSandboxResponse> {
          RETURN_IF_ERROR(PodEvent(api::REMOVE_POD_SANDBOX, req.pod()));
          return api::RemovePodSandboxResponse();
        });
    s.RegisterTyped<api::StateChangeEvent, api::Empty>(
        kPluginService, "StateChange",
        [this](const api::StateChangeEvent& ev) -> absl::StatusOr<api::Empty> {
          RETURN_IF_ERROR(PodEvent(ev.event(), ev.pod()));
          return api::Empty();
        });
    s.RegisterTyped<api::CreateContainerRequest, api::CreateContainerResponse>(
        kPluginService, "CreateContainer",
        [this, &h](const api::CreateContainerRequest& req)
            -> absl::StatusOr<api::CreateContainerResponse> {
          absl::StatusOr<api::ContainerAdjustment> adj =
              Timed("CreateContainer", PodName(req.pod()),
                    [&] { return h.CreateContainer(req.pod(), req.container()); });
          if (!adj.ok()) return adj.status();
          api::CreateContainerResponse resp;
          *resp.mutable_adjust() = std::move(*adj);
          return resp;
        });
  }

  Plugin* plugin_;
  // Split-sync accumulation; touched only by the server's single worker thread.
  std::vector<api::PodSandbox> pods_;
  std::vector<api::Container> containers_;
  std::unique_ptr<Mux> mux_;
  std::unique_ptr<ttrpc::Server> server_;
  std::unique_ptr<ttrpc::Client> client_;
};

Plugin::Plugin(Options opts, Handler& handler)
    : opts_(std::move(opts)),
      handler_(handler),
      wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      down_since_(std::chrono::steady_clock::now()) {}

Plugin::~Plugin() {
  Stop();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void Plugin::SetConnected(bool up) {
  connected_ = up;
  std::lock_guard<std::mutex> l(mu_);
  if (up == !down_) return;
  const auto now = std::chrono::steady_clock::now();
  if (up) {
    down_total_ += now - down_since_;
  } else {
    down_since_ = now;
  }
  down_ = !up;
}

double Plugin::disconnected_seconds() const {
  std::lock_guard<std::mutex> l(mu_);
  auto total = down_total_;
  if (down_) total += std::chrono::steady_clock::now() - down_since_;
  return std::chrono::duration<double>(total).count();
}

Plugin::RuntimeInfo Plugin::runtime() const {
  std::lock_guard<std::mutex> l(mu_);
  return runtime_;
}

absl::Status Plugin::Start() {
  if (!ValidIndex(opts_.index)) {
    return absl::InvalidArgumentError("NRI plugin index \"" + opts_.index +
                                      "\" must be exactly two digits (00-99)");
  }
  if (!ValidName(opts_.name)) {
    return absl::InvalidArgumentError("NRI plugin name \"" + opts_.name +
                                      "\" must be non-empty and use only [a-zA-Z0-9_.+-]");
  }
  if (opts_.socket_path.empty()) return absl::InvalidArgumentError("NRI socket path is empty");
  {
    std::lock_guard<std::mutex> l(mu_);
    if (thread_.joinable()) return absl::FailedPreconditionError("NRI plugin already started");
    stop_ = false;
  }
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

void Plugin::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
    if (current_ != nullptr) current_->Close();
  }
  cv_.notify_all();
  uint64_t one = 1;
  if (wake_fd_ >= 0 && ::write(wake_fd_, &one, sizeof(one)) < 0 && errno != EAGAIN) {
    spdlog::error("NRI: cannot wake the connection thread: errno {}", errno);
  }
  if (thread_.joinable()) thread_.join();
}

bool Plugin::SleepOrStop(absl::Duration d) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stop_) return true;
  }
  const std::filesystem::path sock(opts_.socket_path);
  UniqueFd in(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  // The socket's directory; a runtime that is not installed yet may not have made it, then
  // its parent (a watch on a path that does not exist fails, and the backoff paces us).
  for (std::filesystem::path dir = sock.parent_path(); in.valid() && !dir.empty();
       dir = dir.parent_path()) {
    if (::inotify_add_watch(in.get(), dir.c_str(), IN_CREATE | IN_MOVED_TO) >= 0) break;
    if (dir == dir.parent_path()) break;
  }
  // The socket may have come back before the watch was in place: a socket that is there and
  // is not the one of the last connection (or none was there at the last dial) is dialled now.
  // (The inode alone does not tell: a file system may give the new socket the old number.)
  if (struct stat st; ::stat(opts_.socket_path.c_str(), &st) == 0 &&
                      (socket_missing_ || SocketId(st) != socket_id_)) {
    return false;
  }
  // Names whose creation may mean the socket is there now: the socket and the directories on
  // the way to it (then the next dial fails or not, and the next wait watches deeper).
  std::set<std::string> on_path;
  for (const auto& part : sock) on_path.insert(part.string());
  const auto deadline = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(d);
  char buf[4096] __attribute__((aligned(__alignof__(inotify_event))));
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {in.valid() ? in.get() : -1, POLLIN, 0}};
    int n = ::poll(fds, 2, static_cast<int>(left.count()));
    if (n < 0 && errno != EINTR) break;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stop_) return true;
    }
    if (n <= 0 || fds[1].revents == 0) continue;
    bool appeared = false;
    for (ssize_t r; (r = ::read(in.get(), buf, sizeof(buf))) > 0;) {
      for (char* p = buf; p < buf + r;) {
        const auto* ev = reinterpret_cast<const inotify_event*>(p);
        const std::string name = ev->len > 0 ? ev->name : "";
        // The socket itself, or a directory on the way to it (then dial: it may be complete).
        appeared = appeared || (!name.empty() && on_path.count(name) > 0);
        p += sizeof(inotify_event) + ev->len;
      }
    }
    if (appeared) {
      spdlog::info("NRI: {} appeared; connecting", opts_.socket_path);
      break;
    }
  }
  std::lock_guard<std::mutex> l(mu_);
  return stop_;
}

void Plugin::Run() {
  absl::Duration backoff = opts_.backoff_min;
  for (;;) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stop_) return;
    }
    if (RunSession()) backoff = opts_.backoff_min;
    SetConnected(false);
    if (SleepOrStop(backoff)) return;
    backoff = std::min(backoff * 2, opts_.backoff_max);
  }
}

bool Plugin::RunSession() {
  absl::StatusOr<UniqueFd> fd = Dial(opts_.socket_path);
  socket_missing_ = absl::IsNotFound(fd.status());
  if (struct stat st; fd.ok() && ::stat(opts_.socket_path.c_str(), &st) == 0) {
    socket_id_ = SocketId(st);
  }
  if (!fd.ok()) {
    spdlog::debug("NRI: cannot connect: {}", fd.status().ToString());
    return false;
  }
  auto session = std::make_unique<Session>(this, std::move(*fd));
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stop_) return false;
    current_ = session.get();
  }
  session->Start();
  bool registered = false;
  absl::Status st = session->Register();
  if (!st.ok()) {
    spdlog::warn("NRI: RegisterPlugin failed: {}", st.ToString());
  } else {
    registered = true;
    spdlog::info("NRI: registered as {}-{} on {}", opts_.index, opts_.name, opts_.socket_path);
    while (!session->Wait(absl::Seconds(1))) {
    }
    spdlog::warn("NRI: connection to the runtime closed; reconnecting");
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    current_ = nullptr;
  }
  SetConnected(false);
  session.reset();
  return registered;
}

}  // namespace knd::nri
