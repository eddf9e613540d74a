// The libcurl-backed Client: one easy handle per call taken from a small pool (handles keep
// their connection cache across curl_easy_reset, so keep-alive works), rate limited by a token
// bucket, retried with jittered exponential backoff on 429/5xx/connection errors.
#include <curl/curl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/metrics.h"
#include "common/status.h"
#include "common/text.h"
#include "kube/client.h"
#include "kube/http_util.h"

namespace knd::kube {
namespace {

using nlohmann::json;

struct Request {
  const char* method = "GET";
  std::string path;  // REST path, may carry a query
  std::string body;
  std::string content_type;
};

struct Response {
  long code = 0;
  std::string body;
  std::string retry_after;
};

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
using CurlPtr = std::unique_ptr<CURL, CurlDeleter>;

struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using SlistPtr = std::unique_ptr<curl_slist, SlistDeleter>;

struct MultiDeleter {
  void operator()(CURLM* m) const { curl_multi_cleanup(m); }
};
using MultiPtr = std::unique_ptr<CURLM, MultiDeleter>;

// A response body, up to a limit: past it the write callback refuses the data, which ends
// the transfer (CURLE_WRITE_ERROR) with `over` set.
struct BoundedBody {
  std::string* body;
  size_t max;
  bool over = false;
};

size_t WriteToString(char* ptr, size_t size, size_t nmemb, void* userdata) {
  auto* b = static_cast<BoundedBody*>(userdata);
  const size_t n = size * nmemb;
  if (b->body->size() + n > b->max) {
    b->over = true;
    return 0;
  }
  b->body->append(ptr, n);
  return n;
}

size_t HeaderCb(char* ptr, size_t size, size_t nmemb, void* userdata) {
  std::string_view line(ptr, size * nmemb);
  constexpr std::string_view kName = "retry-after:";
  if (line.size() > kName.size() &&
      absl::AsciiStrToLower(std::string(line.substr(0, kName.size()))) == kName) {
    *static_cast<std::string*>(userdata) = std::string(line.substr(kName.size()));
  }
  return size * nmemb;
}

class CurlClient : public Client {
 public:
  explicit CurlClient(ClientConfig cfg)
      : cfg_(std::move(cfg)), bucket_(cfg_.qps, cfg_.burst), rng_(std::random_device{}()) {
    while (!cfg_.server.empty() && cfg_.server.back() == '/') cfg_.server.pop_back();
  }
  ~CurlClient() override = default;

  absl::StatusOr<json> Get(const std::string& path) override {
    return DoJson({"GET", path, "", ""});
  }
  absl::StatusOr<json> List(const std::string& path, const ListOptions& opts) override {
    return DoJson({"GET", path + internal::BuildQuery(opts, false), "", ""});
  }
  absl::StatusOr<json> Create(const std::string& collection_path, const json& obj) override {
    return DoJson({"POST", collection_path, DumpJson(obj), "application/json"});
  }
  absl::StatusOr<json> Update(const std::string& path, const json& obj) override {
    return DoJson({"PUT", path, DumpJson(obj), "application/json"});
  }
  absl::StatusOr<json> MergePatch(const std::string& path, const json& patch) override {
    return DoJson({"PATCH", path, DumpJson(patch), "application/merge-patch+json"});
  }
  absl::StatusOr<json> Apply(const std::string& path, const json& obj,
                             const std::string& field_manager, bool force) override {
    std::string p = absl::StrCat(path, path.find('?') == std::string::npos ? "?" : "&",
                                 "fieldManager=", internal::UrlEncode(field_manager));
    if (force) absl::StrAppend(&p, "&force=true");
    return DoJson({"PATCH", p, DumpJson(obj), "application/apply-patch+yaml"});
  }
  absl::Status Delete(const std::string& path) override {
    auto r = DoJson({"DELETE", path, "", ""});
    if (!r.ok() && !absl::IsNotFound(r.status())) return r.status();
    return absl::OkStatus();
  }
  absl::Status DeleteCollection(const std::string& collection_path,
                                const ListOptions& opts) override {
    return DoJson({"DELETE", collection_path + internal::BuildQuery(opts, false), "", ""}).status();
  }
  absl::Status Watch(const std::string& collection_path, const ListOptions& opts,
                     const std::function<bool(const WatchEvent&)>& on_event,
                     const std::atomic<bool>& stop) override;
  void WakeWatches() override {
    std::lock_guard<std::mutex> lock(watches_mu_);
    for (CURLM* m : watches_) curl_multi_wakeup(m);
  }

 private:
  // Sets URL, method, auth, TLS and headers on `h`. `headers` owns the header list.
  absl::Status Prepare(CURL* h, const Request& req, SlistPtr* headers);
  // One HTTP exchange, no retries.
  absl::StatusOr<Response> PerformOnce(const Request& req);
  // Rate limit + retries + status mapping; parses the JSON answer.
  absl::StatusOr<json> DoJson(const Request& req);
  absl::StatusOr<std::string> Token();

  CurlPtr TakeHandle() {
    {
      std::lock_guard<std::mutex> lock(pool_mu_);
      if (!pool_.empty()) {
        CurlPtr h = std::move(pool_.back());
        pool_.pop_back();
        curl_easy_reset(h.get());
        return h;
      }
    }
    return CurlPtr(curl_easy_init());
  }
  void ReturnHandle(CurlPtr h) {
    std::lock_guard<std::mutex> lock(pool_mu_);
    if (pool_.size() < 4) pool_.push_back(std::move(h));
  }
  double UnitRand() {
    std::lock_guard<std::mutex> lock(rng_mu_);
    return std::uniform_real_distribution<double>(0, 1)(rng_);
  }

  ClientConfig cfg_;
  internal::TokenBucket bucket_;
  std::mutex pool_mu_;
  std::vector<CurlPtr> pool_;
  std::mutex rng_mu_;
  std::mt19937_64 rng_;
  std::mutex watches_mu_;
  std::set<CURLM*> watches_;  // the multi handles of the watches in progress
  std::mutex token_mu_;
  std::string file_token_;
  struct timespec token_mtime_ {};
  ino_t token_ino_ = 0;
  bool token_loaded_ = false;
};

absl::StatusOr<std::string> CurlClient::Token() {
  if (cfg_.bearer_token_file.empty()) return cfg_.bearer_token;
  std::lock_guard<std::mutex> lock(token_mu_);
  struct stat st {};
  if (::stat(cfg_.bearer_token_file.c_str(), &st) != 0) {
    if (token_loaded_) return file_token_;  // keep the last good token during a rotation
    return ErrnoStatus(absl::StrCat("stat token file ", cfg_.bearer_token_file));
  }
  // mtime has coarse granularity; a rotated file (written and renamed into place, or a
  // projected-volume symlink swap) also has a new inode.
  if (!token_loaded_ || st.st_mtim.tv_sec != token_mtime_.tv_sec ||
      st.st_mtim.tv_nsec != token_mtime_.tv_nsec || st.st_ino != token_ino_) {
    auto tok = ReadFile(cfg_.bearer_token_file);
    if (!tok.ok()) {
      if (token_loaded_) return file_token_;
      return tok.status();
    }
    file_token_ = std::string(absl::StripAsciiWhitespace(*tok));
    token_mtime_ = st.st_mtim;
    token_ino_ = st.st_ino;
    token_loaded_ = true;
  }
  return file_token_;
}

absl::Status CurlClient::Prepare(CURL* h, const Request& req, SlistPtr* headers) {
  std::string url = cfg_.server + req.path;
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());  // libcurl copies strings
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_USERAGENT, cfg_.user_agent.c_str());
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(cfg_.timeout.count()));
  std::string method = req.method;
  if (method == "GET") {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req.method);
  }
  if (method == "POST" || method == "PUT" || method == "PATCH") {
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(req.body.size()));
    curl_easy_setopt(h, CURLOPT_COPYPOSTFIELDS, req.body.c_str());
  }
  curl_slist* l = nullptr;
  l = curl_slist_append(l, "Accept: application/json");
  if (!req.content_type.empty()) {
    l = curl_slist_append(l, absl::StrCat("Content-Type: ", req.content_type).c_str());
  }
  // Do not wait for "100 Continue" on bodies.
  l = curl_slist_append(l, "Expect:");
  ASSIGN_OR_RETURN(std::string token, Token());
  if (!token.empty()) {
    l = curl_slist_append(l, absl::StrCat("Authorization: Bearer ", token).c_str());
  }
  headers->reset(l);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, l);

  if (cfg_.insecure_skip_tls_verify) {
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (!cfg_.ca_data.empty()) {
    curl_blob blob{const_cast<char*>(cfg_.ca_data.data()), cfg_.ca_data.size(), CURL_BLOB_COPY};
    curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &blob);
  } else if (!cfg_.ca_file.empty()) {
    curl_easy_setopt(h, CURLOPT_CAINFO, cfg_.ca_file.c_str());
  }
  if (!cfg_.client_cert_data.empty()) {
    curl_blob blob{const_cast<char*>(cfg_.client_cert_data.data()), cfg_.client_cert_data.size(),
                   CURL_BLOB_COPY};
    curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &blob);
    curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
  } else if (!cfg_.client_cert_file.empty()) {
    curl_easy_setopt(h, CURLOPT_SSLCERT, cfg_.client_cert_file.c_str());
    curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
  }
  if (!cfg_.client_key_data.empty()) {
    curl_blob blob{const_cast<char*>(cfg_.client_key_data.data()), cfg_.client_key_data.size(),
                   CURL_BLOB_COPY};
    curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &blob);
    curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
  } else if (!cfg_.client_key_file.empty()) {
    curl_easy_setopt(h, CURLOPT_SSLKEY, cfg_.client_key_file.c_str());
    curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
  }
  return absl::OkStatus();
}

absl::StatusOr<Response> CurlClient::PerformOnce(const Request& req) {
  CurlPtr h = TakeHandle();
  if (!h) return absl::ResourceExhaustedError("curl_easy_init failed");
  SlistPtr headers;
  RETURN_IF_ERROR(Prepare(h.get(), req, &headers));
  Response resp;
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(h.get(), CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h.get(), CURLOPT_TIMEOUT_MS, static_cast<long>(cfg_.timeout.count()));
  BoundedBody body{&resp.body, cfg_.max_response_bytes};
  curl_easy_setopt(h.get(), CURLOPT_WRITEFUNCTION, WriteToString);
  curl_easy_setopt(h.get(), CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(h.get(), CURLOPT_HEADERFUNCTION, HeaderCb);
  curl_easy_setopt(h.get(), CURLOPT_HEADERDATA, &resp.retry_after);
  const auto start = std::chrono::steady_clock::now();
  CURLcode rc = curl_easy_perform(h.get());
  static auto& latency = metrics::Default().Histogram(
      "knd_kube_request_duration_seconds",
      "Kubernetes API request latency, by verb and HTTP status code (\"error\": no answer).",
      {"verb", "code"});
  auto record = [&](const std::string& code) {
    latency.Observe(
        {req.method, code},
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  };
  if (rc != CURLE_OK && body.over) {
    record("too_large");
    return absl::ResourceExhaustedError(
        absl::StrCat(req.method, " ", cfg_.server, req.path, ": the response is over the limit of ",
                     cfg_.max_response_bytes, " bytes (ClientConfig::max_response_bytes)"));
  }
  if (rc != CURLE_OK) {
    record("error");
    std::string msg = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc);
    // The handle may be in a bad state after a transport error; do not pool it.
    std::string what = absl::StrCat(req.method, " ", cfg_.server, req.path, ": ", msg);
    // Timeouts count as Unavailable too (client.h): the caller treats both as "retry later".
    return absl::UnavailableError(what);
  }
  curl_easy_getinfo(h.get(), CURLINFO_RESPONSE_CODE, &resp.code);
  record(std::to_string(resp.code));
  ReturnHandle(std::move(h));
  return resp;
}

absl::StatusOr<json> CurlClient::DoJson(const Request& req) {
  const std::string what = absl::StrCat(req.method, " ", req.path);
  absl::Status last;
  for (int attempt = 0;; ++attempt) {
    bucket_.Acquire();
    auto resp = PerformOnce(req);
    std::chrono::milliseconds wait =
        internal::BackoffDelay(attempt, cfg_.retry_base, cfg_.retry_cap, UnitRand());
    if (resp.ok()) {
      if (resp->code >= 200 && resp->code < 300) {
        if (resp->body.empty()) return json::object();
        json j = json::parse(resp->body, nullptr, /*allow_exceptions=*/false);
        if (j.is_discarded()) {
          return absl::DataLossError(absl::StrCat(what, ": response is not JSON"));
        }
        return j;
      }
      last = internal::StatusFromHttp(resp->code, resp->body, what);
      bool retriable = resp->code == 429 || resp->code >= 500;
      if (!retriable) return last;
      if (auto ra = internal::ParseRetryAfter(resp->retry_after)) {
        // Honour the server's hint, but never sleep unboundedly.
        wait = std::min<std::chrono::milliseconds>(*ra, std::chrono::seconds(60));
      }
    } else {
      last = resp.status();
      if (!absl::IsUnavailable(last)) return last;
    }
    if (attempt >= cfg_.max_retries) return last;
    spdlog::debug("{}: {} (retry {} in {} ms)", what, last.ToString(), attempt + 1, wait.count());
    std::this_thread::sleep_for(wait);
  }
}

struct WatchCtx {
  CURL* h;
  internal::WatchLineDecoder decoder;
  const std::function<bool(const WatchEvent&)>* on_event;
  const std::atomic<bool>* stop;
  absl::Status error;
  bool stopped = false;  // on_event returned false or stop was set
  long code = 0;
  std::string error_body;  // body of a non-200 answer
};

size_t WatchWrite(char* ptr, size_t size, size_t nmemb, void* userdata) {
  auto* ctx = static_cast<WatchCtx*>(userdata);
  size_t n = size * nmemb;
  if (ctx->code == 0) curl_easy_getinfo(ctx->h, CURLINFO_RESPONSE_CODE, &ctx->code);
  if (ctx->code != 200) {
    if (ctx->error_body.size() < 64 * 1024) ctx->error_body.append(ptr, n);
    return n;
  }
  if (ctx->stop->load()) {
    ctx->stopped = true;
    return 0;  // aborts the transfer
  }
  auto r = ctx->decoder.Feed(std::string_view(ptr, n), *ctx->on_event);
  if (!r.ok()) {
    ctx->error = r.status();
    return 0;
  }
  if (*r == internal::WatchLineDecoder::Result::kStopped) {
    ctx->stopped = true;
    return 0;
  }
  return n;
}

absl::Status CurlClient::Watch(const std::string& collection_path, const ListOptions& opts,
                               const std::function<bool(const WatchEvent&)>& on_event,
                               const std::atomic<bool>& stop) {
  Request req{"GET", collection_path + internal::BuildQuery(opts, true), "", ""};
  const std::string what = absl::StrCat("WATCH ", collection_path);
  bucket_.Acquire();
  if (stop.load()) return absl::OkStatus();
  CurlPtr h = TakeHandle();
  if (!h) return absl::ResourceExhaustedError("curl_easy_init failed");
  SlistPtr headers;
  RETURN_IF_ERROR(Prepare(h.get(), req, &headers));
  WatchCtx ctx{h.get(),
               internal::WatchLineDecoder(cfg_.watch_max_event_bytes),
               &on_event,
               &stop,
               absl::OkStatus(),
               false,
               0,
               ""};
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(h.get(), CURLOPT_ERRORBUFFER, errbuf);
  if (opts.timeout_seconds > 0) {
    // The server ends the stream after timeoutSeconds; guard against a server that does not.
    curl_easy_setopt(h.get(), CURLOPT_TIMEOUT_MS,
                     static_cast<long>(opts.timeout_seconds) * 1000 + 30000);
  }
  curl_easy_setopt(h.get(), CURLOPT_WRITEFUNCTION, WatchWrite);
  curl_easy_setopt(h.get(), CURLOPT_WRITEDATA, &ctx);
  // A multi handle of its own, so the wait for data can be woken by WakeWatches().
  MultiPtr m(curl_multi_init());
  if (!m) return absl::ResourceExhaustedError("curl_multi_init failed");
  if (curl_multi_add_handle(m.get(), h.get()) != CURLM_OK) {
    return absl::InternalError(absl::StrCat(what, ": curl_multi_add_handle failed"));
  }
  {
    std::lock_guard<std::mutex> lock(watches_mu_);
    watches_.insert(m.get());
  }
  CURLcode rc = CURLE_OK;
  while (true) {
    int running = 0;
    CURLMcode mc = curl_multi_perform(m.get(), &running);
    if (mc == CURLM_OK && running == 0) {
      int left = 0;
      while (CURLMsg* msg = curl_multi_info_read(m.get(), &left)) {
        if (msg->msg == CURLMSG_DONE) rc = msg->data.result;
      }
      break;
    }
    if (stop.load()) {
      ctx.stopped = true;
      break;
    }
    if (mc == CURLM_OK) {
      mc = curl_multi_poll(m.get(), nullptr, 0, static_cast<int>(cfg_.watch_stop_check.count()),
                           nullptr);
    }
    if (mc != CURLM_OK) {
      rc = CURLE_RECV_ERROR;
      std::snprintf(errbuf, sizeof(errbuf), "%s", curl_multi_strerror(mc));
      break;
    }
  }
  {
    std::lock_guard<std::mutex> lock(watches_mu_);
    watches_.erase(m.get());
  }
  curl_multi_remove_handle(m.get(), h.get());
  // A watch ended by its stop flag or callback leaves the connection mid-stream: the easy
  // handle (and its connection) is not pooled.
  if (ctx.stopped) return absl::OkStatus();
  if (ctx.decoder.overflowed()) {
    // Said here, once, at warning level: the watchers log their watch errors at debug, and
    // this one is not the network's weather but a broken peer.
    static auto& too_large = metrics::Default().Counter(
        "knd_kube_watch_events_too_large_total",
        "Watch streams dropped for a line over the event size limit, by resource path.",
        {"resource"});
    too_large.Inc({collection_path});
    spdlog::warn("{}: {}; listing again", what, std::string(ctx.error.message()));
  }
  if (!ctx.error.ok()) return Annotate(ctx.error, what);
  if (ctx.code == 0) curl_easy_getinfo(h.get(), CURLINFO_RESPONSE_CODE, &ctx.code);
  if (rc != CURLE_OK) {
    std::string msg = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc);
    return absl::UnavailableError(absl::StrCat(what, ": ", msg));
  }
  if (ctx.code != 200) return internal::StatusFromHttp(ctx.code, ctx.error_body, what);
  ReturnHandle(std::move(h));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Client>> NewClient(const ClientConfig& cfg) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (cfg.server.rfind("https://", 0) != 0 && cfg.server.rfind("http://", 0) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("kube client: server \"", cfg.server, "\" is not an http(s):// URL"));
  }
  return std::unique_ptr<Client>(new CurlClient(cfg));
}

absl::Status RetryOnConflict(const std::function<absl::Status()>& fn, int attempts) {
  absl::Status st;
  for (int i = 0; i < std::max(1, attempts); ++i) {
    st = fn();
    if (!absl::IsAborted(st)) return st;
  }
  return st;
}

}  // namespace knd::kube
