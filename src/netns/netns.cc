#include "netns/netns.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <filesystem>
#include <random>
#include <thread>

#include "common/file_util.h"
#include "common/status.h"

namespace knd::netns {

absl::StatusOr<Netns> Netns::Open(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus("open netns " + path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return ErrnoStatus("stat netns " + path);
  return Netns(std::move(fd), path, st.st_dev, st.st_ino);
}

absl::StatusOr<Netns> Netns::Current() { return Open("/proc/self/ns/net"); }

bool Netns::SameAs(const Netns& other) const { return dev_ == other.dev_ && ino_ == other.ino_; }

absl::Status RunIn(const Netns& ns, const std::function<absl::Status()>& fn) {
  absl::Status result;
  std::thread t([&] {
    if (::setns(ns.fd(), CLONE_NEWNET) != 0) {
      result = ErrnoStatus("setns " + ns.path());
      return;
    }
    result = fn();
  });
  t.join();
  return result;
}

absl::Status ValidatePodNetns(const std::string& path) {
  if (path.empty()) {
    return absl::InvalidArgumentError("pod has no network namespace (hostNetwork pod?)");
  }
  struct statfs sfs {};
  if (::statfs(path.c_str(), &sfs) != 0) return ErrnoStatus("statfs netns " + path);
  // /proc/<pid>/ns/net links live on procfs but open to nsfs; bind mounts are nsfs.
  if (sfs.f_type != NSFS_MAGIC && sfs.f_type != PROC_SUPER_MAGIC) {
    return absl::InvalidArgumentError(path + " is not a network namespace file");
  }
  ASSIGN_OR_RETURN(Netns pod, Netns::Open(path));
  ASSIGN_OR_RETURN(Netns self, Netns::Current());
  if (pod.SameAs(self)) {
    return absl::InvalidArgumentError(path + " is the host network namespace");
  }
  return absl::OkStatus();
}

namespace {

// Like iproute2: make `dir` a shared mount (bind-mounting it onto itself first if it is not a
// mount point), so namespace mounts made under it propagate to processes that entered a
// private (slave) mount namespace after it was set up, e.g. `ip netns exec`.
absl::Status EnsureSharedMount(const std::string& dir) {
  if (::mount("", dir.c_str(), "none", MS_SHARED | MS_REC, nullptr) == 0) return absl::OkStatus();
  if (errno != EINVAL) return ErrnoStatus("make " + dir + " a shared mount");
  if (::mount(dir.c_str(), dir.c_str(), "none", MS_BIND | MS_REC, nullptr) != 0) {
    return ErrnoStatus("bind mount " + dir);
  }
  if (::mount("", dir.c_str(), "none", MS_SHARED | MS_REC, nullptr) != 0) {
    return ErrnoStatus("make " + dir + " a shared mount");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> CreateNamed(const std::string& name, const std::string& dir) {
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
    return absl::InvalidArgumentError("bad netns name \"" + name + "\"");
  }
  RETURN_IF_ERROR(MakeDirs(dir));
  RETURN_IF_ERROR(EnsureSharedMount(dir));
  std::string path = dir + "/" + name;
  // The mount point must be a file.
  UniqueFd f(::open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444));
  if (!f.valid()) return ErrnoStatus("create " + path);
  f.Reset();
  absl::Status st;
  std::thread t([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      st = ErrnoStatus("unshare(CLONE_NEWNET)");
      return;
    }
    std::string self = "/proc/self/task/" + std::to_string(::gettid()) + "/ns/net";
    if (::mount(self.c_str(), path.c_str(), "none", MS_BIND, nullptr) != 0) {
      st = ErrnoStatus("bind mount " + self + " on " + path);
    }
  });
  t.join();
  if (!st.ok()) {
    ::unlink(path.c_str());
    return st;
  }
  return path;
}

absl::Status DeleteNamed(const std::string& path) {
  if (::umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
    return ErrnoStatus("umount " + path);
  }
  return RemoveFile(path);
}

absl::StatusOr<ScopedNetns> ScopedNetns::Create(const std::string& prefix) {
  std::random_device rd;
  std::string name = prefix + "-" + std::to_string(rd() % 1000000);
  ASSIGN_OR_RETURN(std::string path, CreateNamed(name));
  return ScopedNetns(std::move(path));
}

ScopedNetns::~ScopedNetns() {
  if (!path_.empty()) (void)DeleteNamed(path_);
}

std::string ScopedNetns::name() const { return std::filesystem::path(path_).filename(); }

bool HaveNetAdmin() {
  if (::geteuid() != 0) return false;
  // A namespace can be created only with CAP_SYS_ADMIN; try it on a throwaway thread.
  bool ok = false;
  std::thread t([&] { ok = ::unshare(CLONE_NEWNET) == 0; });
  t.join();
  return ok;
}

}  // namespace knd::netns
