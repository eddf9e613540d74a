// RAII ownership for libnl-3 objects and the route (NETLINK_ROUTE) socket every other netlink
// user in knd builds on. A socket opened with OpenRouteSocketIn() is created on a thread that
// has entered the target namespace; the kernel binds it to that namespace for its whole life,
// so it can then be used from any thread (see netns/netns.h).
#pragma once

// Our "netlink/socket.h" shadows libnl's <netlink/socket.h> (src/ comes before the libnl
// include directory, and libnl's own netlink.h includes <netlink/socket.h>). Pulling libnl's
// header in from here keeps both visible whichever one a translation unit asks for.
#include_next <netlink/socket.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "netns/netns.h"

struct nl_sock;
struct nl_cache;
struct nl_addr;
struct nl_msg;
struct rtnl_link;
struct rtnl_addr;
struct rtnl_route;

namespace knd::netlink {

// One deleter per libnl type (each has its own put/free function).
struct NlCacheDeleter {
  void operator()(nl_cache* c) const;
};
struct RtnlLinkDeleter {
  void operator()(rtnl_link* l) const;
};
struct RtnlAddrDeleter {
  void operator()(rtnl_addr* a) const;
};
struct RtnlRouteDeleter {
  void operator()(rtnl_route* r) const;
};
struct NlAddrDeleter {
  void operator()(nl_addr* a) const;
};
struct NlMsgDeleter {
  void operator()(nl_msg* m) const;
};
using NlCachePtr = std::unique_ptr<nl_cache, NlCacheDeleter>;
using RtnlLinkPtr = std::unique_ptr<rtnl_link, RtnlLinkDeleter>;
using RtnlAddrPtr = std::unique_ptr<rtnl_addr, RtnlAddrDeleter>;
using RtnlRoutePtr = std::unique_ptr<rtnl_route, RtnlRouteDeleter>;
using NlAddrPtr = std::unique_ptr<nl_addr, NlAddrDeleter>;
using NlMsgPtr = std::unique_ptr<nl_msg, NlMsgDeleter>;

// A connected libnl socket (move-only). Not thread-safe: one user at a time.
class NlSock {
 public:
  NlSock() = default;
  explicit NlSock(nl_sock* sock) : sock_(sock) {}
  NlSock(NlSock&& o) noexcept : sock_(o.sock_) { o.sock_ = nullptr; }
  NlSock& operator=(NlSock&& o) noexcept;
  NlSock(const NlSock&) = delete;
  NlSock& operator=(const NlSock&) = delete;
  ~NlSock();

  nl_sock* get() const { return sock_; }
  explicit operator bool() const { return sock_ != nullptr; }
  // The socket's file descriptor (for poll()); -1 when empty.
  int fd() const;

 private:
  nl_sock* sock_ = nullptr;
};

// A NETLINK_ROUTE socket in the calling thread's network namespace.
absl::StatusOr<NlSock> OpenRouteSocket();
// A NETLINK_ROUTE socket bound to `ns` (created on a helper thread inside it).
absl::StatusOr<NlSock> OpenRouteSocketIn(const netns::Netns& ns);

// Turns a libnl error (negative NLE_* code, as libnl functions return) into a Status
// "<what>: <libnl message>" with the closest canonical code (NLE_OBJ_NOTFOUND/NLE_NODEV ->
// NotFound, NLE_EXIST -> AlreadyExists, NLE_PERM -> PermissionDenied, ...). err == 0 is OK.
absl::Status NlStatus(int err, const std::string& what);

}  // namespace knd::netlink
