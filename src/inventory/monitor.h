// LinkMonitor: tells the inventory when to rescan. Listens to rtnetlink multicast groups
// (links, IPv4/IPv6 addresses, IPv4/IPv6 routes — default-route changes move the uplink set)
// on its own thread and coalesces a burst of events into one callback: the callback runs
// once no event arrived for `quiet`, or at the latest `max_delay` after the first event of a
// burst. A kernel buffer overrun (ENOBUFS: events were lost) also counts as a change.
#pragma once

#include <chrono>
#include <functional>
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

 private:
  void Run();

  Callback cb_;
  Options opts_;
  netlink::NlSock sock_;
  UniqueFd stop_fd_;
  std::thread thread_;
};

}  // namespace knd::inventory
