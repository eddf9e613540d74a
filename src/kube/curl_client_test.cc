// The libcurl client against a real HTTP(S) server (cpp-httplib on 127.0.0.1) serving canned
// Kubernetes-style answers.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/metrics.h"
#include "kube/client.h"
#include "kube/list_watch.h"

namespace knd::kube {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

constexpr char kNotFoundBody[] =
    R"({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",)"
    R"("message":"resourceslices.resource.k8s.io \"s1\" not found","reason":"NotFound",)"
    R"("details":{"name":"s1","group":"resource.k8s.io","kind":"resourceslices"},"code":404})";

// Runs an httplib server on an ephemeral port for one test.
class ServerRunner {
 public:
  explicit ServerRunner(httplib::Server* svr) : svr_(svr) {
    port_ = svr_->bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { svr_->listen_after_bind(); });
    for (int i = 0; i < 500 && !svr_->is_running(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  ~ServerRunner() {
    svr_->stop();
    thread_.join();
  }
  int port() const { return port_; }

 private:
  httplib::Server* svr_;
  int port_ = 0;
  std::thread thread_;
};

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override { runner_ = std::make_unique<ServerRunner>(&svr_); }
  void TearDown() override {
    stopping_ = true;
    runner_.reset();
  }
  ClientConfig Cfg() {
    ClientConfig c;
    c.server = absl::StrCat("http://127.0.0.1:", runner_->port(), "/");
    c.bearer_token = "s3cret";
    c.retry_base = std::chrono::milliseconds(10);
    c.retry_cap = std::chrono::milliseconds(50);
    c.qps = 0;  // unlimited for tests
    return c;
  }
  std::unique_ptr<Client> NewC(const ClientConfig& c) {
    auto r = NewClient(c);
    EXPECT_TRUE(r.ok()) << r.status();
    return std::move(r).value();
  }
  httplib::Server svr_;
  std::unique_ptr<ServerRunner> runner_;
  // A watch stream at `path` that sends one ADDED event, then nothing until the client goes.
  void ServeOneEventThenIdle(const std::string& path) {
    svr_.Get(path, [this](const httplib::Request&, httplib::Response& res) {
      res.set_chunked_content_provider("application/json",
                                       [this, n = 0](size_t, httplib::DataSink& sink) mutable {
                                         if (stopping_) return false;
                                         if (n++ == 0) {
                                           std::string ev = R"({"type":"ADDED","object":{}})"
                                                            "\n";
                                           return sink.write(ev.data(), ev.size());
                                         }
                                         std::this_thread::sleep_for(std::chrono::milliseconds(20));
                                         return sink.is_writable();
                                       });
    });
  }
  std::atomic<bool> stopping_{false};
};

TEST_F(ClientTest, GetSendsAuthAndParses) {
  std::string auth, accept;
  svr_.Get("/api/v1/nodes/n1", [&](const httplib::Request& req, httplib::Response& res) {
    auth = req.get_header_value("Authorization");
    accept = req.get_header_value("Accept");
    res.set_content(R"({"kind":"Node","metadata":{"name":"n1","uid":"u1"}})", "application/json");
  });
  auto c = NewC(Cfg());
  auto r = c->Get("/api/v1/nodes/n1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)["metadata"]["uid"], "u1");
  EXPECT_EQ(auth, "Bearer s3cret");
  EXPECT_EQ(accept, "application/json");
}

TEST_F(ClientTest, AResponseOverTheLimitFailsOnceNamingTheRequestAndTheLimit) {
  std::atomic<int> hits{0};
  const std::string big = R"({"items":[")" + std::string(2 << 20, 'x') + R"("]})";
  svr_.Get("/api/v1/pods", [&](const httplib::Request&, httplib::Response& res) {
    ++hits;
    res.set_content(big, "application/json");
  });
  auto cfg = Cfg();
  cfg.max_response_bytes = 1 << 20;
  auto c = NewC(cfg);
  auto r = c->Get("/api/v1/pods");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(r.status())) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("GET "));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("/api/v1/pods"));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("limit of 1048576 bytes"));
  EXPECT_EQ(hits.load(), 1) << "not retried: the same answer would come again";
  // Within the limit, the same answer is read whole.
  cfg.max_response_bytes = 4 << 20;
  auto again = NewC(cfg)->Get("/api/v1/pods");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)["items"][0].get<std::string>().size(), size_t{2} << 20);
}

TEST_F(ClientTest, NotFoundCarriesApiMessageAndDeleteTreatsItAsDone) {
  int calls = 0;
  auto h = [&](const httplib::Request&, httplib::Response& res) {
    calls++;
    res.status = 404;
    res.set_content(kNotFoundBody, "application/json");
  };
  svr_.Get("/apis/resource.k8s.io/v1/resourceslices/s1", h);
  svr_.Delete("/apis/resource.k8s.io/v1/resourceslices/s1", h);
  auto c = NewC(Cfg());
  auto r = c->Get("/apis/resource.k8s.io/v1/resourceslices/s1");
  ASSERT_TRUE(absl::IsNotFound(r.status())) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("HTTP 404"));
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("resourceslices.resource.k8s.io \"s1\" not found"));
  EXPECT_EQ(calls, 1);  // 4xx is never retried
  EXPECT_TRUE(c->Delete("/apis/resource.k8s.io/v1/resourceslices/s1").ok());
}

TEST_F(ClientTest, ConflictIsAbortedAndRetryOnConflictRetries) {
  int puts = 0;
  std::string body;
  svr_.Put("/apis/resource.k8s.io/v1/resourceslices/s1",
           [&](const httplib::Request& req, httplib::Response& res) {
             body = req.body;
             if (++puts < 3) {
               res.status = 409;
               res.set_content(R"({"kind":"Status","reason":"Conflict","message":"the object )"
                               R"(has been modified","code":409})",
                               "application/json");
               return;
             }
             res.set_content(req.body, "application/json");
           });
  auto c = NewC(Cfg());
  json obj = {{"metadata", {{"name", "s1"}, {"resourceVersion", "7"}}}};
  auto r = c->Update("/apis/resource.k8s.io/v1/resourceslices/s1", obj);
  ASSERT_TRUE(absl::IsAborted(r.status())) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("has been modified"));
  EXPECT_EQ(puts, 1);
  EXPECT_EQ(json::parse(body)["metadata"]["resourceVersion"], "7");
  int attempts = 0;
  absl::Status st = RetryOnConflict([&] {
    attempts++;
    return c->Update("/apis/resource.k8s.io/v1/resourceslices/s1", obj).status();
  });
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_EQ(attempts, 2);
}

TEST_F(ClientTest, AlreadyExistsOnCreate) {
  svr_.Post("/apis/resource.k8s.io/v1/resourceslices", [&](const httplib::Request&,
                                                           httplib::Response& res) {
    res.status = 409;
    res.set_content(R"({"kind":"Status","reason":"AlreadyExists","code":409})", "application/json");
  });
  auto c = NewC(Cfg());
  auto r = c->Create("/apis/resource.k8s.io/v1/resourceslices", json{{"a", 1}});
  EXPECT_TRUE(absl::IsAlreadyExists(r.status())) << r.status();
}

TEST_F(ClientTest, RetriesServerErrorsAnd429ButNotForever) {
  int calls = 0;
  svr_.Get("/flaky", [&](const httplib::Request&, httplib::Response& res) {
    if (++calls == 1) {
      res.status = 503;
      return;
    }
    if (calls == 2) {
      res.status = 429;
      res.set_header("Retry-After", "0");
      return;
    }
    res.set_content("{\"ok\":true}", "application/json");
  });
  int down_calls = 0;
  svr_.Get("/down", [&](const httplib::Request&, httplib::Response& res) {
    down_calls++;
    res.status = 500;
  });
  int bad_calls = 0;
  svr_.Get("/bad", [&](const httplib::Request&, httplib::Response& res) {
    bad_calls++;
    res.status = 422;
    res.set_content(R"({"kind":"Status","message":"spec.devices: Too many","code":422})",
                    "application/json");
  });
  auto cfg = Cfg();
  cfg.max_retries = 3;
  auto c = NewC(cfg);
  auto r = c->Get("/flaky");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(calls, 3);
  r = c->Get("/down");
  EXPECT_TRUE(absl::IsUnavailable(r.status()));
  EXPECT_EQ(down_calls, 4);  // first try + max_retries
  r = c->Get("/bad");
  EXPECT_TRUE(absl::IsInvalidArgument(r.status()));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("spec.devices: Too many"));
  EXPECT_EQ(bad_calls, 1);
}

TEST_F(ClientTest, ListSendsSelectors) {
  std::string fs, rv;
  svr_.Get("/apis/resource.k8s.io/v1/resourceslices", [&](const httplib::Request& req,
                                                          httplib::Response& res) {
    fs = req.get_param_value("fieldSelector");
    rv = req.get_param_value("resourceVersion");
    res.set_content(R"({"metadata":{"resourceVersion":"9"},"items":[]})", "application/json");
  });
  auto c = NewC(Cfg());
  ListOptions o;
  o.field_selector = "spec.nodeName=n1,spec.driver=knd.k8s.cni.cncf.io";
  auto r = c->List("/apis/resource.k8s.io/v1/resourceslices", o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(fs, "spec.nodeName=n1,spec.driver=knd.k8s.cni.cncf.io");
  EXPECT_EQ(rv, "");
  EXPECT_EQ((*r)["metadata"]["resourceVersion"], "9");

  std::string method, label;
  svr_.Delete("/apis/resource.k8s.io/v1/resourceslices",
              [&](const httplib::Request& req, httplib::Response& res) {
                method = req.method;
                fs = req.get_param_value("fieldSelector");
                label = req.get_param_value("labelSelector");
                res.set_content(R"({"kind":"ResourceSliceList","items":[]})", "application/json");
              });
  o.label_selector = "app=knd";
  ASSERT_TRUE(c->DeleteCollection("/apis/resource.k8s.io/v1/resourceslices", o).ok());
  EXPECT_EQ(method, "DELETE");
  EXPECT_EQ(fs, "spec.nodeName=n1,spec.driver=knd.k8s.cni.cncf.io");
  EXPECT_EQ(label, "app=knd");
}

TEST_F(ClientTest, ApplyAndMergePatchContentTypes) {
  std::string ctype, fm, force, body;
  svr_.Patch("/apis/resource.k8s.io/v1/namespaces/ns/resourceclaims/c/status",
             [&](const httplib::Request& req, httplib::Response& res) {
               ctype = req.get_header_value("Content-Type");
               fm = req.get_param_value("fieldManager");
               force = req.get_param_value("force");
               body = req.body;
               res.set_content("{}", "application/json");
             });
  auto c = NewC(Cfg());
  json obj = {{"apiVersion", "resource.k8s.io/v1"}, {"kind", "ResourceClaim"}};
  auto r = c->Apply("/apis/resource.k8s.io/v1/namespaces/ns/resourceclaims/c/status", obj,
                    "knd.k8s.cni.cncf.io");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(ctype, "application/apply-patch+yaml");
  EXPECT_EQ(fm, "knd.k8s.cni.cncf.io");
  EXPECT_EQ(force, "true");
  EXPECT_EQ(json::parse(body), obj);
  r = c->MergePatch("/apis/resource.k8s.io/v1/namespaces/ns/resourceclaims/c/status",
                    json{{"x", 1}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(ctype, "application/merge-patch+json");
  EXPECT_EQ(fm, "");
}

TEST_F(ClientTest, WatchDecodesEventsSplitAcrossChunks) {
  std::map<std::string, std::string> params;
  const std::string stream =
      R"({"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":"11"}}})"
      "\n"
      R"({"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"12"}}})"
      "\n"
      R"({"type":"DELETED","object":{"metadata":{"name":"a","resourceVersion":"13"}}})"
      "\n";
  svr_.Get("/apis/resource.k8s.io/v1/resourceslices",
           [&](const httplib::Request& req, httplib::Response& res) {
             for (auto& [k, v] : req.params) params[k] = v;
             res.set_chunked_content_provider(
                 "application/json", [&, i = size_t{0}](size_t, httplib::DataSink& sink) mutable {
                   // 7-byte pieces with pauses: events straddle curl write callbacks.
                   if (i >= stream.size()) {
                     sink.done();
                     return true;
                   }
                   std::string piece = stream.substr(i, 7);
                   i += piece.size();
                   std::this_thread::sleep_for(std::chrono::milliseconds(1));
                   return sink.write(piece.data(), piece.size());
                 });
           });
  auto c = NewC(Cfg());
  ListOptions o;
  o.field_selector = "spec.nodeName=n1";
  o.resource_version = "10";
  o.timeout_seconds = 60;
  std::vector<WatchEvent> got;
  std::atomic<bool> stop{false};
  absl::Status st = c->Watch(
      "/apis/resource.k8s.io/v1/resourceslices", o,
      [&](const WatchEvent& e) {
        got.push_back(e);
        return true;
      },
      stop);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].type, "ADDED");
  EXPECT_EQ(got[1].type, "BOOKMARK");
  EXPECT_EQ(got[2].type, "DELETED");
  EXPECT_EQ(got[2].object["metadata"]["resourceVersion"], "13");
  EXPECT_EQ(params["watch"], "1");
  EXPECT_EQ(params["resourceVersion"], "10");
  EXPECT_EQ(params["allowWatchBookmarks"], "true");
  EXPECT_EQ(params["timeoutSeconds"], "60");
  EXPECT_EQ(params["fieldSelector"], "spec.nodeName=n1");
}

TEST_F(ClientTest, WatchGoneAndErrorEventAreOutOfRange) {
  svr_.Get("/gone", [&](const httplib::Request&, httplib::Response& res) {
    res.status = 410;
    res.set_content(R"({"kind":"Status","reason":"Expired","message":"too old","code":410})",
                    "application/json");
  });
  svr_.Get("/errev", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(
        R"j({"type":"ERROR","object":{"kind":"Status","code":410,"message":"too old resource version: 5 (9)"}})j"
        "\n",
        "application/json");
  });
  auto c = NewC(Cfg());
  std::atomic<bool> stop{false};
  auto ignore = [](const WatchEvent&) { return true; };
  absl::Status st = c->Watch("/gone", {}, ignore, stop);
  EXPECT_TRUE(absl::IsOutOfRange(st)) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr("too old"));
  st = c->Watch("/errev", {}, ignore, stop);
  EXPECT_TRUE(absl::IsOutOfRange(st)) << st;
}

TEST_F(ClientTest, WatchStopsPromptlyOnStopFlagAndOnCallback) {
  ServeOneEventThenIdle("/forever");
  auto c = NewC(Cfg());
  std::atomic<bool> stop{false};
  int events = 0;
  std::thread stopper;
  absl::Status st = c->Watch(
      "/forever", {},
      [&](const WatchEvent&) {
        events++;
        // Stop from another thread while the stream is idle.
        stopper = std::thread([&] {
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
          stop = true;
        });
        return true;
      },
      stop);
  stopper.join();
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_EQ(events, 1);
  // on_event returning false ends the watch as well.
  std::atomic<bool> never{false};
  events = 0;
  st = c->Watch(
      "/forever", {},
      [&](const WatchEvent&) {
        events++;
        return false;
      },
      never);
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_EQ(events, 1);
}

// A watch stream at `path` that opens an event and never ends its line; the list at `path`
// (no ?watch) answers an empty PodList. Counts lists and the bytes the stream got out.
class EndlessLineTest : public ClientTest {
 protected:
  void Serve(const std::string& path) {
    svr_.Get(path, [this](const httplib::Request& req, httplib::Response& res) {
      if (!req.has_param("watch")) {
        ++lists_;
        res.set_content(R"({"kind":"PodList","metadata":{"resourceVersion":"5"},"items":[]})",
                        "application/json");
        return;
      }
      res.set_chunked_content_provider(
          "application/json", [this, n = 0](size_t, httplib::DataSink& sink) mutable {
            if (stopping_) return false;
            std::string piece = n++ == 0 ? R"({"type":"ADDED","object":{"metadata":{"name":")"
                                         : std::string(16 * 1024, 'x');
            if (!sink.write(piece.data(), piece.size())) return false;
            sent_ += piece.size();
            return true;
          });
    });
  }
  std::atomic<int> lists_{0};
  std::atomic<size_t> sent_{0};
};

TEST_F(EndlessLineTest, WatchFailsNamingTheResourceAndTheLimit) {
  Serve("/api/v1/pods");
  auto cfg = Cfg();
  cfg.watch_max_event_bytes = 256 * 1024;
  auto c = NewC(cfg);
  auto& too_large =
      metrics::Default().Counter("knd_kube_watch_events_too_large_total", "", {"resource"});
  const double before = too_large.Value({"/api/v1/pods"});
  std::atomic<bool> stop{false};
  int events = 0;
  const auto start = std::chrono::steady_clock::now();
  absl::Status st = c->Watch(
      "/api/v1/pods", {},
      [&](const WatchEvent&) {
        ++events;
        return true;
      },
      stop);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_TRUE(absl::IsResourceExhausted(st)) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr("WATCH /api/v1/pods"));
  EXPECT_THAT(std::string(st.message()), HasSubstr("limit of 262144 bytes"));
  EXPECT_EQ(events, 0);
  EXPECT_EQ(too_large.Value({"/api/v1/pods"}), before + 1);
  // The client stopped reading soon after the limit (what is in flight in socket buffers
  // aside), instead of taking all the server had.
  EXPECT_LT(sent_.load(), size_t{64} << 20);
}

TEST_F(EndlessLineTest, ListWatchDropsTheStreamAndListsAgain) {
  Serve("/api/v1/pods");
  auto cfg = Cfg();
  cfg.watch_max_event_bytes = 64 * 1024;
  auto c = NewC(cfg);
  std::atomic<bool> stop{false};
  ListWatchOptions lw;
  lw.path = "/api/v1/pods";
  lw.backoff_initial = std::chrono::milliseconds(1);
  lw.backoff_max = std::chrono::milliseconds(1);
  ListWatchHandlers h;
  int lists = 0;
  std::vector<absl::Status> errors;
  h.on_list = [&](const json&) {
    if (++lists == 3) stop = true;
  };
  h.on_event = [](const WatchEvent&) { ADD_FAILURE() << "no event ever ends its line"; };
  h.on_error = [&](const absl::Status& e, std::chrono::milliseconds) { errors.push_back(e); };
  h.sleep = [&](std::chrono::milliseconds) { return !stop; };
  RunListWatch(*c, lw, h, stop);
  EXPECT_EQ(lists, 3);
  EXPECT_EQ(lists_.load(), 3);
  ASSERT_EQ(errors.size(), 2u);
  for (const absl::Status& e : errors) {
    EXPECT_TRUE(absl::IsResourceExhausted(e)) << e;
    EXPECT_THAT(std::string(e.message()), HasSubstr("WATCH /api/v1/pods"));
  }
}

TEST_F(ClientTest, WakeWatchesEndsAStoppedWatchOnAnIdleStream) {
  ServeOneEventThenIdle("/idle");
  auto cfg = Cfg();
  // No periodic look at the stop flag within the test's life: only the wake can end it.
  cfg.watch_stop_check = std::chrono::hours(1);
  auto c = NewC(cfg);
  std::atomic<bool> stop{false}, other_stop{false}, other_done{false};
  std::atomic<int> other_events{0};
  // A second watch on the same client whose flag stays unset: the wake must not end it.
  absl::Status other_st;
  std::thread other([&] {
    other_st = c->Watch(
        "/idle", {},
        [&](const WatchEvent&) {
          ++other_events;
          return true;
        },
        other_stop);
    other_done = true;
  });
  std::thread stopper;
  absl::Status st = c->Watch(
      "/idle", {},
      [&](const WatchEvent&) {
        stopper = std::thread([&] {
          while (other_events == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
          stop = true;
          c->WakeWatches();
        });
        return true;
      },
      stop);
  stopper.join();
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_FALSE(other_done) << "a wake ended a watch whose stop flag is not set";
  // Now stop the other one the same way.
  other_stop = true;
  c->WakeWatches();
  other.join();
  EXPECT_TRUE(other_st.ok()) << other_st;
  EXPECT_EQ(other_events, 1);
}

TEST_F(ClientTest, TokenFileIsReReadWhenItChanges) {
  char tmpl[] = "/tmp/knd-token-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string tok = std::string(tmpl) + "/token";
  ASSERT_TRUE(WriteFileAtomic(tok, "first\n").ok());
  std::string auth;
  svr_.Get("/x", [&](const httplib::Request& req, httplib::Response& res) {
    auth = req.get_header_value("Authorization");
    res.set_content("{}", "application/json");
  });
  auto cfg = Cfg();
  cfg.bearer_token.clear();
  cfg.bearer_token_file = tok;
  auto c = NewC(cfg);
  ASSERT_TRUE(c->Get("/x").ok());
  EXPECT_EQ(auth, "Bearer first");
  ASSERT_TRUE(WriteFileAtomic(tok, "second").ok());  // a new inode and mtime, like kubelet
  ASSERT_TRUE(c->Get("/x").ok());
  EXPECT_EQ(auth, "Bearer second");
  std::filesystem::remove_all(tmpl);
}

TEST(ClientNoServer, ConnectionRefusedIsUnavailableAfterRetries) {
  // Bind then close a socket to get a port with nothing listening.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  int port = ntohs(addr.sin_port);
  ::close(fd);
  ClientConfig c;
  c.server = absl::StrCat("http://127.0.0.1:", port);
  c.retry_base = std::chrono::milliseconds(1);
  c.retry_cap = std::chrono::milliseconds(5);
  c.max_retries = 2;
  auto client = NewClient(c);
  ASSERT_TRUE(client.ok());
  auto r = (*client)->Get("/api");
  EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("127.0.0.1"));
  EXPECT_FALSE(NewClient(ClientConfig{}).ok());  // no server URL
}

TEST(ClientTls, SelfSignedCertificate) {
  if (std::system("command -v openssl >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "openssl not installed; TLS test skipped";
  }
  char tmpl[] = "/tmp/knd-tls-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  std::string cmd =
      absl::StrCat("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 ",
                   "-addext subjectAltName=IP:127.0.0.1 -keyout ", dir, "/key.pem -out ", dir,
                   "/cert.pem >/dev/null 2>&1");
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  httplib::SSLServer svr((dir + "/cert.pem").c_str(), (dir + "/key.pem").c_str());
  ASSERT_TRUE(svr.is_valid());
  svr.Get("/version", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"major":"1","minor":"34"})", "application/json");
  });
  {
    ServerRunner runner(&svr);
    ClientConfig cfg;
    cfg.server = absl::StrCat("https://127.0.0.1:", runner.port());
    cfg.max_retries = 0;
    auto pem = ReadFile(dir + "/cert.pem");
    ASSERT_TRUE(pem.ok());

    cfg.ca_data = *pem;  // PEM in memory (kubeconfig certificate-authority-data)
    auto r = (*NewClient(cfg))->Get("/version");
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ((*r)["minor"], "34");

    cfg.ca_data.clear();
    cfg.ca_file = dir + "/cert.pem";
    r = (*NewClient(cfg))->Get("/version");
    ASSERT_TRUE(r.ok()) << r.status();

    cfg.ca_file.clear();  // system CAs do not trust it
    r = (*NewClient(cfg))->Get("/version");
    EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();

    cfg.insecure_skip_tls_verify = true;
    r = (*NewClient(cfg))->Get("/version");
    EXPECT_TRUE(r.ok()) << r.status();
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace knd::kube
