#include "nri/mux.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

namespace knd::nri {
namespace {

std::vector<MuxFrame> DecodeAll(MuxDecoder& d) {
  std::vector<MuxFrame> out;
  for (;;) {
    auto f = d.Next();
    EXPECT_TRUE(f.ok());
    if (!f.ok() || !f->has_value()) return out;
    out.push_back(std::move(**f));
  }
}

TEST(MuxFraming, LargeMessageIsSplitIntoFramesOfAtMost4096) {
  std::string msg(10 * 1024, '\0');
  for (size_t i = 0; i < msg.size(); ++i) msg[i] = static_cast<char>(i * 7);
  std::string wire = EncodeMuxFrames(2, msg);
  MuxDecoder d;
  d.Feed(wire);
  std::vector<MuxFrame> frames = DecodeAll(d);
  ASSERT_EQ(frames.size(), 3u);
  std::string joined;
  for (const MuxFrame& f : frames) {
    EXPECT_EQ(f.conn_id, 2u);
    EXPECT_LE(f.payload.size(), kMuxMaxWriteChunk);
    joined += f.payload;
  }
  EXPECT_EQ(frames[0].payload.size(), 4096u);
  EXPECT_EQ(frames[2].payload.size(), 10u * 1024 - 8192);
  EXPECT_EQ(joined, msg);
  // Header: ConnID then length, both big-endian.
  EXPECT_EQ(wire.substr(0, 8), std::string("\x00\x00\x00\x02\x00\x00\x10\x00", 8));
}

TEST(MuxFraming, EverySplitPointTwoConnsInterleaved) {
  std::string wire =
      EncodeMuxFrames(1, "abc") + EncodeMuxFrames(2, "defgh") + EncodeMuxFrames(1, "ij");
  for (size_t i = 0; i <= wire.size(); ++i) {
    MuxDecoder d;
    d.Feed(std::string_view(wire).substr(0, i));
    std::vector<MuxFrame> got = DecodeAll(d);
    d.Feed(std::string_view(wire).substr(i));
    for (MuxFrame& f : DecodeAll(d)) got.push_back(std::move(f));
    SCOPED_TRACE("split at " + std::to_string(i));
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got[0].conn_id, 1u);
    EXPECT_EQ(got[0].payload, "abc");
    EXPECT_EQ(got[1].conn_id, 2u);
    EXPECT_EQ(got[1].payload, "defgh");
    EXPECT_EQ(got[2].conn_id, 1u);
    EXPECT_EQ(got[2].payload, "ij");
  }
}

TEST(MuxFraming, AcceptsFramesUpTo4MiBPlus10AndRejectsLarger) {
  std::string big(kMuxMaxReadFrame, 'b');
  std::string wire("\x00\x00\x00\x01", 4);
  uint32_t len = static_cast<uint32_t>(big.size());
  for (int s = 24; s >= 0; s -= 8) wire.push_back(static_cast<char>(len >> s));
  MuxDecoder d;
  d.Feed(wire + big);
  auto f = d.Next();
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(f->has_value());
  EXPECT_EQ((*f)->payload.size(), kMuxMaxReadFrame);

  std::string bad("\x00\x00\x00\x01", 4);
  len = kMuxMaxReadFrame + 1;
  for (int s = 24; s >= 0; s -= 8) bad.push_back(static_cast<char>(len >> s));
  MuxDecoder d2;
  d2.Feed(bad);
  EXPECT_EQ(d2.Next().status().code(), absl::StatusCode::kResourceExhausted);
}

class Collect : public ByteSink {
 public:
  void OnData(std::string_view d) override {
    std::lock_guard<std::mutex> l(mu);
    data.append(d);
    cv.notify_all();
  }
  void OnClosed() override {
    std::lock_guard<std::mutex> l(mu);
    closed = true;
    cv.notify_all();
  }
  std::string WaitFor(size_t n) {
    std::unique_lock<std::mutex> l(mu);
    cv.wait_for(l, std::chrono::seconds(5), [&] { return data.size() >= n || closed; });
    return data;
  }
  std::mutex mu;
  std::condition_variable cv;
  std::string data;
  bool closed = false;
};

TEST(MuxTrunk, DemuxesPerConnAndDropsUnopened) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd raw(sv[0]);
  Collect c1, c2;
  {
    Mux mux{UniqueFd(sv[1])};
    mux.Open(1);
    mux.Open(2);
    mux.Attach(1, &c1);
    mux.Attach(2, &c2);
    mux.Start();
    std::string wire = EncodeMuxFrames(1, "one-") + EncodeMuxFrames(7, "lost") +
                       EncodeMuxFrames(2, "two") + EncodeMuxFrames(1, "more");
    // Dribble the bytes so frames straddle reads.
    for (size_t i = 0; i < wire.size(); i += 5) {
      ASSERT_GT(::write(raw.get(), wire.data() + i, std::min<size_t>(5, wire.size() - i)), 0);
    }
    EXPECT_EQ(c1.WaitFor(8), "one-more");
    EXPECT_EQ(c2.WaitFor(3), "two");
    raw.Reset();
    EXPECT_TRUE(mux.Wait(absl::Seconds(5)));
  }
  EXPECT_TRUE(c1.closed);
  EXPECT_TRUE(c2.closed);
}

TEST(MuxTrunk, WritesAreFramedAtMost4096) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd raw(sv[0]);
  Mux mux{UniqueFd(sv[1])};
  ByteStream* s2 = mux.Open(2);
  mux.Start();
  std::string msg(10 * 1024 + 3, 'q');
  ASSERT_TRUE(s2->Write(msg).ok());
  MuxDecoder d;
  std::string got;
  std::vector<size_t> sizes;
  char buf[8192];
  while (got.size() < msg.size()) {
    ssize_t n = ::read(raw.get(), buf, sizeof buf);
    ASSERT_GT(n, 0);
    d.Feed(std::string_view(buf, static_cast<size_t>(n)));
    for (MuxFrame& f : DecodeAll(d)) {
      EXPECT_EQ(f.conn_id, 2u);
      sizes.push_back(f.payload.size());
      got += f.payload;
    }
  }
  EXPECT_EQ(got, msg);
  EXPECT_EQ(sizes, (std::vector<size_t>{4096, 4096, 2051}));
}

// ttrpc client on one trunk end talks to a ttrpc server on the other, over ConnID 2, while
// ConnID 1 carries the opposite direction: the NRI layout.
TEST(MuxTrunk, TtrpcBothDirections) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  auto plugin = std::make_unique<Mux>(UniqueFd(sv[0]));
  auto runtime = std::make_unique<Mux>(UniqueFd(sv[1]));
  ttrpc::Server plugin_srv(plugin->Open(kPluginServiceConn));
  ttrpc::Client plugin_cli(plugin->Open(kRuntimeServiceConn));
  ttrpc::Server runtime_srv(runtime->Open(kRuntimeServiceConn));
  ttrpc::Client runtime_cli(runtime->Open(kPluginServiceConn));
  plugin->Attach(kPluginServiceConn, &plugin_srv);
  plugin->Attach(kRuntimeServiceConn, &plugin_cli);
  runtime->Attach(kRuntimeServiceConn, &runtime_srv);
  runtime->Attach(kPluginServiceConn, &runtime_cli);
  plugin_srv.Register("P", "M", [](const std::string& p, absl::Time) {
    return absl::StatusOr<std::string>("plugin:" + p);
  });
  runtime_srv.Register("R", "M", [](const std::string& p, absl::Time) {
    return absl::StatusOr<std::string>("runtime:" + std::to_string(p.size()));
  });
  plugin->Start();
  runtime->Start();
  absl::StatusOr<std::string> r1 =
      plugin_cli.Call("R", "M", std::string(20000, 'x'), absl::Seconds(5));
  ASSERT_TRUE(r1.ok()) << r1.status();
  EXPECT_EQ(*r1, "runtime:20000");
  absl::StatusOr<std::string> r2 = runtime_cli.Call("P", "M", "hi", absl::Seconds(5));
  ASSERT_TRUE(r2.ok()) << r2.status();
  EXPECT_EQ(*r2, "plugin:hi");
  // The plugin service is not on the runtime's side.
  absl::StatusOr<std::string> r3 = plugin_cli.Call("P", "M", "", absl::Seconds(5));
  EXPECT_EQ(r3.status().code(), absl::StatusCode::kUnimplemented);
  plugin->Close();
  runtime->Close();
  plugin_srv.Shutdown();
  runtime_srv.Shutdown();
  plugin.reset();
  runtime.reset();
}

}  // namespace
}  // namespace knd::nri
