// Network namespace handles and running work inside a namespace.
//
// Threads: setns() changes the calling thread only, so namespace work never runs on a pooled
// or long-lived thread. RunIn() starts a short-lived thread, enters the namespace there, runs
// the function and lets the thread die. A netlink socket created inside RunIn() stays bound
// to that namespace for its whole life and can then be used from any thread — that is how
// knd talks to a pod netns without moving its own threads.
#pragma once

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"

namespace knd::netns {

class Netns {
 public:
  // Opens a namespace file (e.g. /var/run/netns/x or /proc/<pid>/ns/net).
  static absl::StatusOr<Netns> Open(const std::string& path);
  // The network namespace of this process (/proc/self/ns/net).
  static absl::StatusOr<Netns> Current();

  int fd() const { return fd_.get(); }
  const std::string& path() const { return path_; }
  // Same namespace (same nsfs inode)?
  bool SameAs(const Netns& other) const;

 private:
  Netns(UniqueFd fd, std::string path, uint64_t dev, uint64_t ino)
      : fd_(std::move(fd)), path_(std::move(path)), dev_(dev), ino_(ino) {}
  UniqueFd fd_;
  std::string path_;
  uint64_t dev_ = 0, ino_ = 0;
};

// Runs `fn` on a new thread that has entered `ns`; returns fn's status.
absl::Status RunIn(const Netns& ns, const std::function<absl::Status()>& fn);

// Checks that `path` is a network namespace file and not the namespace of this process
// (the host's): refusing the host netns is what keeps a bad plan from renaming host links.
absl::Status ValidatePodNetns(const std::string& path);

// A named namespace under `dir` (like `ip netns add`): unshare on a helper thread, bind-mount
// /proc/thread-self/ns/net onto <dir>/<name>. Used by the runtime stand-in and tests.
absl::StatusOr<std::string> CreateNamed(const std::string& name,
                                        const std::string& dir = "/run/netns");
// Unmounts and removes <dir>/<name>; the namespace dies when nothing else holds it.
// Missing is success.
absl::Status DeleteNamed(const std::string& path);

// Test helper: a throwaway named namespace, deleted on destruction even when a test fails.
class ScopedNetns {
 public:
  // Name gets a random suffix; `prefix` helps to find leftovers.
  static absl::StatusOr<ScopedNetns> Create(const std::string& prefix = "knd-test");
  ScopedNetns(ScopedNetns&& o) noexcept : path_(std::move(o.path_)) { o.path_.clear(); }
  ScopedNetns& operator=(ScopedNetns&&) = delete;
  ~ScopedNetns();
  const std::string& path() const { return path_; }
  std::string name() const;

 private:
  explicit ScopedNetns(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// True when this process may create namespaces and configure links (privileged tests skip
// themselves otherwise).
bool HaveNetAdmin();

}  // namespace knd::netns
