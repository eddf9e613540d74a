#include "cdi_hooks.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"

namespace knd::localcp {
namespace {

using nlohmann::json;

// The createRuntime hooks for `id` ("vendor/class=name") from the specs in `dir`.
absl::StatusOr<std::vector<json>> HooksOf(const std::string& dir, const std::string& id) {
  const size_t eq = id.find('=');
  if (eq == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("CDI device \"", id, "\": not qualified"));
  }
  const std::string kind = id.substr(0, eq), name = id.substr(eq + 1);
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return ErrnoStatus("opendir " + dir);
  std::vector<std::string> files;
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n.size() > 5 && n.compare(n.size() - 5, 5, ".json") == 0) files.push_back(dir + "/" + n);
  }
  ::closedir(d);
  for (const std::string& f : files) {
    auto text = ReadFile(f);
    if (!text.ok()) continue;
    json spec = json::parse(*text, nullptr, false);
    if (!spec.is_object() || spec.value("kind", "") != kind) continue;
    for (const json& dev : spec.value("devices", json::array())) {
      if (dev.value("name", "") != name) continue;
      std::vector<json> hooks;
      for (const json* edits : std::initializer_list<const json*>{&spec, &dev}) {
        const json ce = edits->value("containerEdits", json::object());
        for (const json& h : ce.value("hooks", json::array())) {
          if (h.value("hookName", "") == "createRuntime") hooks.push_back(h);
        }
      }
      return hooks;
    }
  }
  return absl::NotFoundError(absl::StrCat("unresolvable CDI device \"", id, "\" in ", dir));
}

absl::Status RunHook(const json& hook, const std::string& state) {
  const std::string path = hook.value("path", "");
  char tmpl[] = "/tmp/knd-runtime-hook-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return ErrnoStatus("mkdtemp");
  const std::string dir = tmpl, in = dir + "/state.json", err = dir + "/stderr";
  RETURN_IF_ERROR(WriteFileAtomic(in, state));
  std::vector<std::string> args;
  for (const json& a : hook.value("args", json::array())) args.push_back(a.get<std::string>());
  if (args.empty()) args.push_back(path);
  std::vector<std::string> env;
  for (const json& e : hook.value("env", json::array())) env.push_back(e.get<std::string>());
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, in.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, path.c_str(), &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  absl::Status result;
  if (rc != 0) {
    result = ErrnoToStatus(rc, "exec createRuntime hook " + path);
  } else {
    const auto until =
        std::chrono::steady_clock::now() + std::chrono::seconds(hook.value("timeout", 10));
    int status = 0;
    while (::waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() >= until) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      auto text = ReadFile(err);
      result = absl::FailedPreconditionError(
          absl::StrCat("createRuntime hook ", path, " failed (",
                       WIFEXITED(status) ? absl::StrCat("exit ", WEXITSTATUS(status)) : "killed",
                       "): ", text.ok() ? *text : ""));
    }
  }
  (void)RemoveFile(in);
  (void)RemoveFile(err);
  ::rmdir(dir.c_str());
  return result;
}

}  // namespace

absl::Status RunCreateRuntimeHooks(const std::string& cdi_dir,
                                   const std::vector<std::string>& device_ids,
                                   const std::string& netns, const std::string& container_id) {
  std::vector<json> hooks;
  for (const std::string& id : device_ids) {
    ASSIGN_OR_RETURN(std::vector<json> h, HooksOf(cdi_dir, id));
    hooks.insert(hooks.end(), h.begin(), h.end());
  }
  if (hooks.empty()) return absl::OkStatus();
  // The "container": a process in the pod's network namespace, as runc's init would be.
  int fd = -1;
  if (!netns.empty()) {
    fd = ::open(netns.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus("open " + netns);
  }
  pid_t holder = ::fork();
  if (holder < 0) {
    if (fd >= 0) ::close(fd);
    return ErrnoStatus("fork");
  }
  if (holder == 0) {
    if (fd >= 0 && ::setns(fd, CLONE_NEWNET) != 0) _exit(1);
    ::pause();
    _exit(0);
  }
  if (fd >= 0) ::close(fd);
  // The holder is in the netns once its link differs from ours (or at once for hostNetwork).
  auto ns_of = [](const std::string& p) {
    char buf[128] = {0};
    ssize_t n = ::readlink(p.c_str(), buf, sizeof(buf) - 1);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  };
  const std::string mine = ns_of("/proc/self/ns/net");
  for (int i = 0;
       i < 1000 && !netns.empty() && ns_of(absl::StrCat("/proc/", holder, "/ns/net")) == mine;
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const std::string state = json{{"ociVersion", "1.0.2"},
                                 {"id", container_id},
                                 {"status", "creating"},
                                 {"pid", holder},
                                 {"bundle", "/run/knd-runtime/" + container_id}}
                                .dump();
  absl::Status st;
  for (const json& h : hooks) {
    st = RunHook(h, state);
    if (!st.ok()) break;
  }
  ::kill(holder, SIGKILL);
  ::waitpid(holder, nullptr, 0);
  return st;
}

}  // namespace knd::localcp
