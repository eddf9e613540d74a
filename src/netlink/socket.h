// RAII ownership for libnl-3 objects and the route (NETLINK_ROUTE) socket every other netlink
// user in knd builds on. A socket opened with OpenRouteSocketIn() is created on a thread that
// has entered the target namespace; the kernel binds it to that namespace for its whole life,
// so it can then be used from any thread (see netns/netns.h).
#pragma once

// Our "netlink/socket.h" shadows libnl's <netlink/socket.h> (src/ comes before the libnl
// include directory, and libnl's own netlink.h includes <netlink/socket.h>). Pulling libnl's
// header in from here keeps both visible whichever one a translation unit asks for.
#include_next <netlink/socket.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

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

// Route sockets of one namespace kept for reuse: opening one (a socket, a bind, four
// setsockopts, and for the host a check of the caller's namespace) costs about as much as the
// exchange it is opened for. A Lease lends one socket to one user. Keep() gives it back for
// the next user; call it only when every exchange on it completed, because a failed exchange
// can leave replies unread and libnl's sequence check out of step. A lease not kept closes
// its socket.
class SocketPool {
 public:
  using Opener = std::function<absl::StatusOr<NlSock>()>;
  explicit SocketPool(Opener open, size_t max_idle = 4)
      : open_(std::move(open)), max_idle_(max_idle) {}
  SocketPool(const SocketPool&) = delete;
  SocketPool& operator=(const SocketPool&) = delete;

  class Lease {
   public:
    Lease(Lease&& o) noexcept : pool_(o.pool_), sock_(std::move(o.sock_)), keep_(o.keep_) {
      o.pool_ = nullptr;
    }
    Lease& operator=(Lease&&) = delete;
    ~Lease();
    NlSock& operator*() { return sock_; }
    NlSock* operator->() { return &sock_; }
    void Keep() { keep_ = true; }

   private:
    friend class SocketPool;
    Lease(SocketPool* pool, NlSock sock) : pool_(pool), sock_(std::move(sock)) {}
    SocketPool* pool_;
    NlSock sock_;
    bool keep_ = false;
  };

  // An idle socket, or a new one.
  absl::StatusOr<Lease> Take();
  size_t idle() const;

 private:
  void Return(NlSock sock);
  Opener open_;
  const size_t max_idle_;
  mutable std::mutex mu_;
  std::vector<NlSock> idle_;
};

// Turns a libnl error (negative NLE_* code, as libnl functions return) into a Status
// "<what>: <libnl message>" with the closest canonical code (NLE_OBJ_NOTFOUND/NLE_NODEV ->
// NotFound, NLE_EXIST -> AlreadyExists, NLE_PERM -> PermissionDenied, ...). err == 0 is OK.
absl::Status NlStatus(int err, const std::string& what);

}  // namespace knd::netlink
