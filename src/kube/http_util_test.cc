#include "kube/http_util.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace knd::kube::internal {
namespace {

using ::testing::HasSubstr;

TEST(StatusFromHttp, MapsCodesAndUsesApiMessage) {
  const std::string nf =
      R"({"kind":"Status","apiVersion":"v1","status":"Failure","message":"resourceslices \"x\" not found","reason":"NotFound","code":404})";
  absl::Status st = StatusFromHttp(404, nf, "GET /x");
  EXPECT_TRUE(absl::IsNotFound(st));
  EXPECT_THAT(std::string(st.message()), HasSubstr("HTTP 404"));
  EXPECT_THAT(std::string(st.message()), HasSubstr("resourceslices \"x\" not found"));
  EXPECT_THAT(std::string(st.message()), HasSubstr("GET /x"));

  // Found by kube_api_fuzz: a body whose "kind" is not a string (a proxy's own JSON) is not a
  // Status; it used to throw from nlohmann's value() and terminate the driver.
  st = StatusFromHttp(409, R"({"kind": 409, "reason": "Conflict"})", "PATCH /p");
  EXPECT_TRUE(absl::IsAborted(st)) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr(R"({"kind": 409)"));

  EXPECT_TRUE(StatusFromHttp(200, "{}", "w").ok());
  EXPECT_TRUE(StatusFromHttp(201, "{}", "w").ok());
  EXPECT_TRUE(
      absl::IsAborted(StatusFromHttp(409, R"({"kind":"Status","reason":"Conflict"})", "w")));
  EXPECT_TRUE(absl::IsAlreadyExists(
      StatusFromHttp(409, R"({"kind":"Status","reason":"AlreadyExists"})", "w")));
  EXPECT_TRUE(absl::IsOutOfRange(StatusFromHttp(410, "", "w")));
  EXPECT_TRUE(absl::IsUnauthenticated(StatusFromHttp(401, "", "w")));
  EXPECT_TRUE(absl::IsPermissionDenied(StatusFromHttp(403, "", "w")));
  EXPECT_TRUE(absl::IsInvalidArgument(StatusFromHttp(422, "", "w")));
  EXPECT_TRUE(absl::IsInvalidArgument(StatusFromHttp(400, "", "w")));
  EXPECT_TRUE(absl::IsResourceExhausted(StatusFromHttp(429, "", "w")));
  EXPECT_TRUE(absl::IsUnavailable(StatusFromHttp(503, "", "w")));
  EXPECT_TRUE(absl::IsUnavailable(StatusFromHttp(500, "", "w")));
  // A body that is not a Status still shows up (trimmed) in the message.
  st = StatusFromHttp(502, "bad gateway\n", "w");
  EXPECT_THAT(std::string(st.message()), HasSubstr("bad gateway"));
}

TEST(WatchLineDecoder, EventsSplitAcrossChunks) {
  WatchLineDecoder d;
  std::vector<WatchEvent> got;
  auto cb = [&](const WatchEvent& e) {
    got.push_back(e);
    return true;
  };
  std::string a = R"({"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":"5"}}})";
  std::string b = R"({"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"7"}}})";
  std::string all = a + "\n" + b + "\n";
  // Feed byte by byte: no event until its newline arrives.
  for (size_t i = 0; i < all.size(); ++i) {
    auto r = d.Feed(std::string_view(&all[i], 1), cb);
    ASSERT_TRUE(r.ok()) << r.status();
    if (i < a.size()) {
      EXPECT_TRUE(got.empty());
    }
  }
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].type, "ADDED");
  EXPECT_EQ(got[0].object["metadata"]["name"], "a");
  EXPECT_EQ(got[1].type, "BOOKMARK");
  EXPECT_EQ(got[1].object["metadata"]["resourceVersion"], "7");
  EXPECT_EQ(d.pending(), 0u);
}

TEST(WatchLineDecoder, SeveralEventsInOneChunkAndStop) {
  WatchLineDecoder d;
  int n = 0;
  auto r = d.Feed(R"({"type":"ADDED","object":{}})"
                  "\n"
                  R"({"type":"DELETED","object":{}})"
                  "\n"
                  R"({"type":"MODIFIED",)",
                  [&](const WatchEvent&) { return ++n < 1; });
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, WatchLineDecoder::Result::kStopped);
  EXPECT_EQ(n, 1);
}

TEST(WatchLineDecoder, Error410IsOutOfRange) {
  WatchLineDecoder d;
  auto r = d.Feed(
      R"j({"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old resource version: 1 (5)"}})j"
      "\n",
      [](const WatchEvent&) { return true; });
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsOutOfRange(r.status())) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("too old resource version"));
}

TEST(WatchLineDecoder, ErrorWithOtherCodeAndMalformedLine) {
  WatchLineDecoder d;
  auto r = d.Feed(R"({"type":"ERROR","object":{"kind":"Status","code":500,"message":"boom"}})"
                  "\n",
                  [](const WatchEvent&) { return true; });
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsUnavailable(r.status()));
  WatchLineDecoder d2;
  r = d2.Feed("not json\n", [](const WatchEvent&) { return true; });
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("malformed"));
}

TEST(WatchLineDecoder, AnEndlessLineFailsAtTheLimitAndIsDropped) {
  WatchLineDecoder d(1024);
  const std::string chunk(100, 'x');  // never a newline
  int events = 0;
  auto count = [&](const WatchEvent&) { return ++events > 0; };
  absl::StatusOr<WatchLineDecoder::Result> r = WatchLineDecoder::Result::kContinue;
  int fed = 0;
  for (; fed < 1000 && r.ok(); ++fed) {
    r = d.Feed(chunk, count);
    EXPECT_LE(d.pending(), 1024u) << "the decoder holds more than its limit";
  }
  ASSERT_FALSE(r.ok()) << "an endless line was buffered without limit";
  EXPECT_EQ(fed, 11) << "fails with the first chunk past 1024 bytes";
  EXPECT_TRUE(absl::IsResourceExhausted(r.status())) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("limit of 1024 bytes"));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("after 1100 bytes"));
  EXPECT_TRUE(d.overflowed());
  EXPECT_EQ(d.pending(), 0u) << "the partial line is dropped";
  EXPECT_EQ(events, 0);
}

TEST(WatchLineDecoder, TheLimitIsPerLineNotPerChunk) {
  // A line of exactly the limit passes, one byte more fails, also when it ends in the chunk.
  const std::string ev = R"({"type":"ADDED","object":{"metadata":{"name":"a"}}})";
  WatchLineDecoder exact(ev.size());
  int n = 0;
  auto count = [&](const WatchEvent&) { return ++n > 0; };
  // Split: the limit counts the bytes buffered from earlier chunks too.
  ASSERT_TRUE(exact.Feed(ev.substr(0, 10), count).ok());
  ASSERT_TRUE(exact.Feed(ev.substr(10) + "\n", count).ok());
  EXPECT_EQ(n, 1);
  WatchLineDecoder short_by_one(ev.size() - 1);
  ASSERT_TRUE(short_by_one.Feed(ev.substr(0, 10), count).ok());
  auto r = short_by_one.Feed(ev.substr(10) + "\n", count);
  EXPECT_TRUE(absl::IsResourceExhausted(r.status())) << r.status();
  EXPECT_EQ(n, 1);
  // One chunk far larger than the limit, made of short lines, is fine and copies nothing.
  std::string many;
  for (int i = 0; i < 100; ++i) many += ev + "\n";
  WatchLineDecoder d(ev.size());
  auto all = d.Feed(many, count);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(n, 101);
  EXPECT_EQ(d.pending(), 0u);
}

TEST(TokenBucket, BurstThenPaced) {
  TokenBucket b(10, 3);                                           // 10/s, burst 3
  auto t0 = TokenBucket::Clock::now() + std::chrono::seconds(1);  // after refill, full
  EXPECT_EQ(b.Reserve(t0), TokenBucket::Clock::duration::zero());
  EXPECT_EQ(b.Reserve(t0), TokenBucket::Clock::duration::zero());
  EXPECT_EQ(b.Reserve(t0), TokenBucket::Clock::duration::zero());
  // Fourth and fifth callers queue: 100 ms and 200 ms.
  auto w4 = std::chrono::duration_cast<std::chrono::milliseconds>(b.Reserve(t0));
  auto w5 = std::chrono::duration_cast<std::chrono::milliseconds>(b.Reserve(t0));
  EXPECT_NEAR(w4.count(), 100, 2);
  EXPECT_NEAR(w5.count(), 200, 2);
  // Much later the bucket is full again but never holds more than `burst`.
  auto t1 = t0 + std::chrono::seconds(100);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(b.Reserve(t1), TokenBucket::Clock::duration::zero());
  EXPECT_GT(b.Reserve(t1), TokenBucket::Clock::duration::zero());
}

TEST(TokenBucket, ZeroQpsDisables) {
  TokenBucket b(0, 1);
  auto now = TokenBucket::Clock::now();
  for (int i = 0; i < 100; ++i) EXPECT_EQ(b.Reserve(now), TokenBucket::Clock::duration::zero());
}

TEST(Backoff, GrowsJittersAndIsCapped) {
  using std::chrono::milliseconds;
  const milliseconds base(100), cap(1000);
  EXPECT_EQ(BackoffDelay(0, base, cap, 0.0), milliseconds(50));
  EXPECT_EQ(BackoffDelay(0, base, cap, 1.0), milliseconds(100));
  EXPECT_EQ(BackoffDelay(2, base, cap, 1.0), milliseconds(400));
  for (int attempt = 0; attempt < 64; ++attempt) {
    for (double r : {0.0, 0.3, 0.99}) {
      auto d = BackoffDelay(attempt, base, cap, r);
      EXPECT_LE(d, cap);
      EXPECT_GE(d, milliseconds(50));
    }
  }
  EXPECT_GE(BackoffDelay(40, base, cap, 0.0), milliseconds(500));
}

TEST(RetryAfter, DeltaSecondsOnly) {
  EXPECT_EQ(ParseRetryAfter(" 3\r\n"), std::chrono::seconds(3));
  EXPECT_EQ(ParseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT"), std::nullopt);
  EXPECT_EQ(ParseRetryAfter(""), std::nullopt);
}

TEST(BuildQuery, EncodesSelectorsAndWatchParams) {
  ListOptions o;
  EXPECT_EQ(BuildQuery(o, false), "");
  o.field_selector = "spec.nodeName=n1,spec.driver=knd.k8s.cni.cncf.io";
  o.resource_version = "42";
  o.timeout_seconds = 30;
  EXPECT_EQ(BuildQuery(o, false),
            "?fieldSelector=spec.nodeName%3Dn1%2Cspec.driver%3Dknd.k8s.cni.cncf.io"
            "&resourceVersion=42");
  EXPECT_EQ(BuildQuery(o, true),
            "?watch=1&fieldSelector=spec.nodeName%3Dn1%2Cspec.driver%3Dknd.k8s.cni.cncf.io"
            "&resourceVersion=42&allowWatchBookmarks=true&timeoutSeconds=30");
}

TEST(MetadataString, ReadsStringsOnly) {
  nlohmann::json pod = {{"metadata", {{"name", "p"}, {"generation", 3}}}};
  EXPECT_EQ(MetadataString(pod, "name"), "p");
  EXPECT_EQ(MetadataString(pod, "generation"), "") << "not a string";
  EXPECT_EQ(MetadataString(pod, "uid"), "");
  EXPECT_EQ(MetadataString(nlohmann::json::array(), "name"), "");
  EXPECT_EQ(MetadataString({{"metadata", "x"}}, "name"), "");
}

}  // namespace
}  // namespace knd::kube::internal
