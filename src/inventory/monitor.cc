#include "inventory/monitor.h"

#include <linux/rtnetlink.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "netns/netns.h"
#include "spdlog/spdlog.h"

namespace knd::inventory {

LinkMonitor::LinkMonitor(Callback cb, Options opts)
    : cb_(std::move(cb)),
      opts_(std::move(opts)),
      wake_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

void LinkMonitor::Wake() {
  uint64_t one = 1;
  if (wake_fd_.valid() && write(wake_fd_.get(), &one, sizeof(one)) < 0 && errno != EAGAIN) {
    spdlog::error("link monitor: cannot wake: errno {}", errno);
  }
}

void LinkMonitor::Trigger() {
  {
    std::lock_guard<std::mutex> l(mu_);
    triggered_ = true;
  }
  Wake();
}

void LinkMonitor::ScheduleAt(std::chrono::steady_clock::time_point t) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (scheduled_ && *scheduled_ <= t) return;
    scheduled_ = t;
  }
  Wake();
}

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
    std::optional<Clock::time_point> due;
    if (pending) due = std::min(last + opts_.quiet, first + opts_.max_delay);
    {
      std::lock_guard<std::mutex> l(mu_);
      if (scheduled_ && (!due || *scheduled_ < *due)) due = scheduled_;
    }
    int timeout = -1;
    if (due) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*due - Clock::now());
      timeout = static_cast<int>(std::max<int64_t>(0, left.count() + 1));
    }
    pollfd fds[3] = {
        {sock_.fd(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}, {wake_fd_.get(), POLLIN, 0}};
    int n = poll(fds, 3, timeout);
    if (n < 0 && errno != EINTR) {
      spdlog::error("link monitor: poll: errno {}", errno);
      return;
    }
    if (fds[1].revents != 0) return;
    if (n > 0 && fds[2].revents != 0) {
      uint64_t v;
      (void)read(wake_fd_.get(), &v, sizeof(v));
    }
    bool fire_now = false;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (triggered_) {
        triggered_ = false;
        Clock::time_point now = Clock::now();
        if (!pending) first = now;
        pending = true;
        last = now;
      }
      if (scheduled_ && Clock::now() >= *scheduled_) {
        scheduled_.reset();
        fire_now = true;
      }
    }
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
    if (pending || fire_now) {
      Clock::time_point now = Clock::now();
      if (fire_now || now >= last + opts_.quiet || now >= first + opts_.max_delay) {
        pending = false;
        cb_();
      }
    }
  }
}

}  // namespace knd::inventory
