// ttrpc (containerd/ttrpc v1.2.x) over an abstract byte stream: framing, a unary server that
// dispatches by (service, method), and a unary client. NRI speaks ttrpc in both directions
// over one mux trunk (see mux.h), so neither side owns a socket: bytes come in through
// ByteSink::OnData (fed by whoever reads the transport) and go out through ByteStream::Write.
// Wire facts: wire-facts.md §3.4.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/unique_fd.h"
#include "google/protobuf/message_lite.h"

namespace knd::nri {

// Where a ttrpc endpoint writes its bytes (a mux ConnID, or a plain fd in tests).
class ByteStream {
 public:
  virtual ~ByteStream() = default;
  // Writes all of `data` or fails; safe to call from several threads.
  virtual absl::Status Write(std::string_view data) = 0;
  // Tears the transport down (the peer sees the connection close).
  virtual void Close() = 0;
};

// What a transport reader feeds with received bytes.
class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual void OnData(std::string_view data) = 0;
  // The transport closed; no more OnData calls follow.
  virtual void OnClosed() = 0;
};

namespace ttrpc {

inline constexpr size_t kHeaderSize = 10;
inline constexpr uint32_t kMaxMessageSize = 4u << 20;  // 4 MiB, the ttrpc default limit

enum MessageType : uint8_t { kRequest = 1, kResponse = 2, kData = 3 };

struct Frame {
  uint32_t stream_id = 0;
  uint8_t type = 0;
  uint8_t flags = 0;
  std::string payload;
  // Set by the decoder for a frame whose announced length exceeds kMaxMessageSize: the payload
  // was discarded, the receiver answers ResourceExhausted on this stream.
  bool oversized = false;
  uint32_t announced_length = 0;
};

// Serializes one frame; ResourceExhausted when the payload is over 4 MiB.
absl::StatusOr<std::string> EncodeFrame(uint32_t stream_id, uint8_t type, uint8_t flags,
                                        std::string_view payload);

// Incremental frame decoder: feed arbitrary chunks, pop complete frames.
class FrameDecoder {
 public:
  void Feed(std::string_view data);
  // The next complete frame, if any.
  std::optional<Frame> Next();

 private:
  std::string buf_;
  size_t pos_ = 0;
  // Bytes of an oversized payload still to skip.
  uint64_t skip_ = 0;
};

// Converts a ttrpc/gRPC status code + message into an absl::Status (codes are the same),
// marked as the peer's (IsPeerStatus).
absl::Status FromWire(int32_t code, const std::string& message);

// Whether an error from Client::Call is the status the peer replied with, rather than one of
// this side (no reply in time, connection closed). A peer that answers DeadlineExceeded has
// answered; a runtime drops a plugin only when the plugin did not answer.
bool IsPeerStatus(const absl::Status& st);

// A unary ttrpc server over one byte stream. Requests are handled in arrival order on one
// worker thread, so a slow handler never blocks the transport reader (the mux reader must
// keep delivering responses of the other ConnID while a handler runs).
class Server : public ByteSink {
 public:
  // Receives the serialized request payload and the caller's deadline (InfiniteFuture when
  // the request had no timeout); returns the serialized response or an error status.
  using Method =
      std::function<absl::StatusOr<std::string>(const std::string& payload, absl::Time deadline)>;

  explicit Server(ByteStream* out);
  ~Server() override;
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Register before any data arrives.
  void Register(const std::string& service, const std::string& method, Method fn);

  // Typed helper: Req/Resp are generated protobuf messages.
  template <typename Req, typename Resp>
  void RegisterTyped(const std::string& service, const std::string& method,
                     std::function<absl::StatusOr<Resp>(const Req&)> fn) {
    Register(service, method,
             [fn = std::move(fn), service, method](const std::string& payload,
                                                   absl::Time) -> absl::StatusOr<std::string> {
               Req req;
               if (!req.ParseFromString(payload)) {
                 return absl::InvalidArgumentError("ttrpc " + service + "/" + method +
                                                   ": cannot decode request payload");
               }
               absl::StatusOr<Resp> resp = fn(req);
               if (!resp.ok()) return resp.status();
               return resp->SerializeAsString();
             });
  }

  void OnData(std::string_view data) override;
  void OnClosed() override;

  // Stops the worker (pending requests are dropped). Idempotent.
  void Shutdown();

 private:
  void Reply(uint32_t stream_id, const absl::Status& st, const std::string& payload);
  void WorkerLoop();

  ByteStream* out_;
  std::map<std::pair<std::string, std::string>, Method> methods_;
  FrameDecoder decoder_;  // only touched by the reader thread
  uint32_t last_stream_id_ = 0;
  bool broken_ = false;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Frame> queue_;
  bool stop_ = false;
  std::thread worker_;
};

// A unary ttrpc client over one byte stream: odd stream ids 1, 3, 5, ...; concurrent calls
// are matched to responses by stream id.
class Client : public ByteSink {
 public:
  explicit Client(ByteStream* out);
  ~Client() override;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Sends one request and waits for its response. The timeout is also sent to the server
  // (timeout_nano). Errors: DeadlineExceeded on timeout, Unavailable when the connection is
  // closed, otherwise the server's status.
  absl::StatusOr<std::string> Call(const std::string& service, const std::string& method,
                                   const std::string& payload, absl::Duration timeout);

  template <typename Resp>
  absl::StatusOr<Resp> CallTyped(const std::string& service, const std::string& method,
                                 const google::protobuf::MessageLite& req, absl::Duration timeout) {
    absl::StatusOr<std::string> raw = Call(service, method, req.SerializeAsString(), timeout);
    if (!raw.ok()) return raw.status();
    Resp resp;
    if (!resp.ParseFromString(*raw)) {
      return absl::InternalError("ttrpc " + service + "/" + method +
                                 ": cannot decode response payload");
    }
    return resp;
  }

  void OnData(std::string_view data) override;
  void OnClosed() override;
  bool closed();

 private:
  struct Pending {
    bool done = false;
    absl::Status status;
    std::string payload;
  };

  ByteStream* out_;
  FrameDecoder decoder_;  // only touched by the reader thread
  std::mutex send_mu_;    // orders id allocation + write; taken before mu_
  std::mutex mu_;
  std::condition_variable cv_;
  uint32_t next_id_ = 1;
  bool closed_ = false;
  std::map<uint32_t, std::shared_ptr<Pending>> pending_;
};

}  // namespace ttrpc

// A ByteStream over a connected fd plus a reader thread feeding a ByteSink. Used for
// socketpairs in tests and as the raw trunk under the mux.
class FdStream : public ByteStream {
 public:
  explicit FdStream(UniqueFd fd) : fd_(std::move(fd)) {}
  ~FdStream() override;
  // Starts the reader thread feeding `sink` until EOF/error/Close.
  void StartReader(ByteSink* sink);
  absl::Status Write(std::string_view data) override;
  void Close() override;
  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
  std::mutex write_mu_;
  std::thread reader_;
};

}  // namespace knd::nri
