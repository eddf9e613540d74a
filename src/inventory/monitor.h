// LinkMonitor: tells the inventory when to rescan. Listens to rtnetlink multicast groups
// (links, IPv4/IPv6 addresses, IPv4/IPv6 routes — default-route changes move the uplink set)
// on its own thread and coalesces a burst of events into one callback: the callback runs
// once no event arrived for `quiet`, or at the latest `max_delay` after the first event of a
// burst. A kernel buffer overrun (ENOBUFS: events were lost) also counts as a change.
//
// Two more reasons to call back: Trigger() (a change the kernel does not announce on the
// host, e.g. a device recorded as destroyed with its pod; coalesced like an event) and
// ScheduleAt() (a time the inventory wants another look, e.g. when a missing device's grace
// period ends).
#pragma once

#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "common/unique_fd.h"
#include "netlink/socket.h"

namespace knd::inventory {

class LinkMonitor {
 public:
  using Callback = std::function<void()>;
  struct Options {
    std::chrono::milliseconds quiet{200};
    std::chrono::milliseconds max_delay{2000};
    std::string netns_path;  // "" = this process's namespace
  };

  // `cb` runs on the monitor thread; it may take its time (events keep queueing in the
  // socket meanwhile) but must not call Stop().
  LinkMonitor(Callback cb, Options opts);
  explicit LinkMonitor(Callback cb) : LinkMonitor(std::move(cb), Options()) {}
  ~LinkMonitor();
  LinkMonitor(const LinkMonitor&) = delete;
  LinkMonitor& operator=(const LinkMonitor&) = delete;

  // Subscribes and starts the thread. Events from before Start() are not reported.
  absl::Status Start();
  // Prompt: wakes the thread through an eventfd and joins it; a pending burst is dropped.
  void Stop();

  // Thread-safe; before Start() they take effect once the thread runs.
  void Trigger();
  void ScheduleAt(std::chrono::steady_clock::time_point t);

 private:
  void Run();
  void Wake();

  Callback cb_;
  Options opts_;
  netlink::NlSock sock_;
  UniqueFd stop_fd_;
  UniqueFd wake_fd_;
  std::mutex mu_;
  bool triggered_ = false;                                          // guarded by mu_
  std::optional<std::chrono::steady_clock::time_point> scheduled_;  // guarded by mu_
  std::thread thread_;
};

}  // namespace knd::inventory
