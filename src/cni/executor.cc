#include "cni/executor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status.h"
#include "common/text.h"
#include "common/unique_fd.h"

extern char** environ;

namespace knd::cni {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

std::string Q(const std::string& s) { return absl::StrCat("\"", s, "\""); }

// The CNI result cache entry's "kind" (libcni's format, which knd writes too).
constexpr char kCacheKind[] = "cniCacheV1";

std::string TypeOf(const json& plugin) {
  auto it = plugin.find("type");
  return it != plugin.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// Blocks SIGPIPE in this thread while a plugin runs: writing its stdin after it exited must
// be an EPIPE, not a signal that kills knd. A SIGPIPE left pending is consumed before the
// mask is restored.
class SigpipeBlock {
 public:
  SigpipeBlock() {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &s, &old_);
  }
  ~SigpipeBlock() {
    sigset_t pending;
    sigpending(&pending);
    if (sigismember(&pending, SIGPIPE) == 1 && sigismember(&old_, SIGPIPE) != 1) {
      sigset_t s;
      sigemptyset(&s);
      sigaddset(&s, SIGPIPE);
      timespec zero{0, 0};
      while (sigtimedwait(&s, nullptr, &zero) == SIGPIPE) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeBlock(const SigpipeBlock&) = delete;
  SigpipeBlock& operator=(const SigpipeBlock&) = delete;

 private:
  sigset_t old_;
};

absl::StatusCode CodeFor(int64_t cni_code) {
  switch (cni_code) {
    case 1:  // incompatible CNI version
    case 2:  // unsupported field
    case 4:  // invalid environment variables
    case 6:  // decoding failure
    case 7:  // invalid network config
      return absl::StatusCode::kInvalidArgument;
    case 3:  // container unknown or does not exist
      return absl::StatusCode::kNotFound;
    case 11:  // try again later
      return absl::StatusCode::kUnavailable;
    default:
      return absl::StatusCode::kUnknown;
  }
}

std::string SafeFilePart(const std::string& s) {
  std::string out = s;
  for (char& c : out) {
    if (c == '/' || c == '\0') c = '_';
  }
  return out;
}

std::string_view Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return {};
  size_t e = s.find_last_not_of(" \t\r\n");
  return std::string_view(s).substr(b, e - b + 1);
}

bool PathExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 || errno != ENOENT;
}

}  // namespace

std::string AttachmentContainerId(const std::string& pod_uid, const std::string& claim_uid,
                                  const std::string& request) {
  return absl::StrCat("knd-", pod_uid, "-", claim_uid, "-", request);
}

std::string IpamContainerId(const std::string& claim_uid, const std::string& device) {
  return absl::StrCat("knd-", claim_uid, "-", device);
}

Executor::Executor(ExecutorOptions opts) : opts_(std::move(opts)) {}

absl::StatusOr<std::string> Executor::FindPlugin(const std::string& type) const {
  if (auto why = InvalidPluginType(type)) {
    return absl::InvalidArgumentError(absl::StrCat("CNI plugin type: ", *why));
  }
  for (const std::string& dir : opts_.bin_dirs) {
    if (dir.empty()) continue;
    std::string path = absl::StrCat(dir, dir.back() == '/' ? "" : "/", type);
    struct stat st;
    if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(path.c_str(), X_OK) == 0) {
      return path;
    }
  }
  return absl::NotFoundError(
      absl::StrCat("CNI plugin ", Q(type), " not found in ", absl::StrJoin(opts_.bin_dirs, ":")));
}

absl::StatusOr<ExecResult> Executor::Run(
    const std::string& path, const std::vector<std::pair<std::string, std::string>>& env,
    const std::string& stdin_data, Clock::time_point deadline) const {
  const Clock::time_point start = Clock::now();
  // The per-call timeout, or less when the caller's deadline comes sooner.
  bool by_caller = false;
  Clock::time_point until = start + opts_.timeout;
  if (deadline != Clock::time_point{} && deadline < until) {
    until = deadline;
    by_caller = true;
  }
  auto budget_text = [&] {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(until - start).count();
    return absl::StrCat(std::max<int64_t>(ms, 0),
                        by_caller ? " ms (the caller's deadline)" : " ms");
  };
  if (until <= start) {
    return absl::DeadlineExceededError(
        absl::StrCat(path, " not started: the caller's deadline has passed"));
  }
  // Everything the child needs is built before it exists.
  std::vector<std::string> env_strs;
  env_strs.reserve(env.size());
  for (const auto& [k, v] : env) env_strs.push_back(absl::StrCat(k, "=", v));
  std::vector<char*> envp;
  for (auto& s : env_strs) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string arg0 = path;
  char* argv[] = {arg0.data(), nullptr};

  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0) return ErrnoStatus("pipe");
  UniqueFd in_r(in[0]), in_w(in[1]);
  if (::pipe2(out, O_CLOEXEC) != 0) return ErrnoStatus("pipe");
  UniqueFd out_r(out[0]), out_w(out[1]);
  if (::pipe2(err, O_CLOEXEC) != 0) return ErrnoStatus("pipe");
  UniqueFd err_r(err[0]), err_w(err[1]);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in_r.get(), 0);
  posix_spawn_file_actions_adddup2(&fa, out_w.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, err_w.get(), 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Own process group (a timeout kills whatever the plugin started too), no blocked signals
  // (knd blocks SIGTERM/SIGINT in every thread) and default dispositions.
  sigset_t none, defaults;
  sigemptyset(&none);
  sigfillset(&defaults);
  sigdelset(&defaults, SIGKILL);
  sigdelset(&defaults, SIGSTOP);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  SigpipeBlock no_sigpipe;
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, path.c_str(), &fa, &attr, argv, envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return ErrnoToStatus(rc, absl::StrCat("exec ", path));
  in_r.Reset();
  out_w.Reset();
  err_w.Reset();
  for (int fd : {in_w.get(), out_r.get(), err_r.get()}) {
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  }

  auto remaining_ms = [&] {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
    return left.count() < 0 ? 0 : static_cast<int>(left.count());
  };
  ExecResult res;
  size_t written = 0;
  if (stdin_data.empty()) in_w.Reset();
  bool timed_out = false;
  while (out_r.valid() || err_r.valid()) {
    pollfd fds[3];
    int n = 0;
    int i_in = -1, i_out = -1, i_err = -1;
    if (in_w.valid()) fds[i_in = n++] = {in_w.get(), POLLOUT, 0};
    if (out_r.valid()) fds[i_out = n++] = {out_r.get(), POLLIN, 0};
    if (err_r.valid()) fds[i_err = n++] = {err_r.get(), POLLIN, 0};
    int left = remaining_ms();
    if (left == 0) {
      timed_out = true;
      break;
    }
    int pr = ::poll(fds, static_cast<nfds_t>(n), left);
    if (pr < 0) {
      if (errno == EINTR) continue;
      absl::Status st = ErrnoStatus("poll");
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      return st;
    }
    if (i_in >= 0 && fds[i_in].revents != 0) {
      ssize_t w = ::write(in_w.get(), stdin_data.data() + written, stdin_data.size() - written);
      if (w > 0) written += static_cast<size_t>(w);
      if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == stdin_data.size()) {
        in_w.Reset();  // done, or the plugin stopped reading (EPIPE)
      }
    }
    auto drain = [](UniqueFd& fd, std::string& into) {
      char buf[16384];
      for (;;) {
        ssize_t r = ::read(fd.get(), buf, sizeof(buf));
        if (r > 0) {
          into.append(buf, static_cast<size_t>(r));
          continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
        fd.Reset();  // EOF or error
        return;
      }
    };
    if (i_out >= 0 && fds[i_out].revents != 0) drain(out_r, res.out);
    if (i_err >= 0 && fds[i_err].revents != 0) drain(err_r, res.err);
  }
  in_w.Reset();
  int status = 0;
  for (;;) {
    if (timed_out) {
      ::kill(-pid, SIGKILL);
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return absl::DeadlineExceededError(
          absl::StrCat(path, " did not finish within ", budget_text(), " (killed)"));
    }
    pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) return ErrnoStatus(absl::StrCat("waitpid ", path));
    if (remaining_ms() == 0) {
      timed_out = true;
      continue;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (WIFEXITED(status)) {
    res.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    res.exit_code = 128 + WTERMSIG(status);
  }
  return res;
}

absl::StatusOr<json> Executor::Invoke(const std::string& command, const json& plugin,
                                      const RuntimeConf& rt, const std::string& netns,
                                      const json& stdin_json, bool want_result) {
  const std::string type = TypeOf(plugin);
  const std::string what = absl::StrCat("CNI plugin ", Q(type), " ", command, " (network ",
                                        Q(JsonString(stdin_json, "name")), ", container ",
                                        rt.container_id, ", ifname ", rt.ifname, ")");
  absl::StatusOr<std::string> path = FindPlugin(type);
  if (!path.ok()) return Annotate(path.status(), what);
  std::vector<std::pair<std::string, std::string>> env = {
      {"CNI_COMMAND", command},
      {"CNI_CONTAINERID", rt.container_id},
      {"CNI_NETNS", netns},
      {"CNI_IFNAME", rt.ifname},
      {"CNI_PATH", absl::StrJoin(opts_.bin_dirs, ":")},
  };
  if (!rt.args.empty()) {
    std::vector<std::string> kv;
    for (const auto& [k, v] : rt.args) kv.push_back(absl::StrCat(k, "=", v));
    env.emplace_back("CNI_ARGS", absl::StrJoin(kv, ";"));
  }
  const char* sys_path = std::getenv("PATH");
  env.emplace_back("PATH", sys_path != nullptr && *sys_path != '\0'
                               ? sys_path
                               : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  absl::StatusOr<ExecResult> run = Run(*path, env, DumpJson(stdin_json), rt.deadline);
  if (!run.ok()) return Annotate(run.status(), what);
  std::string_view out_text = Trim(run->out);
  json out =
      out_text.empty() ? json() : json::parse(out_text.begin(), out_text.end(), nullptr, false);
  if (run->exit_code != 0) {
    if (out.is_object() && (out.contains("code") || out.contains("msg"))) {
      int64_t code =
          out.contains("code") && out["code"].is_number_integer() ? out["code"].get<int64_t>() : 0;
      return absl::Status(CodeFor(code), absl::StrCat(what, ": ", FormatError(out)));
    }
    std::string_view err_text = Trim(run->err);
    if (err_text.empty()) err_text = out_text;
    return absl::UnknownError(absl::StrCat(what, ": exit code ", run->exit_code,
                                           err_text.empty() ? "" : ": ",
                                           std::string(err_text.substr(0, 2048))));
  }
  if (!want_result) return json();
  if (!out.is_object()) {
    return absl::UnknownError(
        absl::StrCat(what, ": the plugin succeeded but printed no JSON result object",
                     out_text.empty() ? "" : ": ", std::string(out_text.substr(0, 512))));
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> Executor::Versions(const std::string& type) {
  json plugin = {{"type", type}};
  RuntimeConf none;
  // VERSION needs no container; the plugin still wants valid JSON with a cniVersion on stdin.
  ASSIGN_OR_RETURN(json out, Invoke("VERSION", plugin, none, "",
                                    json{{"cniVersion", SupportedVersions().front()}}, true));
  std::vector<std::string> versions;
  if (auto it = out.find("supportedVersions"); it != out.end() && it->is_array()) {
    for (const json& v : *it) {
      if (v.is_string()) versions.push_back(v.get<std::string>());
    }
  }
  if (versions.empty()) {
    return absl::UnknownError(
        absl::StrCat("CNI plugin ", Q(type), " VERSION: no supportedVersions in ", DumpJson(out)));
  }
  return versions;
}

absl::StatusOr<std::string> Executor::Version(const json& list) {
  const bool fixed = !list.contains("cniVersions") && list.contains("cniVersion");
  std::vector<std::vector<std::string>> pv(list["plugins"].size());
  if (!fixed) {
    // Negotiate: ask each plugin what it speaks (a few ms per plugin, only for lists that
    // leave the version open).
    for (size_t i = 0; i < pv.size(); ++i) {
      ASSIGN_OR_RETURN(pv[i], Versions(TypeOf(list["plugins"][i])));
    }
  }
  return PickVersion(list, pv);
}

std::string Executor::CachePath(const std::string& network_name, const RuntimeConf& rt) const {
  return absl::StrCat(opts_.cache_dir, "/results/", SafeFilePart(network_name), "-",
                      SafeFilePart(rt.container_id), "-", SafeFilePart(rt.ifname), ".json");
}

absl::Status Executor::WriteCache(const std::string& network_name, const RuntimeConf& rt,
                                  const json& conflist, const json& result) const {
  if (opts_.cache_dir.empty()) return absl::OkStatus();
  json entry = {{"kind", kCacheKind},  {"containerId", rt.container_id},
                {"ifName", rt.ifname}, {"networkName", network_name},
                {"config", conflist},  {"result", result}};
  return Annotate(WriteFileAtomic(CachePath(network_name, rt), DumpJson(entry), 0600),
                  "caching the CNI result");
}

absl::StatusOr<json> Executor::CachedResult(const std::string& network_name,
                                            const RuntimeConf& rt) const {
  if (opts_.cache_dir.empty()) return absl::NotFoundError("no CNI cache dir");
  const std::string path = CachePath(network_name, rt);
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  json entry = json::parse(text, nullptr, false);
  // libcni's format, versioned by its "kind": another kind is not guessed at.
  if (entry.is_object() && entry.contains("kind") && entry["kind"] != kCacheKind) {
    return absl::FailedPreconditionError(absl::StrCat("CNI cache ", path, ": unsupported kind ",
                                                      DumpJson(entry["kind"]), " (this knd reads ",
                                                      Q(kCacheKind), ")"));
  }
  if (!entry.is_object() || JsonString(entry, "kind") != kCacheKind || !entry.contains("result") ||
      !entry["result"].is_object()) {
    return absl::DataLossError(absl::StrCat("CNI cache ", path, " is not a valid cache entry"));
  }
  return entry["result"];
}

namespace {
absl::Status CheckRuntime(const RuntimeConf& rt, bool need_netns) {
  if (auto why = InvalidContainerId(rt.container_id)) {
    return absl::InvalidArgumentError(absl::StrCat("CNI runtime config: ", *why));
  }
  if (rt.ifname.empty()) return absl::InvalidArgumentError("CNI runtime config: ifname is empty");
  if (need_netns && rt.netns.empty()) {
    return absl::InvalidArgumentError("CNI runtime config: netns is empty");
  }
  return absl::OkStatus();
}
}  // namespace

absl::StatusOr<json> Executor::Add(const json& conflist, const RuntimeConf& rt) {
  ASSIGN_OR_RETURN(json list, NormalizeConfList(conflist, "CNI network config"));
  RETURN_IF_ERROR(CheckRuntime(rt, /*need_netns=*/true));
  ASSIGN_OR_RETURN(std::string version, Version(list));
  const std::string name = list["name"].get<std::string>();
  json prev;  // null: the first plugin gets no prevResult
  for (size_t i = 0; i < list["plugins"].size(); ++i) {
    json in = PluginStdin(list, i, version, rt.capability_args, prev);
    ASSIGN_OR_RETURN(prev, Invoke("ADD", list["plugins"][i], rt, rt.netns, in, true));
  }
  RETURN_IF_ERROR(WriteCache(name, rt, list, prev));
  return prev;
}

absl::Status Executor::Del(const json& conflist, const RuntimeConf& rt) {
  ASSIGN_OR_RETURN(json list, NormalizeConfList(conflist, "CNI network config"));
  RETURN_IF_ERROR(CheckRuntime(rt, /*need_netns=*/false));
  const std::string name = list["name"].get<std::string>();
  json cached;
  if (auto c = CachedResult(name, rt); c.ok()) {
    cached = *std::move(c);
  } else if (!absl::IsNotFound(c.status())) {
    return c.status();
  }
  ASSIGN_OR_RETURN(std::string version, Version(list));
  // A netns that is gone is no netns at all for DEL (spec: CNI_NETNS is optional for DEL, and
  // plugins then release what lives outside it, e.g. IPAM).
  std::string netns = rt.netns;
  if (!netns.empty() && !PathExists(netns)) netns.clear();
  absl::Status first;
  for (size_t i = list["plugins"].size(); i-- > 0;) {
    json in = PluginStdin(list, i, version, rt.capability_args, cached);
    absl::StatusOr<json> r = Invoke("DEL", list["plugins"][i], rt, netns, in, false);
    if (!r.ok() && first.ok()) first = r.status();
  }
  if (!first.ok()) return first;
  if (!opts_.cache_dir.empty()) RETURN_IF_ERROR(RemoveFile(CachePath(name, rt)));
  return absl::OkStatus();
}

absl::Status Executor::Check(const json& conflist, const RuntimeConf& rt) {
  ASSIGN_OR_RETURN(json list, NormalizeConfList(conflist, "CNI network config"));
  RETURN_IF_ERROR(CheckRuntime(rt, /*need_netns=*/true));
  if (JsonBool(list, "disableCheck", false)) return absl::OkStatus();
  const std::string name = list["name"].get<std::string>();
  ASSIGN_OR_RETURN(json cached, CachedResult(name, rt));
  ASSIGN_OR_RETURN(std::string version, Version(list));
  if (CompareVersions(version, "0.4.0") < 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "network ", Q(name), ": CHECK needs cniVersion 0.4.0 or later, not ", version));
  }
  for (size_t i = 0; i < list["plugins"].size(); ++i) {
    json in = PluginStdin(list, i, version, rt.capability_args, cached);
    RETURN_IF_ERROR(Invoke("CHECK", list["plugins"][i], rt, rt.netns, in, false).status());
  }
  return absl::OkStatus();
}

absl::StatusOr<json> Executor::IpamAdd(const json& ipam, const std::string& network_name,
                                       const RuntimeConf& rt) {
  RETURN_IF_ERROR(CheckRuntime(rt, /*need_netns=*/false));
  if (auto cached = CachedResult(network_name, rt); cached.ok()) return cached;
  json plugin = {{"type", JsonString(ipam, "type")}};
  ASSIGN_OR_RETURN(std::vector<std::string> pv, Versions(TypeOf(plugin)));
  json list = {{"name", network_name}, {"plugins", json::array({plugin})}};
  ASSIGN_OR_RETURN(std::string version, PickVersion(list, {pv}));
  RuntimeConf run = rt;
  // ADD requires CNI_NETNS; before the pod exists knd's own netns stands in for it.
  if (run.netns.empty()) run.netns = "/proc/self/ns/net";
  const json in = IpamStdin(ipam, network_name, version);
  absl::StatusOr<json> r = Invoke("ADD", plugin, run, run.netns, in, true);
  if (!r.ok()) {
    // An allocation left by a crash between ADD and the cache write makes host-local refuse a
    // second ADD for the same id ("duplicate allocation"): release ours and try once more.
    (void)Invoke("DEL", plugin, run, run.netns, in, false);
    r = Invoke("ADD", plugin, run, run.netns, in, true);
    if (!r.ok()) {
      (void)Invoke("DEL", plugin, run, run.netns, in, false);
      return r.status();
    }
  }
  absl::Status cached = WriteCache(network_name, rt, json{{"ipam", ipam}}, *r);
  if (!cached.ok()) {
    (void)Invoke("DEL", plugin, run, run.netns, in, false);
    return cached;
  }
  return r;
}

absl::Status Executor::IpamDel(const json& ipam, const std::string& network_name,
                               const RuntimeConf& rt) {
  RETURN_IF_ERROR(CheckRuntime(rt, /*need_netns=*/false));
  json plugin = {{"type", JsonString(ipam, "type")}};
  ASSIGN_OR_RETURN(std::vector<std::string> pv, Versions(TypeOf(plugin)));
  json list = {{"name", network_name}, {"plugins", json::array({plugin})}};
  ASSIGN_OR_RETURN(std::string version, PickVersion(list, {pv}));
  std::string netns = rt.netns;
  if (!netns.empty() && !PathExists(netns)) netns.clear();
  RETURN_IF_ERROR(
      Invoke("DEL", plugin, rt, netns, IpamStdin(ipam, network_name, version), false).status());
  if (!opts_.cache_dir.empty()) RETURN_IF_ERROR(RemoveFile(CachePath(network_name, rt)));
  return absl::OkStatus();
}

}  // namespace knd::cni
