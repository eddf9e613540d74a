// The NRI connection multiplexer (containerd/nri pkg/net/multiplex): one unix-socket "trunk"
// carries several logical byte streams, each frame prefixed by ConnID (u32 BE) and payload
// length (u32 BE). ConnID 1 carries the Plugin service (plugin = ttrpc server), ConnID 2 the
// Runtime service (runtime = ttrpc server). There is no open handshake: frames for a ConnID
// nobody opened are dropped. Wire facts: wire-facts.md §3.5.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/unique_fd.h"
#include "nri/ttrpc.h"

namespace knd::nri {

inline constexpr uint32_t kPluginServiceConn = 1;
inline constexpr uint32_t kRuntimeServiceConn = 2;
inline constexpr size_t kMuxHeaderSize = 8;
// Our writer never puts more payload than this in one frame: the Go reader hands one frame
// per Read() into a 4096-byte bufio buffer and fails on larger ones (wire-facts.md §3.5).
inline constexpr size_t kMuxMaxWriteChunk = 4096;
// What we accept from the peer: a whole ttrpc message plus its header.
inline constexpr size_t kMuxMaxReadFrame = ttrpc::kMaxMessageSize + ttrpc::kHeaderSize;

struct MuxFrame {
  uint32_t conn_id = 0;
  std::string payload;
};

// Encodes `data` for `conn_id` as a sequence of frames of at most kMuxMaxWriteChunk payload.
std::string EncodeMuxFrames(uint32_t conn_id, std::string_view data);

// Incremental mux frame decoder. A frame announcing more than kMuxMaxReadFrame bytes is a
// protocol error (the trunk must be closed).
class MuxDecoder {
 public:
  void Feed(std::string_view data);
  // Next complete frame; an error status means the stream is corrupt.
  absl::StatusOr<std::optional<MuxFrame>> Next();

 private:
  std::string buf_;
  size_t pos_ = 0;
};

// A trunk over a connected socket: Open() logical connections, Start() the reader thread.
class Mux {
 public:
  explicit Mux(UniqueFd trunk);
  ~Mux();
  Mux(const Mux&) = delete;
  Mux& operator=(const Mux&) = delete;

  // Opens ConnID `id`: the returned stream (owned by the Mux) writes framed bytes on the
  // trunk. Call before Start().
  ByteStream* Open(uint32_t id);
  // Received bytes of an opened ConnID go to `sink`, which must stay alive until the reader
  // thread ended (Wait() or destruction). Call before Start(); unattached ConnIDs are dropped.
  void Attach(uint32_t id, ByteSink* sink);

  // Starts the one reader thread of this trunk. When the trunk closes every sink gets
  // OnClosed() and Wait() returns.
  void Start();
  // Shuts the socket down (idempotent); the reader thread ends soon after.
  void Close();
  // Blocks until the reader thread has seen the trunk close, or `timeout` passes.
  // Returns true when closed.
  bool Wait(absl::Duration timeout);
  bool closed();

 private:
  class Stream;
  absl::Status WriteFrames(uint32_t id, std::string_view data);
  void ReadLoop();

  UniqueFd fd_;
  std::mutex write_mu_;
  std::map<uint32_t, ByteSink*> sinks_;
  std::vector<std::unique_ptr<Stream>> streams_;
  std::thread reader_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool closed_ = false;
};

}  // namespace knd::nri
