#include "kube/http_util.h"

#include <algorithm>
#include <cmath>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/text.h"

namespace knd::kube::internal {
namespace {

absl::Status StatusWithCode(long code, const std::string& reason, const std::string& msg) {
  if (code >= 200 && code < 300) return absl::OkStatus();
  switch (code) {
    case 400:
    case 422:
      return absl::InvalidArgumentError(msg);
    case 401:
      return absl::UnauthenticatedError(msg);
    case 403:
      return absl::PermissionDeniedError(msg);
    case 404:
      return absl::NotFoundError(msg);
    case 409:
      if (reason == "AlreadyExists") return absl::AlreadyExistsError(msg);
      return absl::AbortedError(msg);
    case 410:
      return absl::OutOfRangeError(msg);
    case 429:
      return absl::ResourceExhaustedError(msg);
    case 504:
      return absl::DeadlineExceededError(msg);
    default:
      break;
  }
  if (code >= 500) return absl::UnavailableError(msg);
  return absl::UnknownError(msg);
}

bool IsApiStatus(const nlohmann::json& j) { return JsonString(j, "kind") == "Status"; }

}  // namespace

absl::Status StatusFromHttp(long http_code, std::string_view body, const std::string& what) {
  if (http_code >= 200 && http_code < 300) return absl::OkStatus();
  std::string detail;
  std::string reason;
  nlohmann::json j = nlohmann::json::parse(body.begin(), body.end(), nullptr,
                                           /*allow_exceptions=*/false);
  if (IsApiStatus(j)) {
    if (j.contains("message") && j["message"].is_string()) detail = j["message"];
    if (j.contains("reason") && j["reason"].is_string()) reason = j["reason"];
  } else {
    detail = std::string(body.substr(0, 256));
    absl::StripAsciiWhitespace(&detail);
  }
  std::string msg = absl::StrCat(what, ": HTTP ", http_code);
  if (!detail.empty()) absl::StrAppend(&msg, ": ", detail);
  return StatusWithCode(http_code, reason, msg);
}

absl::Status StatusFromApiStatus(const nlohmann::json& status, const std::string& what) {
  long code = 500;
  std::string reason, message;
  if (status.is_object()) {
    if (status.contains("code") && status["code"].is_number_integer()) code = status["code"];
    if (status.contains("reason") && status["reason"].is_string()) reason = status["reason"];
    if (status.contains("message") && status["message"].is_string()) message = status["message"];
  }
  std::string msg = absl::StrCat(what, ": HTTP ", code);
  if (!message.empty()) absl::StrAppend(&msg, ": ", message);
  absl::Status st = StatusWithCode(code, reason, msg);
  // A Status with a 2xx code inside an ERROR event is still an error.
  return st.ok() ? absl::UnknownError(msg) : st;
}

absl::Status WatchLineDecoder::Line(std::string_view line,
                                    const std::function<bool(const WatchEvent&)>& on_event,
                                    bool* stop) {
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
  if (line.empty()) return absl::OkStatus();
  nlohmann::json j = nlohmann::json::parse(line.begin(), line.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    return absl::DataLossError(
        absl::StrCat("watch: malformed event line: ", std::string(line.substr(0, 200))));
  }
  WatchEvent ev;
  ev.type = j["type"];
  if (j.contains("object")) ev.object = std::move(j["object"]);
  if (ev.type == "ERROR") return StatusFromApiStatus(ev.object, "watch ERROR event");
  if (!on_event(ev)) *stop = true;
  return absl::OkStatus();
}

absl::Status WatchLineDecoder::TooLong(size_t at_least) {
  overflowed_ = true;
  buf_.clear();
  buf_.shrink_to_fit();  // give the memory back, not just the length
  return absl::ResourceExhaustedError(absl::StrCat(
      "watch event longer than the limit of ", max_line_,
      " bytes (Kubernetes objects are at most ~1.5 MiB; a broken server or proxy?): dropped "
      "the stream after ",
      at_least, " bytes of one line"));
}

absl::StatusOr<WatchLineDecoder::Result> WatchLineDecoder::Feed(
    std::string_view data, const std::function<bool(const WatchEvent&)>& on_event) {
  while (!data.empty()) {
    const size_t nl = data.find('\n');
    const size_t piece = nl == std::string_view::npos ? data.size() : nl;
    if (buf_.size() + piece > max_line_) return TooLong(buf_.size() + piece);
    if (nl == std::string_view::npos) {
      buf_.append(data);  // an incomplete line: kept for the next chunk
      break;
    }
    std::string_view line = data.substr(0, nl);
    if (!buf_.empty()) {
      buf_.append(line);
      line = buf_;
    }
    data.remove_prefix(nl + 1);
    bool stop = false;
    absl::Status st = Line(line, on_event, &stop);
    buf_.clear();  // after Line(): `line` may point into it
    if (!st.ok()) return st;
    if (stop) return Result::kStopped;
  }
  return Result::kContinue;
}

TokenBucket::TokenBucket(double qps, int burst)
    : qps_(qps), burst_(std::max(1, burst)), tokens_(std::max(1, burst)), last_(Clock::now()) {}

TokenBucket::Clock::duration TokenBucket::Reserve(Clock::time_point now) {
  if (qps_ <= 0) return Clock::duration::zero();
  std::lock_guard<std::mutex> lock(mu_);
  if (now > last_) {
    double elapsed = std::chrono::duration<double>(now - last_).count();
    tokens_ = std::min(burst_, tokens_ + elapsed * qps_);
    last_ = now;
  }
  tokens_ -= 1;
  if (tokens_ >= 0) return Clock::duration::zero();
  // Negative balance: this caller waits until the debt is paid off.
  auto wait = std::chrono::duration<double>(-tokens_ / qps_);
  return std::chrono::duration_cast<Clock::duration>(wait);
}

void TokenBucket::Acquire() {
  auto wait = Reserve(Clock::now());
  if (wait > Clock::duration::zero()) std::this_thread::sleep_for(wait);
}

std::chrono::milliseconds BackoffDelay(int attempt, std::chrono::milliseconds base,
                                       std::chrono::milliseconds cap, double unit_rand) {
  double d = static_cast<double>(base.count()) * std::pow(2.0, std::min(attempt, 30));
  d = std::min(d, static_cast<double>(cap.count()));
  unit_rand = std::clamp(unit_rand, 0.0, 1.0);
  double jittered = d / 2 + (d / 2) * unit_rand;
  return std::chrono::milliseconds(static_cast<int64_t>(jittered));
}

std::optional<std::chrono::seconds> ParseRetryAfter(std::string_view value) {
  std::string v(value);
  absl::StripAsciiWhitespace(&v);
  int64_t secs = 0;
  if (v.empty() || !absl::SimpleAtoi(v, &secs) || secs < 0) return std::nullopt;
  return std::chrono::seconds(secs);
}

std::string UrlEncode(std::string_view s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string MetadataString(const nlohmann::json& obj, const char* field) {
  if (!obj.is_object()) return "";
  auto md = obj.find("metadata");
  if (md == obj.end() || !md->is_object()) return "";
  auto v = md->find(field);
  return v != md->end() && v->is_string() ? v->get<std::string>() : "";
}

std::string BuildQuery(const ListOptions& opts, bool watch) {
  std::string q;
  auto add = [&q](const char* key, const std::string& value) {
    absl::StrAppend(&q, q.empty() ? "?" : "&", key, "=", UrlEncode(value));
  };
  if (watch) add("watch", "1");
  if (!opts.field_selector.empty()) add("fieldSelector", opts.field_selector);
  if (!opts.label_selector.empty()) add("labelSelector", opts.label_selector);
  if (!opts.resource_version.empty()) add("resourceVersion", opts.resource_version);
  if (watch) {
    if (opts.allow_watch_bookmarks) add("allowWatchBookmarks", "true");
    if (opts.timeout_seconds > 0) add("timeoutSeconds", std::to_string(opts.timeout_seconds));
  }
  return q;
}

}  // namespace knd::kube::internal
