#include "nri/mux.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/status.h"

namespace knd::nri {
namespace {

void PutU32(std::string& s, uint32_t v) {
  s.push_back(static_cast<char>(v >> 24));
  s.push_back(static_cast<char>(v >> 16));
  s.push_back(static_cast<char>(v >> 8));
  s.push_back(static_cast<char>(v));
}

uint32_t GetU32(const char* p) {
  auto b = reinterpret_cast<const unsigned char*>(p);
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
}

}  // namespace

std::string EncodeMuxFrames(uint32_t conn_id, std::string_view data) {
  std::string out;
  out.reserve(data.size() + (data.size() / kMuxMaxWriteChunk + 1) * kMuxHeaderSize);
  do {
    size_t n = std::min(data.size(), kMuxMaxWriteChunk);
    PutU32(out, conn_id);
    PutU32(out, static_cast<uint32_t>(n));
    out.append(data.data(), n);
    data.remove_prefix(n);
  } while (!data.empty());
  return out;
}

void MuxDecoder::Feed(std::string_view data) {
  if (pos_ > 0 && pos_ >= buf_.size() / 2) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  buf_.append(data.data(), data.size());
}

absl::StatusOr<std::optional<MuxFrame>> MuxDecoder::Next() {
  size_t avail = buf_.size() - pos_;
  if (avail < kMuxHeaderSize) return std::optional<MuxFrame>();
  const char* h = buf_.data() + pos_;
  uint32_t id = GetU32(h);
  uint32_t len = GetU32(h + 4);
  if (len > kMuxMaxReadFrame) {
    return absl::ResourceExhaustedError("mux frame of " + std::to_string(len) + " bytes for conn " +
                                        std::to_string(id) + " exceeds the limit of " +
                                        std::to_string(kMuxMaxReadFrame));
  }
  if (avail < kMuxHeaderSize + len) return std::optional<MuxFrame>();
  MuxFrame f;
  f.conn_id = id;
  f.payload.assign(h + kMuxHeaderSize, len);
  pos_ += kMuxHeaderSize + len;
  if (pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  }
  return std::optional<MuxFrame>(std::move(f));
}

class Mux::Stream : public ByteStream {
 public:
  Stream(Mux* mux, uint32_t id) : mux_(mux), id_(id) {}
  absl::Status Write(std::string_view data) override { return mux_->WriteFrames(id_, data); }
  void Close() override { mux_->Close(); }

 private:
  Mux* mux_;
  uint32_t id_;
};

Mux::Mux(UniqueFd trunk) : fd_(std::move(trunk)) {}

Mux::~Mux() {
  Close();
  if (reader_.joinable()) reader_.join();
}

ByteStream* Mux::Open(uint32_t id) {
  streams_.push_back(std::make_unique<Stream>(this, id));
  return streams_.back().get();
}

void Mux::Attach(uint32_t id, ByteSink* sink) { sinks_[id] = sink; }

void Mux::Start() {
  reader_ = std::thread([this] { ReadLoop(); });
}

void Mux::Close() {
  if (fd_.valid()) ::shutdown(fd_.get(), SHUT_RDWR);
}

bool Mux::Wait(absl::Duration timeout) {
  std::unique_lock<std::mutex> l(mu_);
  return cv_.wait_for(l, absl::ToChronoNanoseconds(timeout), [this] { return closed_; });
}

bool Mux::closed() {
  std::lock_guard<std::mutex> l(mu_);
  return closed_;
}

absl::Status Mux::WriteFrames(uint32_t id, std::string_view data) {
  std::string wire = EncodeMuxFrames(id, data);
  // One lock per message: frames of different ConnIDs may interleave between messages, never
  // inside one (the peer's per-conn byte streams stay intact either way, but this keeps each
  // message contiguous which is what the Go writer does too).
  std::lock_guard<std::mutex> l(write_mu_);
  std::string_view rest = wire;
  while (!rest.empty()) {
    ssize_t n = ::send(fd_.get(), rest.data(), rest.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("write to NRI mux trunk");
    rest.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

void Mux::ReadLoop() {
  MuxDecoder dec;
  std::string buf(64 * 1024, '\0');
  bool ok = true;
  while (ok) {
    ssize_t n = ::read(fd_.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    dec.Feed(std::string_view(buf.data(), static_cast<size_t>(n)));
    for (;;) {
      absl::StatusOr<std::optional<MuxFrame>> f = dec.Next();
      if (!f.ok()) {
        ok = false;  // corrupt trunk: close it
        break;
      }
      if (!f->has_value()) break;
      auto it = sinks_.find((*f)->conn_id);
      if (it == sinks_.end()) continue;  // nobody opened this ConnID: drop
      it->second->OnData((*f)->payload);
    }
  }
  ::shutdown(fd_.get(), SHUT_RDWR);
  for (auto& [id, sink] : sinks_) sink->OnClosed();
  {
    std::lock_guard<std::mutex> l(mu_);
    closed_ = true;
  }
  cv_.notify_all();
}

}  // namespace knd::nri
