#include "inventory/monitor.h"

#include <linux/rtnetlink.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "netns/netns.h"
#include "spdlog/spdlog.h"

namespace knd::inventory {

LinkMonitor::LinkMonitor(Callback cb, Options opts) : cb_(std::move(cb)), opts_(std::move(opts)) {}

LinkMonitor::~LinkMonitor() { Stop(); }

absl::Status LinkMonitor::Start() {
  if (thread_.joinable()) return absl::FailedPreconditionError("link monitor already started");
  if (opts_.netns_path.empty()) {
    ASSIGN_OR_RETURN(sock_, netlink::OpenRouteSocket());
  } else {
    ASSIGN_OR_RETURN(netns::Netns ns, netns::Netns::Open(opts_.netns_path));
    ASSIGN_OR_RETURN(sock_, netlink::OpenRouteSocketIn(ns));
  }
  // Multicast notifications carry sequence number 0: do not let libnl check them.
  nl_socket_disable_seq_check(sock_.get());
  int err =
      nl_socket_add_memberships(sock_.get(), RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR,
                                RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE, 0);
  if (err < 0) return netlink::NlStatus(err, "subscribe to link/address/route events");
  err = nl_socket_set_nonblocking(sock_.get());
  if (err < 0) return netlink::NlStatus(err, "set monitor socket non-blocking");
  stop_fd_ = UniqueFd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop_fd_.valid()) return ErrnoStatus("eventfd");
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

void LinkMonitor::Stop() {
  if (!thread_.joinable()) return;
  uint64_t one = 1;
  if (write(stop_fd_.get(), &one, sizeof(one)) < 0) {
    spdlog::error("link monitor: cannot signal stop: errno {}", errno);
  }
  thread_.join();
  sock_ = netlink::NlSock();
  stop_fd_.Reset();
}

void LinkMonitor::Run() {
  using Clock = std::chrono::steady_clock;
  // A pending burst: the time of its first and of its latest event.
  bool pending = false;
  Clock::time_point first{}, last{};
  std::vector<char> buf(64 * 1024);
  for (;;) {
    int timeout = -1;
    if (pending) {
      Clock::time_point due = std::min(last + opts_.quiet, first + opts_.max_delay);
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(due - Clock::now());
      timeout = static_cast<int>(std::max<int64_t>(0, left.count()));
    }
    pollfd fds[2] = {{sock_.fd(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
    int n = poll(fds, 2, timeout);
    if (n < 0 && errno != EINTR) {
      spdlog::error("link monitor: poll: errno {}", errno);
      return;
    }
    if (fds[1].revents != 0) return;
    if (n > 0 && fds[0].revents != 0) {
      // Any message is a change; the content is not needed because the callback rescans.
      bool got = false;
      for (;;) {
        ssize_t r = recv(sock_.fd(), buf.data(), buf.size(), MSG_DONTWAIT);
        if (r > 0) {
          got = true;
          continue;
        }
        if (r < 0 && errno == ENOBUFS) {  // overrun: events lost, so rescan
          got = true;
          continue;
        }
        break;  // EAGAIN (drained) or error
      }
      if (got) {
        Clock::time_point now = Clock::now();
        if (!pending) first = now;
        pending = true;
        last = now;
      }
    }
    if (pending) {
      Clock::time_point now = Clock::now();
      if (now >= last + opts_.quiet || now >= first + opts_.max_delay) {
        pending = false;
        cb_();
      }
    }
  }
}

}  // namespace knd::inventory
