#include "nri/ttrpc.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <atomic>
#include <thread>

#include "ttrpc/request.pb.h"

namespace knd::nri::ttrpc {
namespace {

// Collects everything written; lets a test wait for a number of response frames.
class CaptureStream : public ByteStream {
 public:
  absl::Status Write(std::string_view data) override {
    std::lock_guard<std::mutex> l(mu_);
    dec_.Feed(data);
    while (auto f = dec_.Next()) frames_.push_back(std::move(*f));
    cv_.notify_all();
    return absl::OkStatus();
  }
  void Close() override {}
  std::vector<Frame> WaitFrames(size_t n) {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait_for(l, std::chrono::seconds(5), [&] { return frames_.size() >= n; });
    return frames_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  FrameDecoder dec_;
  std::vector<Frame> frames_;
};

std::string RequestFrame(uint32_t id, const std::string& service, const std::string& method,
                         const std::string& payload = "") {
  ::ttrpc::Request req;
  req.set_service(service);
  req.set_method(method);
  req.set_payload(payload);
  return *EncodeFrame(id, kRequest, 0, req.SerializeAsString());
}

::ttrpc::Response DecodeResponse(const Frame& f) {
  ::ttrpc::Response r;
  EXPECT_TRUE(r.ParseFromString(f.payload));
  return r;
}

TEST(TtrpcFrame, HeaderLayoutAndRoundTrip) {
  absl::StatusOr<std::string> wire = EncodeFrame(0x01020305, kResponse, 0x02, "hello");
  ASSERT_TRUE(wire.ok());
  ASSERT_EQ(wire->size(), 15u);
  // 4-byte BE length, 4-byte BE stream id, type, flags.
  EXPECT_EQ(wire->substr(0, 10), std::string("\x00\x00\x00\x05\x01\x02\x03\x05\x02\x02", 10));
  FrameDecoder d;
  d.Feed(*wire);
  std::optional<Frame> f = d.Next();
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->stream_id, 0x01020305u);
  EXPECT_EQ(f->type, kResponse);
  EXPECT_EQ(f->flags, 0x02);
  EXPECT_EQ(f->payload, "hello");
  EXPECT_FALSE(d.Next().has_value());
}

std::string ThreeFrames() {
  return *EncodeFrame(1, kRequest, 0, "first") + *EncodeFrame(3, kRequest, 0, "") +
         *EncodeFrame(5, kRequest, 0, std::string(300, 'x'));
}

void ExpectThree(const std::vector<Frame>& got) {
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].stream_id, 1u);
  EXPECT_EQ(got[0].payload, "first");
  EXPECT_EQ(got[1].stream_id, 3u);
  EXPECT_EQ(got[1].payload, "");
  EXPECT_EQ(got[2].stream_id, 5u);
  EXPECT_EQ(got[2].payload, std::string(300, 'x'));
}

TEST(TtrpcFrame, ByteByByte) {
  std::string wire = ThreeFrames();
  FrameDecoder d;
  std::vector<Frame> got;
  for (char c : wire) {
    d.Feed(std::string_view(&c, 1));
    while (auto f = d.Next()) got.push_back(std::move(*f));
  }
  ExpectThree(got);
}

TEST(TtrpcFrame, EverySplitPoint) {
  std::string wire = ThreeFrames();
  for (size_t i = 0; i <= wire.size(); ++i) {
    FrameDecoder d;
    std::vector<Frame> got;
    d.Feed(std::string_view(wire).substr(0, i));
    while (auto f = d.Next()) got.push_back(std::move(*f));
    d.Feed(std::string_view(wire).substr(i));
    while (auto f = d.Next()) got.push_back(std::move(*f));
    SCOPED_TRACE("split at " + std::to_string(i));
    ExpectThree(got);
  }
}

TEST(TtrpcFrame, SeveralFramesInOneChunk) {
  FrameDecoder d;
  d.Feed(ThreeFrames());
  std::vector<Frame> got;
  while (auto f = d.Next()) got.push_back(std::move(*f));
  ExpectThree(got);
}

TEST(TtrpcFrame, OversizeEncodeIsResourceExhausted) {
  absl::StatusOr<std::string> wire =
      EncodeFrame(1, kRequest, 0, std::string(kMaxMessageSize + 1, 'a'));
  EXPECT_EQ(wire.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(EncodeFrame(1, kRequest, 0, std::string(kMaxMessageSize, 'a')).ok());
}

TEST(TtrpcFrame, OversizeDecodeIsSkippedAndReported) {
  std::string hdr = *EncodeFrame(7, kRequest, 0, "");
  uint32_t len = kMaxMessageSize + 1;
  hdr[0] = static_cast<char>(len >> 24);
  hdr[1] = static_cast<char>(len >> 16);
  hdr[2] = static_cast<char>(len >> 8);
  hdr[3] = static_cast<char>(len);
  FrameDecoder d;
  d.Feed(hdr);
  std::optional<Frame> f = d.Next();
  ASSERT_TRUE(f.has_value());
  EXPECT_TRUE(f->oversized);
  EXPECT_EQ(f->stream_id, 7u);
  // The oversized payload arrives in pieces and is discarded; the next frame decodes.
  std::string junk(len, 'j');
  for (size_t off = 0; off < junk.size(); off += 1 << 20) {
    d.Feed(std::string_view(junk).substr(off, 1 << 20));
    EXPECT_FALSE(d.Next().has_value());
  }
  d.Feed(*EncodeFrame(9, kRequest, 0, "after"));
  f = d.Next();
  ASSERT_TRUE(f.has_value());
  EXPECT_FALSE(f->oversized);
  EXPECT_EQ(f->stream_id, 9u);
  EXPECT_EQ(f->payload, "after");
}

class TtrpcServerTest : public ::testing::Test {
 protected:
  TtrpcServerTest() : server_(&out_) {
    server_.Register("svc.A", "Echo", [](const std::string& p, absl::Time) {
      return absl::StatusOr<std::string>("echo:" + p);
    });
    server_.Register("svc.A", "Fail", [](const std::string&, absl::Time) {
      return absl::StatusOr<std::string>(absl::PermissionDeniedError("nope"));
    });
  }
  CaptureStream out_;
  Server server_;
};

TEST_F(TtrpcServerTest, DispatchesAndEchoes) {
  server_.OnData(RequestFrame(1, "svc.A", "Echo", "x"));
  auto frames = out_.WaitFrames(1);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].type, kResponse);
  EXPECT_EQ(frames[0].stream_id, 1u);
  ::ttrpc::Response r = DecodeResponse(frames[0]);
  EXPECT_EQ(r.status().code(), 0);
  EXPECT_EQ(r.payload(), "echo:x");
}

TEST_F(TtrpcServerTest, UnknownServiceAndMethodAreUnimplemented) {
  server_.OnData(RequestFrame(1, "svc.Nope", "Echo") + RequestFrame(3, "svc.A", "Nope"));
  auto frames = out_.WaitFrames(2);
  ASSERT_EQ(frames.size(), 2u);
  ::ttrpc::Response r1 = DecodeResponse(frames[0]);
  EXPECT_EQ(r1.status().code(), 12);
  EXPECT_EQ(r1.status().message(), "service svc.Nope");
  ::ttrpc::Response r2 = DecodeResponse(frames[1]);
  EXPECT_EQ(r2.status().code(), 12);
  EXPECT_EQ(r2.status().message(), "method Nope");
}

TEST_F(TtrpcServerTest, HandlerErrorBecomesStatus) {
  server_.OnData(RequestFrame(1, "svc.A", "Fail"));
  auto frames = out_.WaitFrames(1);
  ASSERT_EQ(frames.size(), 1u);
  ::ttrpc::Response r = DecodeResponse(frames[0]);
  EXPECT_EQ(r.status().code(), static_cast<int>(absl::StatusCode::kPermissionDenied));
  EXPECT_EQ(r.status().message(), "nope");
  EXPECT_TRUE(r.payload().empty());
}

TEST_F(TtrpcServerTest, RejectsEvenAndNonIncreasingStreamIds) {
  server_.OnData(RequestFrame(2, "svc.A", "Echo", "even"));
  server_.OnData(RequestFrame(5, "svc.A", "Echo", "ok"));
  server_.OnData(RequestFrame(3, "svc.A", "Echo", "backwards"));
  server_.OnData(RequestFrame(5, "svc.A", "Echo", "repeat"));
  auto frames = out_.WaitFrames(4);
  ASSERT_EQ(frames.size(), 4u);
  std::map<std::string, int> codes;  // by payload or id
  int invalid = 0, ok = 0;
  for (const Frame& f : frames) {
    ::ttrpc::Response r = DecodeResponse(f);
    if (r.status().code() == static_cast<int>(absl::StatusCode::kInvalidArgument)) ++invalid;
    if (r.status().code() == 0) {
      ++ok;
      EXPECT_EQ(r.payload(), "echo:ok");
    }
  }
  EXPECT_EQ(invalid, 3);
  EXPECT_EQ(ok, 1);
}

TEST_F(TtrpcServerTest, OversizedRequestGetsResourceExhausted) {
  std::string hdr = RequestFrame(1, "svc.A", "Echo").substr(0, kHeaderSize);
  uint32_t len = kMaxMessageSize + 10;
  hdr[0] = static_cast<char>(len >> 24);
  hdr[1] = static_cast<char>(len >> 16);
  hdr[2] = static_cast<char>(len >> 8);
  hdr[3] = static_cast<char>(len);
  server_.OnData(hdr);
  server_.OnData(std::string(len, 'z'));
  server_.OnData(RequestFrame(3, "svc.A", "Echo", "next"));
  auto frames = out_.WaitFrames(2);
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].stream_id, 1u);
  EXPECT_EQ(DecodeResponse(frames[0]).status().code(),
            static_cast<int>(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(DecodeResponse(frames[1]).payload(), "echo:next");
}

// A client and a server joined by a socketpair.
class TtrpcPairTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    a_ = std::make_unique<FdStream>(UniqueFd(sv[0]));
    b_ = std::make_unique<FdStream>(UniqueFd(sv[1]));
    client_ = std::make_unique<Client>(a_.get());
    server_ = std::make_unique<Server>(b_.get());
    server_->Register("svc", "Echo", [this](const std::string& p, absl::Time deadline) {
      last_had_deadline_ = deadline != absl::InfiniteFuture();
      return absl::StatusOr<std::string>(p);
    });
    server_->Register("svc", "TooLate", [](const std::string&, absl::Time) {
      return absl::StatusOr<std::string>(absl::DeadlineExceededError("my own budget ran out"));
    });
    server_->Register("svc", "Slow", [](const std::string& p, absl::Time) {
      std::this_thread::sleep_for(std::chrono::milliseconds(400));
      return absl::StatusOr<std::string>(p);
    });
    a_->StartReader(client_.get());
    b_->StartReader(server_.get());
  }
  void TearDown() override {
    a_->Close();
    b_->Close();
    server_->Shutdown();
    a_.reset();  // joins readers before the sinks go
    b_.reset();
  }
  std::atomic<bool> last_had_deadline_{false};
  std::unique_ptr<FdStream> a_, b_;
  std::unique_ptr<Client> client_;
  std::unique_ptr<Server> server_;
};

TEST_F(TtrpcPairTest, UnaryCallRoundTripWithTimeout) {
  absl::StatusOr<std::string> r = client_->Call("svc", "Echo", "ping", absl::Seconds(5));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "ping");
  EXPECT_TRUE(last_had_deadline_);
}

TEST_F(TtrpcPairTest, ConcurrentCallsMatchedByStreamId) {
  std::vector<std::thread> ts;
  std::atomic<int> good{0};
  for (int i = 0; i < 8; ++i) {
    ts.emplace_back([&, i] {
      std::string msg = "m" + std::to_string(i) + std::string(i * 1000, 'p');
      absl::StatusOr<std::string> r = client_->Call("svc", "Echo", msg, absl::Seconds(5));
      if (r.ok() && *r == msg) ++good;
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(good, 8);
}

TEST_F(TtrpcPairTest, RemoteErrorsKeepTheirCode) {
  absl::StatusOr<std::string> r = client_->Call("svc", "Missing", "", absl::Seconds(5));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(r.status().message(), "method Missing");
  EXPECT_TRUE(IsPeerStatus(r.status()));
  // A peer that answers DeadlineExceeded has answered: not to be taken for a missed deadline.
  r = client_->Call("svc", "TooLate", "", absl::Seconds(5));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(r.status().message(), "my own budget ran out");
  EXPECT_TRUE(IsPeerStatus(r.status()));
}

TEST_F(TtrpcPairTest, ClientTimeoutThenLateAnswerIgnored) {
  absl::StatusOr<std::string> r = client_->Call("svc", "Slow", "late", absl::Milliseconds(50));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_FALSE(IsPeerStatus(r.status())) << "no answer came";
  // The late response to the timed-out stream must not be taken for the next call's answer.
  r = client_->Call("svc", "Echo", "fresh", absl::Seconds(5));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "fresh");
}

TEST_F(TtrpcPairTest, ClosedConnectionIsUnavailable) {
  b_->Close();
  absl::StatusOr<std::string> r = client_->Call("svc", "Slow", "x", absl::Seconds(5));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(IsPeerStatus(r.status()));
}

TEST(TtrpcClient, StreamIdsAreOddAndIncreasing) {
  CaptureStream out;
  Client c(&out);
  std::thread t([&] {
    for (int i = 0; i < 3; ++i) (void)c.Call("s", "m", "", absl::Milliseconds(10));
  });
  t.join();
  auto frames = out.WaitFrames(3);
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(frames[0].stream_id, 1u);
  EXPECT_EQ(frames[1].stream_id, 3u);
  EXPECT_EQ(frames[2].stream_id, 5u);
  ::ttrpc::Request req;
  ASSERT_TRUE(req.ParseFromString(frames[0].payload));
  EXPECT_EQ(req.service(), "s");
  EXPECT_EQ(req.method(), "m");
  EXPECT_EQ(req.timeout_nano(), 10'000'000);
}

}  // namespace
}  // namespace knd::nri::ttrpc
