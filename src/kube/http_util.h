// Pieces of the API client that are pure functions or small state machines, split out so that
// unit tests exercise them without a server: HTTP/API-Status -> absl::Status mapping, the
// watch-stream line decoder, the client-side token bucket, retry backoff, query building.
#pragma once

#include <chrono>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "kube/client.h"

namespace knd::kube::internal {

// Maps an HTTP answer to a Status. 2xx -> OK. The message is "<what>: HTTP <code>: <msg>",
// where <msg> is the `message` of a metav1.Status body when the body is one, else a short
// excerpt of the body. 409 with reason AlreadyExists -> AlreadyExists, other 409 -> Aborted.
absl::Status StatusFromHttp(long http_code, std::string_view body, const std::string& what);

// Maps a metav1.Status object (as found in a watch ERROR event) to a Status by its `code`.
absl::Status StatusFromApiStatus(const nlohmann::json& status, const std::string& what);

// Splits a watch response body (one JSON event per line, arriving in arbitrary chunks) into
// events. ERROR events are not delivered: they end the stream with the Status they carry
// (code 410 -> OutOfRange, so the caller relists).
//
// Memory: complete lines are decoded straight from the chunk they arrive in; only an
// incomplete trailing line is copied, and a line longer than `max_line_bytes` (see
// kDefaultWatchMaxEventBytes) fails the stream with ResourceExhausted and is dropped. So one
// decoder never holds more than `max_line_bytes`, whatever the peer sends.
class WatchLineDecoder {
 public:
  enum class Result { kContinue, kStopped };
  explicit WatchLineDecoder(size_t max_line_bytes = kDefaultWatchMaxEventBytes)
      : max_line_(max_line_bytes) {}
  // Feeds `data`; calls `on_event` for each complete line. Returns kStopped once `on_event`
  // returned false, an error for a malformed line, an ERROR event or a line over the limit.
  // After an error or kStopped the rest of `data` is dropped.
  absl::StatusOr<Result> Feed(std::string_view data,
                              const std::function<bool(const WatchEvent&)>& on_event);
  // Bytes of an incomplete trailing line held back for the next Feed.
  size_t pending() const { return buf_.size(); }
  size_t max_line_bytes() const { return max_line_; }
  // Whether a Feed failed for a line over the limit.
  bool overflowed() const { return overflowed_; }

 private:
  // Decodes one complete line (without its '\n'); sets *stop when on_event returned false.
  absl::Status Line(std::string_view line, const std::function<bool(const WatchEvent&)>& on_event,
                    bool* stop);
  // The line being assembled is longer than the limit: drops it and says so.
  absl::Status TooLong(size_t at_least);

  size_t max_line_;
  bool overflowed_ = false;
  std::string buf_;
};

// Client-side rate limiter: `qps` tokens per second, at most `burst` saved up. Thread-safe.
// qps <= 0 disables limiting.
class TokenBucket {
 public:
  using Clock = std::chrono::steady_clock;
  TokenBucket(double qps, int burst);
  // Takes one token; returns how long the caller must wait before using it (0 if available
  // now). Tokens are reserved, so concurrent callers queue up fairly.
  Clock::duration Reserve(Clock::time_point now);
  // Reserve(now) and sleep for the returned time.
  void Acquire();

 private:
  std::mutex mu_;
  double qps_;
  double burst_;
  double tokens_;
  Clock::time_point last_;
};

// Exponential backoff with jitter for retry number `attempt` (0-based): a random value in
// [d/2, d] where d = min(cap, base * 2^attempt). `unit_rand` in [0,1) supplies the jitter.
std::chrono::milliseconds BackoffDelay(int attempt, std::chrono::milliseconds base,
                                       std::chrono::milliseconds cap, double unit_rand);

// Parses a Retry-After header value in delta-seconds form; nullopt if absent or an HTTP date.
std::optional<std::chrono::seconds> ParseRetryAfter(std::string_view value);

// Percent-encodes a query parameter value (RFC 3986 unreserved characters pass through).
std::string UrlEncode(std::string_view s);

// metadata.<field> of an API object as a string; "" when absent or not a string.
std::string MetadataString(const nlohmann::json& obj, const char* field);

// "?fieldSelector=..&labelSelector=..&resourceVersion=.." (+ watch parameters when `watch`).
// Empty string when there is nothing to add.
std::string BuildQuery(const ListOptions& opts, bool watch);

}  // namespace knd::kube::internal
