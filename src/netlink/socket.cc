#include "netlink/socket.h"

#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>
#include <netlink/socket.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace knd::netlink {

void NlCacheDeleter::operator()(nl_cache* c) const { nl_cache_free(c); }
void RtnlLinkDeleter::operator()(rtnl_link* l) const { rtnl_link_put(l); }
void RtnlAddrDeleter::operator()(rtnl_addr* a) const { rtnl_addr_put(a); }
void RtnlRouteDeleter::operator()(rtnl_route* r) const { rtnl_route_put(r); }
void NlAddrDeleter::operator()(nl_addr* a) const { nl_addr_put(a); }
void NlMsgDeleter::operator()(nl_msg* m) const { nlmsg_free(m); }

NlSock& NlSock::operator=(NlSock&& o) noexcept {
  if (this != &o) {
    if (sock_ != nullptr) nl_socket_free(sock_);
    sock_ = o.sock_;
    o.sock_ = nullptr;
  }
  return *this;
}

NlSock::~NlSock() {
  // nl_socket_free closes the fd as well.
  if (sock_ != nullptr) nl_socket_free(sock_);
}

int NlSock::fd() const { return sock_ == nullptr ? -1 : nl_socket_get_fd(sock_); }

SocketPool::Lease::~Lease() {
  if (pool_ != nullptr && keep_ && sock_) pool_->Return(std::move(sock_));
}

absl::StatusOr<SocketPool::Lease> SocketPool::Take() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_.empty()) {
      NlSock s = std::move(idle_.back());
      idle_.pop_back();
      return Lease(this, std::move(s));
    }
  }
  absl::StatusOr<NlSock> s = open_();
  if (!s.ok()) return s.status();
  return Lease(this, std::move(*s));
}

size_t SocketPool::idle() const {
  std::lock_guard<std::mutex> lock(mu_);
  return idle_.size();
}

void SocketPool::Return(NlSock sock) {
  std::lock_guard<std::mutex> lock(mu_);
  if (idle_.size() < max_idle_) idle_.push_back(std::move(sock));
}

absl::Status NlStatus(int err, const std::string& what) {
  if (err == 0) return absl::OkStatus();
  int code = std::abs(err);
  std::string msg = absl::StrCat(what, ": ", nl_geterror(code));
  switch (code) {
    case NLE_OBJ_NOTFOUND:
    case NLE_NODEV:
    case NLE_NOADDR:
      return absl::NotFoundError(msg);
    case NLE_EXIST:
      return absl::AlreadyExistsError(msg);
    case NLE_PERM:
    case NLE_NOACCESS:
      return absl::PermissionDeniedError(msg);
    case NLE_INVAL:
    case NLE_RANGE:
    case NLE_MSGSIZE:
    case NLE_AF_NOSUPPORT:
      return absl::InvalidArgumentError(msg);
    case NLE_BUSY:
    case NLE_AGAIN:
    case NLE_INTR:
      return absl::UnavailableError(msg);
    case NLE_OPNOTSUPP:
    case NLE_PROTO_MISMATCH:
      return absl::UnimplementedError(msg);
    case NLE_NOMEM:
      return absl::ResourceExhaustedError(msg);
    case NLE_DUMP_INTR:  // the dump's view changed while it ran: dumping again gets a whole one
      return absl::AbortedError(msg);
    default:
      return absl::InternalError(msg);
  }
}

absl::StatusOr<NlSock> OpenRouteSocket() {
  nl_sock* raw = nl_socket_alloc();
  if (raw == nullptr) return absl::ResourceExhaustedError("nl_socket_alloc failed");
  NlSock sock(raw);
  int err = nl_connect(raw, NETLINK_ROUTE);
  if (err < 0) return NlStatus(err, "connect NETLINK_ROUTE socket");
  // Large dumps (hundreds of links with stats) need more than the 32 KiB default.
  nl_socket_set_buffer_size(raw, 1 << 20, 1 << 20);
  nl_socket_set_msg_buf_size(raw, 64 * 1024);
  return sock;
}

absl::StatusOr<NlSock> OpenRouteSocketIn(const netns::Netns& ns) {
  NlSock out;
  absl::Status st = netns::RunIn(ns, [&out]() -> absl::Status {
    absl::StatusOr<NlSock> s = OpenRouteSocket();
    if (!s.ok()) return s.status();
    out = std::move(*s);
    return absl::OkStatus();
  });
  if (!st.ok()) return Annotate(st, absl::StrCat("open netlink socket in ", ns.path()));
  return out;
}

}  // namespace knd::netlink
