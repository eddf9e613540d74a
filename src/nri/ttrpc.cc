#include "nri/ttrpc.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/cord.h"
#include "common/status.h"
#include "ttrpc/request.pb.h"

namespace knd::nri {
namespace ttrpc {
namespace {

void PutU32(char* p, uint32_t v) {
  p[0] = static_cast<char>(v >> 24);
  p[1] = static_cast<char>(v >> 16);
  p[2] = static_cast<char>(v >> 8);
  p[3] = static_cast<char>(v);
}

uint32_t GetU32(const char* p) {
  auto b = reinterpret_cast<const unsigned char*>(p);
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
}

}  // namespace

absl::StatusOr<std::string> EncodeFrame(uint32_t stream_id, uint8_t type, uint8_t flags,
                                        std::string_view payload) {
  if (payload.size() > kMaxMessageSize) {
    return absl::ResourceExhaustedError("ttrpc message of " + std::to_string(payload.size()) +
                                        " bytes exceeds the limit of " +
                                        std::to_string(kMaxMessageSize));
  }
  std::string out(kHeaderSize, '\0');
  PutU32(out.data(), static_cast<uint32_t>(payload.size()));
  PutU32(out.data() + 4, stream_id);
  out[8] = static_cast<char>(type);
  out[9] = static_cast<char>(flags);
  out.append(payload.data(), payload.size());
  return out;
}

void FrameDecoder::Feed(std::string_view data) {
  if (skip_ > 0) {
    size_t n = std::min<uint64_t>(skip_, data.size());
    skip_ -= n;
    data.remove_prefix(n);
  }
  // Compact consumed bytes before growing the buffer.
  if (pos_ > 0 && pos_ >= buf_.size() / 2) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  buf_.append(data.data(), data.size());
}

std::optional<Frame> FrameDecoder::Next() {
  if (skip_ > 0) return std::nullopt;
  size_t avail = buf_.size() - pos_;
  if (avail < kHeaderSize) return std::nullopt;
  const char* h = buf_.data() + pos_;
  Frame f;
  uint32_t len = GetU32(h);
  f.stream_id = GetU32(h + 4);
  f.type = static_cast<uint8_t>(h[8]);
  f.flags = static_cast<uint8_t>(h[9]);
  f.announced_length = len;
  if (len > kMaxMessageSize) {
    // Discard the payload as it arrives; report the frame right away.
    f.oversized = true;
    pos_ += kHeaderSize;
    size_t have = buf_.size() - pos_;
    size_t n = std::min<size_t>(have, len);
    pos_ += n;
    skip_ = len - n;
    if (skip_ > 0) {
      // Nothing buffered can belong to a later frame yet.
      buf_.clear();
      pos_ = 0;
    }
    return f;
  }
  if (avail < kHeaderSize + len) return std::nullopt;
  f.payload.assign(h + kHeaderSize, len);
  pos_ += kHeaderSize + len;
  if (pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  }
  return f;
}

namespace {
constexpr char kPeerStatusPayload[] = "knd.nri.ttrpc/peer-status";
}  // namespace

absl::Status FromWire(int32_t code, const std::string& message) {
  if (code == 0) return absl::OkStatus();
  if (code < 0 || code > 16) code = static_cast<int32_t>(absl::StatusCode::kUnknown);
  absl::Status st(static_cast<absl::StatusCode>(code), message);
  st.SetPayload(kPeerStatusPayload, absl::Cord("1"));
  return st;
}

bool IsPeerStatus(const absl::Status& st) {
  return !st.ok() && st.GetPayload(kPeerStatusPayload).has_value();
}

// ---------------------------------------------------------------- Server

Server::Server(ByteStream* out) : out_(out) {
  worker_ = std::thread([this] { WorkerLoop(); });
}

Server::~Server() { Shutdown(); }

void Server::Shutdown() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stop_ && !worker_.joinable()) return;
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable() && worker_.get_id() != std::this_thread::get_id()) worker_.join();
}

void Server::Register(const std::string& service, const std::string& method, Method fn) {
  methods_[{service, method}] = std::move(fn);
}

void Server::Reply(uint32_t stream_id, const absl::Status& st, const std::string& payload) {
  ::ttrpc::Response resp;
  resp.mutable_status()->set_code(static_cast<int32_t>(st.code()));
  if (!st.ok()) {
    resp.mutable_status()->set_message(std::string(st.message()));
  } else {
    resp.set_payload(payload);
  }
  absl::StatusOr<std::string> frame =
      EncodeFrame(stream_id, kResponse, 0, resp.SerializeAsString());
  if (!frame.ok()) {
    // The handler produced an oversized response: tell the caller instead.
    ::ttrpc::Response err;
    err.mutable_status()->set_code(static_cast<int32_t>(absl::StatusCode::kResourceExhausted));
    err.mutable_status()->set_message(std::string(frame.status().message()));
    frame = EncodeFrame(stream_id, kResponse, 0, err.SerializeAsString());
  }
  (void)out_->Write(*frame);
}

void Server::OnData(std::string_view data) {
  if (broken_) return;
  decoder_.Feed(data);
  while (std::optional<Frame> f = decoder_.Next()) {
    if (f->oversized) {
      Reply(f->stream_id,
            absl::ResourceExhaustedError("message length " + std::to_string(f->announced_length) +
                                         " exceeds maximum message size of " +
                                         std::to_string(kMaxMessageSize)),
            "");
      continue;
    }
    if (f->type != kRequest) continue;  // unary server: streams/data are not supported
    if (f->stream_id % 2 == 0 || f->stream_id <= last_stream_id_) {
      Reply(f->stream_id,
            absl::InvalidArgumentError("StreamID " + std::to_string(f->stream_id) +
                                       " must be odd and greater than " +
                                       std::to_string(last_stream_id_)),
            "");
      continue;
    }
    last_stream_id_ = f->stream_id;
    {
      std::lock_guard<std::mutex> l(mu_);
      queue_.push_back(std::move(*f));
    }
    cv_.notify_one();
  }
}

void Server::OnClosed() {
  // Pending requests are pointless once nobody can read the answers.
  std::lock_guard<std::mutex> l(mu_);
  queue_.clear();
}

void Server::WorkerLoop() {
  for (;;) {
    Frame f;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [this] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      f = std::move(queue_.front());
      queue_.pop_front();
    }
    ::ttrpc::Request req;
    if (!req.ParseFromString(f.payload)) {
      Reply(f.stream_id, absl::InvalidArgumentError("cannot decode ttrpc request"), "");
      continue;
    }
    absl::Time deadline = absl::InfiniteFuture();
    if (req.timeout_nano() > 0) deadline = absl::Now() + absl::Nanoseconds(req.timeout_nano());
    auto svc_known = methods_.lower_bound({req.service(), ""});
    bool have_service = svc_known != methods_.end() && svc_known->first.first == req.service();
    if (!have_service) {
      Reply(f.stream_id, absl::UnimplementedError("service " + req.service()), "");
      continue;
    }
    auto it = methods_.find({req.service(), req.method()});
    if (it == methods_.end()) {
      Reply(f.stream_id, absl::UnimplementedError("method " + req.method()), "");
      continue;
    }
    absl::StatusOr<std::string> out = it->second(req.payload(), deadline);
    if (out.ok()) {
      Reply(f.stream_id, absl::OkStatus(), *out);
    } else {
      Reply(f.stream_id, out.status(), "");
    }
  }
}

// ---------------------------------------------------------------- Client

Client::Client(ByteStream* out) : out_(out) {}

Client::~Client() { OnClosed(); }

bool Client::closed() {
  std::lock_guard<std::mutex> l(mu_);
  return closed_;
}

absl::StatusOr<std::string> Client::Call(const std::string& service, const std::string& method,
                                         const std::string& payload, absl::Duration timeout) {
  ::ttrpc::Request req;
  req.set_service(service);
  req.set_method(method);
  req.set_payload(payload);
  if (timeout != absl::InfiniteDuration()) req.set_timeout_nano(absl::ToInt64Nanoseconds(timeout));
  auto p = std::make_shared<Pending>();
  uint32_t id;
  absl::Status wst;
  {
    // Ids must reach the wire in increasing order (the server rejects a smaller id than the
    // last one), so allocating the id and writing the frame happen under one lock.
    std::lock_guard<std::mutex> send(send_mu_);
    {
      std::lock_guard<std::mutex> l(mu_);
      if (closed_) return absl::UnavailableError("ttrpc: connection closed");
      id = next_id_;
      next_id_ += 2;
      pending_[id] = p;
    }
    absl::StatusOr<std::string> frame = EncodeFrame(id, kRequest, 0, req.SerializeAsString());
    wst = frame.ok() ? out_->Write(*frame) : frame.status();
  }
  std::unique_lock<std::mutex> l(mu_);
  if (!wst.ok()) {
    pending_.erase(id);
    if (wst.code() == absl::StatusCode::kResourceExhausted) return wst;
    return absl::UnavailableError("ttrpc: write failed: " + wst.ToString());
  }
  bool done = true;
  if (timeout == absl::InfiniteDuration()) {
    cv_.wait(l, [&] { return p->done; });
  } else {
    done = cv_.wait_for(l, absl::ToChronoNanoseconds(timeout), [&] { return p->done; });
  }
  pending_.erase(id);
  if (!done) {
    return absl::DeadlineExceededError("ttrpc " + service + "/" + method + ": no response within " +
                                       absl::FormatDuration(timeout));
  }
  if (!p->status.ok()) return p->status;
  return std::move(p->payload);
}

void Client::OnData(std::string_view data) {
  decoder_.Feed(data);
  while (std::optional<Frame> f = decoder_.Next()) {
    if (f->type != kResponse) continue;
    std::shared_ptr<Pending> p;
    {
      std::lock_guard<std::mutex> l(mu_);
      auto it = pending_.find(f->stream_id);
      if (it == pending_.end()) continue;  // late answer to a call that timed out
      p = it->second;
      if (f->oversized) {
        p->status = absl::ResourceExhaustedError("ttrpc response exceeds 4 MiB");
      } else {
        ::ttrpc::Response resp;
        if (!resp.ParseFromString(f->payload)) {
          p->status = absl::InternalError("cannot decode ttrpc response");
        } else {
          p->status = FromWire(resp.status().code(), resp.status().message());
          p->payload = std::move(*resp.mutable_payload());
        }
      }
      p->done = true;
    }
    cv_.notify_all();
  }
}

void Client::OnClosed() {
  {
    std::lock_guard<std::mutex> l(mu_);
    closed_ = true;
    for (auto& [id, p] : pending_) {
      if (!p->done) {
        p->done = true;
        p->status = absl::UnavailableError("ttrpc: connection closed");
      }
    }
  }
  cv_.notify_all();
}

}  // namespace ttrpc

// ---------------------------------------------------------------- FdStream

FdStream::~FdStream() {
  Close();
  if (reader_.joinable()) reader_.join();
}

void FdStream::StartReader(ByteSink* sink) {
  reader_ = std::thread([this, sink] {
    char buf[16384];
    for (;;) {
      ssize_t n = ::read(fd_.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      sink->OnData(std::string_view(buf, static_cast<size_t>(n)));
    }
    sink->OnClosed();
  });
}

absl::Status FdStream::Write(std::string_view data) {
  std::lock_guard<std::mutex> l(write_mu_);
  while (!data.empty()) {
    ssize_t n = ::send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("write to ttrpc connection");
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

void FdStream::Close() {
  // shutdown() wakes the reader blocked in read(); the fd is closed by the destructor so the
  // reader never races with fd reuse.
  if (fd_.valid()) ::shutdown(fd_.get(), SHUT_RDWR);
}

}  // namespace knd::nri
