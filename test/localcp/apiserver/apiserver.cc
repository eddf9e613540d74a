// The stand-in API server; see apiserver.h for what it serves and why.
#include "apiserver.h"

#include <httplib.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <regex>
#include <set>
#include <vector>

#include "spdlog/spdlog.h"
#include "validation.h"

namespace knd::localcp {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// One served resource type.
struct ResourceType {
  std::string group;  // "" = core
  std::string version;
  std::string plural;
  std::string singular;
  std::string kind;
  bool namespaced = true;
  bool status_subresource = false;
  std::vector<std::string> field_labels;  // supported fieldSelector keys beyond metadata.*

  std::string ApiVersion() const { return group.empty() ? version : group + "/" + version; }
  // "resourceclaims.resource.k8s.io" / "pods": how the real server names a resource in errors.
  std::string Qualified() const { return group.empty() ? plural : plural + "." + group; }
  // "ResourceSlice.resource.k8s.io" / "Pod": the prefix of Invalid messages.
  std::string KindGroup() const { return group.empty() ? kind : kind + "." + group; }
};

std::vector<ResourceType> BuiltinTypes() {
  const std::vector<std::string> event_fields = {"involvedObject.kind",
                                                 "involvedObject.namespace",
                                                 "involvedObject.name",
                                                 "involvedObject.uid",
                                                 "involvedObject.apiVersion",
                                                 "involvedObject.fieldPath",
                                                 "involvedObject.resourceVersion",
                                                 "reason",
                                                 "reportingComponent",
                                                 "source",
                                                 "type"};
  return {
      {"", "v1", "namespaces", "namespace", "Namespace", false, true, {"status.phase"}},
      {"", "v1", "nodes", "node", "Node", false, true, {"spec.unschedulable"}},
      {"",
       "v1",
       "pods",
       "pod",
       "Pod",
       true,
       true,
       {"spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
        "status.phase", "status.podIP", "status.nominatedNodeName"}},
      {"", "v1", "events", "event", "Event", true, false, event_fields},
      {"events.k8s.io",
       "v1",
       "events",
       "event",
       "Event",
       true,
       false,
       {"regarding.kind", "regarding.namespace", "regarding.name", "regarding.uid", "reason",
        "reportingController", "type"}},
      {"resource.k8s.io",
       "v1",
       "resourceslices",
       "resourceslice",
       "ResourceSlice",
       false,
       false,
       {"spec.nodeName", "spec.driver"}},
      {"resource.k8s.io", "v1", "deviceclasses", "deviceclass", "DeviceClass", false, false, {}},
      {"resource.k8s.io", "v1", "resourceclaims", "resourceclaim", "ResourceClaim", true, true, {}},
      {"resource.k8s.io",
       "v1",
       "resourceclaimtemplates",
       "resourceclaimtemplate",
       "ResourceClaimTemplate",
       true,
       false,
       {}},
      {"k8s.cni.cncf.io",
       "v1",
       "network-attachment-definitions",
       "network-attachment-definition",
       "NetworkAttachmentDefinition",
       true,
       false,
       {}},
  };
}

// An HTTP answer: code and JSON body.
struct Reply {
  int code = 200;
  json body;
};

const char* ReasonFor(int code) {
  switch (code) {
    case 400:
      return "BadRequest";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "NotFound";
    case 405:
      return "MethodNotAllowed";
    case 409:
      return "Conflict";
    case 410:
      return "Expired";
    case 415:
      return "UnsupportedMediaType";
    case 422:
      return "Invalid";
    case 503:
      return "ServiceUnavailable";
    default:
      return "InternalError";
  }
}

json StatusBody(int code, const std::string& reason, const std::string& message,
                json details = nullptr) {
  json s = {{"kind", "Status"},    {"apiVersion", "v1"}, {"metadata", json::object()},
            {"status", "Failure"}, {"message", message}, {"reason", reason},
            {"code", code}};
  if (!details.is_null()) s["details"] = std::move(details);
  return s;
}

Reply Error(int code, const std::string& message, const char* reason = nullptr,
            json details = nullptr) {
  return {code, StatusBody(code, reason ? reason : ReasonFor(code), message, std::move(details))};
}

json Details(const ResourceType& t, const std::string& name) {
  json d = {{"name", name}, {"kind", t.plural}};
  if (!t.group.empty()) d["group"] = t.group;
  return d;
}

Reply NotFound(const ResourceType& t, const std::string& name) {
  return Error(404, t.Qualified() + " \"" + name + "\" not found", "NotFound", Details(t, name));
}

Reply Conflict(const ResourceType& t, const std::string& name) {
  return Error(409,
               "Operation cannot be fulfilled on " + t.Qualified() + " \"" + name +
                   "\": the object has been modified; please apply your changes to the latest "
                   "version and try again",
               "Conflict", Details(t, name));
}

Reply InvalidReply(const ResourceType& t, const std::string& name, const FieldErrors& errs) {
  json d = Details(t, name);
  d["kind"] = t.kind;
  json causes = json::array();
  for (const FieldError& e : errs) {
    causes.push_back({{"reason", e.reason},
                      {"message", e.type + (e.detail.empty() ? "" : ": " + e.detail)},
                      {"field", e.field}});
  }
  d["causes"] = causes;
  return Error(422, InvalidMessage(t.KindGroup(), name, errs), "Invalid", d);
}

std::string NowRfc3339() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string RandomUuid(std::mt19937_64& rng) {
  uint64_t a = rng(), b = rng();
  a = (a & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // version 4
  b = (b & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // variant 1
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(a >> 32),
                static_cast<unsigned>((a >> 16) & 0xffff), static_cast<unsigned>(a & 0xffff),
                static_cast<unsigned>(b >> 48),
                static_cast<unsigned long long>(b & 0xffffffffffffULL));
  return buf;
}

// Value of a dotted field path as the real field-selector machinery renders it.
std::string FieldValue(const json& obj, const std::string& path) {
  const json* cur = &obj;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string part =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!cur->is_object()) return "";
    auto it = cur->find(part);
    if (it == cur->end()) return "";
    cur = &*it;
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  if (cur->is_string()) return cur->get<std::string>();
  if (cur->is_boolean()) return cur->get<bool>() ? "true" : "false";
  if (cur->is_number()) return cur->dump();
  return "";
}

struct Requirement {
  enum Op { kEq, kNeq, kExists, kNotExists };
  std::string key;
  Op op = kEq;
  std::string value;
};

struct Selector {
  std::vector<Requirement> fields;
  std::vector<Requirement> labels;

  bool Matches(const json& obj) const {
    for (const Requirement& r : fields) {
      std::string v = FieldValue(obj, r.key);
      if ((r.op == Requirement::kEq) != (v == r.value)) return false;
    }
    if (labels.empty()) return true;
    const json* lbls = nullptr;
    if (auto m = obj.find("metadata"); m != obj.end() && m->is_object()) {
      if (auto l = m->find("labels"); l != m->end() && l->is_object()) lbls = &*l;
    }
    for (const Requirement& r : labels) {
      std::optional<std::string> v;
      if (lbls) {
        if (auto it = lbls->find(r.key); it != lbls->end() && it->is_string()) {
          v = it->get<std::string>();
        }
      }
      switch (r.op) {
        case Requirement::kEq:
          if (!v || *v != r.value) return false;
          break;
        case Requirement::kNeq:
          if (v && *v == r.value) return false;
          break;
        case Requirement::kExists:
          if (!v) return false;
          break;
        case Requirement::kNotExists:
          if (v) return false;
          break;
      }
    }
    return true;
  }
};

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

// Parses "a=b,c!=d" (fields) or also "k", "!k" (labels). Returns an error message on failure.
std::optional<std::string> ParseRequirements(const std::string& text, bool labels,
                                             std::vector<Requirement>* out) {
  if (Trim(text).empty()) return std::nullopt;
  if (labels && text.find('(') != std::string::npos) {
    return "set-based label selectors (in, notin) are not supported: " + text;
  }
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string part =
        Trim(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    start = comma == std::string::npos ? text.size() + 1 : comma + 1;
    if (part.empty()) return "invalid selector: empty requirement in \"" + text + "\"";
    Requirement r;
    size_t pos;
    if ((pos = part.find("!=")) != std::string::npos) {
      r.op = Requirement::kNeq;
      r.key = Trim(part.substr(0, pos));
      r.value = Trim(part.substr(pos + 2));
    } else if ((pos = part.find("==")) != std::string::npos) {
      r.key = Trim(part.substr(0, pos));
      r.value = Trim(part.substr(pos + 2));
    } else if ((pos = part.find('=')) != std::string::npos) {
      r.key = Trim(part.substr(0, pos));
      r.value = Trim(part.substr(pos + 1));
    } else if (labels && part[0] == '!') {
      r.op = Requirement::kNotExists;
      r.key = Trim(part.substr(1));
    } else if (labels) {
      r.op = Requirement::kExists;
      r.key = part;
    } else {
      return "invalid field selector: \"" + part + "\": expected key=value or key!=value";
    }
    if (r.key.empty() || r.key.find_first_of(" <>") != std::string::npos) {
      return "invalid selector requirement: \"" + part + "\"";
    }
    out->push_back(std::move(r));
  }
  return std::nullopt;
}

// The object parts a plain update may change for generation purposes: all but metadata/status.
json SpecPart(const json& obj) {
  json s = obj;
  if (s.is_object()) {
    s.erase("metadata");
    s.erase("status");
    s.erase("apiVersion");
    s.erase("kind");
  }
  return s;
}

// Key of a status.devices list-map entry (driver, pool, device, shareID).
std::string DeviceKey(const json& e) {
  auto s = [&](const char* k) {
    auto it = e.find(k);
    return it != e.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  return s("driver") + "/" + s("pool") + "/" + s("device") + "/" + s("shareID");
}

std::string DeviceKeyPath(const json& e) {
  auto s = [&](const char* k) {
    auto it = e.find(k);
    return it != e.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  std::string p = ".status.devices[device=\"" + s("device") + "\",driver=\"" + s("driver") +
                  "\",pool=\"" + s("pool") + "\"";
  if (!s("shareID").empty()) p += ",shareID=\"" + s("shareID") + "\"";
  return p + "]";
}

// Converts a YAML node to JSON (plain scalars typed like YAML 1.2 core schema).
json YamlToJson(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return nullptr;
    case YAML::NodeType::Sequence: {
      json a = json::array();
      for (const auto& c : n) a.push_back(YamlToJson(c));
      return a;
    }
    case YAML::NodeType::Map: {
      json o = json::object();
      for (const auto& kv : n) o[kv.first.as<std::string>()] = YamlToJson(kv.second);
      return o;
    }
    case YAML::NodeType::Scalar: {
      const std::string& s = n.Scalar();
      if (n.Tag() == "!") return s;  // quoted
      if (s == "true" || s == "True") return true;
      if (s == "false" || s == "False") return false;
      if (s == "null" || s == "~" || s.empty()) return nullptr;
      static const std::regex int_re("^[-+]?[0-9]+$");
      static const std::regex float_re(R"(^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$)");
      if (std::regex_match(s, int_re)) {
        try {
          return std::stoll(s);
        } catch (...) {
          return s;
        }
      }
      if (std::regex_match(s, float_re)) {
        try {
          return std::stod(s);
        } catch (...) {
          return s;
        }
      }
      return s;
    }
  }
  return nullptr;
}

struct Event {
  uint64_t rv;
  const ResourceType* type;
  std::string kind;  // ADDED / MODIFIED / DELETED
  std::shared_ptr<const json> object;
  std::shared_ptr<const json> old;  // MODIFIED only
  std::shared_ptr<const std::string> line;
};

std::string EventLine(const std::string& type, const json& obj) {
  json e = {{"type", type}, {"object", obj}};
  return e.dump() + "\n";
}

}  // namespace

class ApiServer::Impl {
 public:
  explicit Impl(ApiServerOptions opt) : opt_(std::move(opt)), types_(BuiltinTypes()) {
    rng_.seed(std::random_device{}());
  }

  absl::Status Start(int* port);
  void Stop();
  bool tls() const { return !opt_.tls_cert_file.empty(); }
  absl::Status Seed(const json& obj);
  std::string Kubeconfig(int port) const;

 private:
  struct Target {
    const ResourceType* type = nullptr;
    std::string ns, name, sub;
  };

  void Handle(const httplib::Request& req, httplib::Response& res);
  bool HandleDiscovery(const std::string& path, httplib::Response& res);
  bool HandleAdmin(const httplib::Request& req, httplib::Response& res);
  std::optional<Reply> ParseTarget(const std::string& path, Target* t) const;
  void Count(const std::string& verb, const Target& t);

  // Store operations; each takes mu_.
  Reply List(const Target& t, const Selector& sel);
  Reply Get(const Target& t);
  Reply Create(const Target& t, json body, bool admin);
  Reply Update(const Target& t, json body);
  Reply Patch(const Target& t, const std::string& content_type, const std::string& body,
              const std::string& manager, bool force);
  Reply Delete(const Target& t, const json& options);
  Reply DeleteCollection(const Target& t, const Selector& sel);
  void Watch(const Target& t, Selector sel, const httplib::Request& req, httplib::Response& res);

  // With mu_ held.
  Reply CreateLocked(const ResourceType& type, const std::string& ns, json body, bool admin);
  Reply UpdateLocked(const Target& t, json body, bool enforce_rv);
  Reply ValidateLocked(const ResourceType& type, const json& obj);
  void DeleteLocked(const ResourceType& type, const std::string& key);
  void RecordLocked(const ResourceType& type, const std::string& kind, const json& obj,
                    const json* old);
  std::string ObjKey(const ResourceType& t, const std::string& ns, const std::string& name) const {
    return t.Qualified() + "/" + ns + "/" + name;
  }

  ApiServerOptions opt_;
  std::vector<ResourceType> types_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::mt19937_64 rng_;
  uint64_t rv_ = 0;
  uint64_t floor_ = 0;  // every event with rv > floor_ is in history_
  std::deque<Event> history_;
  // type -> "ns/name" -> object
  std::map<const ResourceType*, std::map<std::string, json>> objects_;
  // object key -> field manager -> status.devices entry keys it applied
  std::map<std::string, std::map<std::string, std::set<std::string>>> owners_;
  bool stopping_ = false;
  uint64_t outage_epoch_ = 0;
  Clock::time_point outage_until_{};

  std::mutex stats_mu_;
  std::map<std::string, std::map<std::string, uint64_t>> stats_;
  uint64_t writes_ = 0;
  uint64_t total_ = 0;
};

absl::Status ApiServer::Impl::Start(int* port) {
  if (tls()) {
    if (opt_.tls_key_file.empty()) {
      return absl::InvalidArgumentError("--tls-cert needs --tls-key");
    }
    auto s =
        std::make_unique<httplib::SSLServer>(opt_.tls_cert_file.c_str(), opt_.tls_key_file.c_str());
    if (!s->is_valid()) {
      return absl::InvalidArgumentError("cannot load TLS certificate " + opt_.tls_cert_file +
                                        " / key " + opt_.tls_key_file);
    }
    server_ = std::move(s);
  } else {
    server_ = std::make_unique<httplib::Server>();
    // Like Go's net/http (the real API server): without it every request after the first on
    // a kept-alive connection waits ~40 ms for a delayed ACK (Nagle holds the body back).
    server_->set_tcp_nodelay(true);
  }
  int threads = opt_.max_threads;
  server_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server_->set_payload_max_length(16 << 20);
  if (opt_.log_requests) {
    server_->set_logger([](const httplib::Request& req, const httplib::Response& res) {
      spdlog::debug("{} {} -> {}", req.method, req.target, res.status);
    });
  }
  server_->set_keep_alive_timeout(30);
  auto handler = [this](const httplib::Request& req, httplib::Response& res) {
    // One boundary for anything unexpected (e.g. a JSON type error on odd input): a 500 Status,
    // never a dead server.
    try {
      Handle(req, res);
    } catch (const std::exception& e) {
      res.status = 500;
      res.set_content(
          StatusBody(500, "InternalError", std::string("internal error: ") + e.what()).dump(),
          "application/json");
    }
  };
  const char* any = R"(/.*)";
  server_->Get(any, handler);
  server_->Post(any, handler);
  server_->Put(any, handler);
  server_->Patch(any, handler);
  server_->Delete(any, handler);
  server_->Options(any, handler);
  int p;
  if (opt_.port == 0) {
    p = server_->bind_to_any_port(opt_.host);
  } else {
    p = server_->bind_to_port(opt_.host, opt_.port) ? opt_.port : -1;
  }
  if (p <= 0) {
    return absl::UnavailableError("cannot listen on " + opt_.host + ":" +
                                  std::to_string(opt_.port));
  }
  *port = p;
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  // httplib's stop() is a no-op until the accept loop runs; wait for it so Stop() cannot race.
  while (!server_->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return absl::OkStatus();
}

void ApiServer::Impl::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

void ApiServer::Impl::Count(const std::string& verb, const Target& t) {
  std::string res = t.type->plural;
  if (t.type->group == "events.k8s.io") res = "events.events.k8s.io";
  if (!t.sub.empty()) res += "/" + t.sub;
  std::lock_guard<std::mutex> l(stats_mu_);
  ++stats_[verb][res];
  ++total_;
  if (verb == "create" || verb == "update" || verb == "patch" || verb == "delete" ||
      verb == "deletecollection") {
    ++writes_;
  }
}

bool ApiServer::Impl::HandleAdmin(const httplib::Request& req, httplib::Response& res) {
  auto send = [&](int code, const json& j) {
    res.status = code;
    res.set_content(j.dump(), "application/json");
  };
  if (req.path == "/_knd/outage" && req.method == "POST") {
    double secs = 0;
    if (req.has_param("seconds")) {
      try {
        secs = std::stod(req.get_param_value("seconds"));
      } catch (...) {
        secs = -1;
      }
    }
    if (!(secs > 0 && secs <= 3600)) {
      send(400, StatusBody(400, "BadRequest", "outage: seconds must be in (0, 3600]"));
      return true;
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      outage_until_ = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(secs * 1000));
      ++outage_epoch_;
    }
    cv_.notify_all();
    send(200, {{"outageSeconds", secs}});
    return true;
  }
  if (req.path == "/_knd/stats" && req.method == "GET") {
    std::lock_guard<std::mutex> l(stats_mu_);
    json by_verb = json::object();
    for (const auto& [verb, m] : stats_) {
      for (const auto& [r, n] : m) by_verb[verb][r] = n;
    }
    uint64_t rv;
    {
      std::lock_guard<std::mutex> l2(mu_);
      rv = rv_;
    }
    send(200, {{"requests", by_verb},
               {"requestsTotal", total_},
               {"writesTotal", writes_},
               {"resourceVersion", rv}});
    return true;
  }
  if (req.path == "/_knd/reset-stats" && req.method == "POST") {
    std::lock_guard<std::mutex> l(stats_mu_);
    stats_.clear();
    writes_ = total_ = 0;
    send(200, json::object());
    return true;
  }
  send(404, StatusBody(404, "NotFound", "unknown admin endpoint " + req.method + " " + req.path));
  return true;
}

bool ApiServer::Impl::HandleDiscovery(const std::string& path, httplib::Response& res) {
  auto send = [&](const json& j) { res.set_content(j.dump(), "application/json"); };
  auto resource_list = [&](const std::string& group, const std::string& version) {
    json resources = json::array();
    for (const ResourceType& t : types_) {
      if (t.group != group || t.version != version) continue;
      json verbs = {"create", "delete", "deletecollection", "get",
                    "list",   "patch",  "update",           "watch"};
      resources.push_back({{"name", t.plural},
                           {"singularName", t.singular},
                           {"namespaced", t.namespaced},
                           {"kind", t.kind},
                           {"verbs", verbs}});
      if (t.status_subresource) {
        resources.push_back({{"name", t.plural + "/status"},
                             {"singularName", ""},
                             {"namespaced", t.namespaced},
                             {"kind", t.kind},
                             {"verbs", {"get", "patch", "update"}}});
      }
    }
    return json{{"kind", "APIResourceList"},
                {"apiVersion", "v1"},
                {"groupVersion", group.empty() ? version : group + "/" + version},
                {"resources", resources}};
  };
  if (path == "/version") {
    send({{"major", "1"},
          {"minor", "35"},
          {"gitVersion", "v1.35.0-knd-apiserver"},
          {"platform", "linux/amd64"}});
    return true;
  }
  if (path == "/healthz" || path == "/livez" || path == "/readyz") {
    res.set_content("ok", "text/plain");
    return true;
  }
  if (path == "/api") {
    send({{"kind", "APIVersions"},
          {"versions", {"v1"}},
          {"serverAddressByClientCIDRs",
           {{{"clientCIDR", "0.0.0.0/0"}, {"serverAddress", opt_.host}}}}});
    return true;
  }
  if (path == "/api/v1") {
    send(resource_list("", "v1"));
    return true;
  }
  std::set<std::string> groups;
  for (const ResourceType& t : types_) {
    if (!t.group.empty()) groups.insert(t.group);
  }
  auto group_json = [&](const std::string& g) {
    std::string gv = g + "/v1";
    return json{{"name", g},
                {"versions", {{{"groupVersion", gv}, {"version", "v1"}}}},
                {"preferredVersion", {{"groupVersion", gv}, {"version", "v1"}}}};
  };
  if (path == "/apis") {
    json list = json::array();
    for (const std::string& g : groups) list.push_back(group_json(g));
    send({{"kind", "APIGroupList"}, {"apiVersion", "v1"}, {"groups", list}});
    return true;
  }
  for (const std::string& g : groups) {
    if (path == "/apis/" + g) {
      json j = group_json(g);
      j["kind"] = "APIGroup";
      j["apiVersion"] = "v1";
      send(j);
      return true;
    }
    if (path == "/apis/" + g + "/v1") {
      send(resource_list(g, "v1"));
      return true;
    }
  }
  return false;
}

std::optional<Reply> ApiServer::Impl::ParseTarget(const std::string& path, Target* t) const {
  std::vector<std::string> seg;
  size_t start = 1;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    std::string s =
        path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (!s.empty()) seg.push_back(s);
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  Reply not_found = Error(404, "the server could not find the requested resource", "NotFound");
  std::string group, version;
  size_t i;
  if (seg.size() >= 2 && seg[0] == "api") {
    version = seg[1];
    i = 2;
  } else if (seg.size() >= 3 && seg[0] == "apis") {
    group = seg[1];
    version = seg[2];
    i = 3;
  } else {
    return not_found;
  }
  std::vector<std::string> rest(seg.begin() + i, seg.end());
  std::string ns;
  // /namespaces/<ns>/<plural>... but /namespaces[/<name>[/status]] is the namespaces resource.
  if (rest.size() >= 3 && rest[0] == "namespaces" && !(rest.size() == 3 && rest[2] == "status")) {
    ns = rest[1];
    rest.erase(rest.begin(), rest.begin() + 2);
  }
  if (rest.empty() || rest.size() > 3) return not_found;
  for (const ResourceType& rt : types_) {
    if (rt.group == group && rt.version == version && rt.plural == rest[0]) {
      t->type = &rt;
      break;
    }
  }
  if (!t->type) return not_found;
  if (!ns.empty() && !t->type->namespaced) return not_found;
  t->ns = ns;
  if (rest.size() >= 2) t->name = rest[1];
  if (rest.size() == 3) {
    t->sub = rest[2];
    if (t->sub != "status" || !t->type->status_subresource) return not_found;
  }
  return std::nullopt;
}

void ApiServer::Impl::Handle(const httplib::Request& req, httplib::Response& res) {
  auto send = [&](const Reply& r) {
    res.status = r.code;
    res.set_content(r.body.dump(), "application/json");
  };
  if (req.path.rfind("/_knd/", 0) == 0) {
    HandleAdmin(req, res);
    return;
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    if (Clock::now() < outage_until_) {
      send(Error(503, "the server is currently unable to handle the request (simulated outage)",
                 "ServiceUnavailable"));
      return;
    }
  }
  bool health = req.path == "/healthz" || req.path == "/livez" || req.path == "/readyz";
  if (!opt_.token.empty() && !health &&
      req.get_header_value("Authorization") != "Bearer " + opt_.token) {
    send(Error(401, "Unauthorized", "Unauthorized"));
    return;
  }
  if (req.method == "GET" && HandleDiscovery(req.path, res)) return;
  Target t;
  if (auto err = ParseTarget(req.path, &t)) {
    send(*err);
    return;
  }
  Selector sel;
  if (req.has_param("fieldSelector")) {
    if (auto e = ParseRequirements(req.get_param_value("fieldSelector"), false, &sel.fields)) {
      send(Error(400, *e));
      return;
    }
    for (const Requirement& r : sel.fields) {
      bool ok = r.key == "metadata.name" || r.key == "metadata.namespace";
      for (const std::string& f : t.type->field_labels) ok = ok || f == r.key;
      if (!ok) {
        std::string known = "\"metadata.name\", \"metadata.namespace\"";
        for (const std::string& f : t.type->field_labels) known += ", \"" + f + "\"";
        send(Error(400, "\"" + r.key + "\" is not a known field selector: only " + known));
        return;
      }
    }
  }
  if (req.has_param("labelSelector")) {
    if (auto e = ParseRequirements(req.get_param_value("labelSelector"), true, &sel.labels)) {
      send(Error(400, *e));
      return;
    }
  }
  if (req.method == "GET") {
    if (t.name.empty()) {
      std::string w = req.has_param("watch") ? req.get_param_value("watch") : "";
      if (w == "1" || w == "true") {
        Count("watch", t);
        Watch(t, std::move(sel), req, res);
        return;
      }
      Count("list", t);
      send(List(t, sel));
    } else {
      Count("get", t);
      send(Get(t));
    }
    return;
  }
  auto parse_body = [&](json* out) -> bool {
    json j = json::parse(req.body, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      send(Error(400, "the request body is not a JSON object"));
      return false;
    }
    *out = std::move(j);
    return true;
  };
  if (req.method == "POST") {
    Count("create", t);
    if (!t.name.empty()) {
      send(Error(405, "POST is not supported on a named " + t.type->Qualified()));
      return;
    }
    json body;
    if (!parse_body(&body)) return;
    send(Create(t, std::move(body), false));
    return;
  }
  if (req.method == "PUT") {
    Count("update", t);
    if (t.name.empty()) {
      send(Error(405, "PUT needs an object name"));
      return;
    }
    json body;
    if (!parse_body(&body)) return;
    send(Update(t, std::move(body)));
    return;
  }
  if (req.method == "PATCH") {
    Count("patch", t);
    if (t.name.empty()) {
      send(Error(405, "PATCH needs an object name"));
      return;
    }
    std::string force = req.has_param("force") ? req.get_param_value("force") : "";
    send(Patch(t, req.get_header_value("Content-Type"), req.body,
               req.has_param("fieldManager") ? req.get_param_value("fieldManager") : "",
               force == "true" || force == "1"));
    return;
  }
  if (req.method == "DELETE") {
    json options = json::object();
    if (!req.body.empty()) {
      options = json::parse(req.body, nullptr, false);
      if (options.is_discarded() || !options.is_object()) {
        send(Error(400, "the DeleteOptions body is not a JSON object"));
        return;
      }
    }
    if (t.name.empty()) {
      Count("deletecollection", t);
      send(DeleteCollection(t, sel));
    } else {
      Count("delete", t);
      send(Delete(t, options));
    }
    return;
  }
  send(Error(405, "method " + req.method + " is not supported"));
}

Reply ApiServer::Impl::List(const Target& t, const Selector& sel) {
  std::lock_guard<std::mutex> l(mu_);
  json items = json::array();
  for (const auto& [key, obj] : objects_[t.type]) {
    if (!t.ns.empty() && FieldValue(obj, "metadata.namespace") != t.ns) continue;
    if (sel.Matches(obj)) items.push_back(obj);
  }
  return {200,
          {{"kind", t.type->kind + "List"},
           {"apiVersion", t.type->ApiVersion()},
           {"metadata", {{"resourceVersion", std::to_string(rv_)}}},
           {"items", std::move(items)}}};
}

Reply ApiServer::Impl::Get(const Target& t) {
  std::lock_guard<std::mutex> l(mu_);
  auto& m = objects_[t.type];
  auto it = m.find(t.ns + "/" + t.name);
  if (it == m.end()) return NotFound(*t.type, t.name);
  return {200, it->second};
}

Reply ApiServer::Impl::Create(const Target& t, json body, bool admin) {
  std::lock_guard<std::mutex> l(mu_);
  if (t.type->namespaced && t.ns.empty()) {
    return Error(404,
                 "the server could not find the requested resource (namespace missing in "
                 "the path of a namespaced " +
                     t.type->Qualified() + ")");
  }
  return CreateLocked(*t.type, t.ns, std::move(body), admin);
}

Reply ApiServer::Impl::ValidateLocked(const ResourceType& type, const json& obj) {
  std::string name = FieldValue(obj, "metadata.name");
  FieldErrors errs;
  if (type.group == "resource.k8s.io" && type.plural == "resourceslices") {
    errs = ValidateResourceSlice(obj);
  } else if (type.group == "resource.k8s.io" && type.plural == "resourceclaims") {
    errs = ValidateResourceClaimStatus(obj);
  }
  if (!errs.empty()) return InvalidReply(type, name, errs);
  return {200, nullptr};
}

Reply ApiServer::Impl::CreateLocked(const ResourceType& type, const std::string& ns, json body,
                                    bool admin) {
  if (auto k = body.find("kind"); k != body.end() && (!k->is_string() || *k != type.kind)) {
    return Error(400, "the kind of the provided object (" + k->dump() +
                          ") does not match the resource " + type.Qualified());
  }
  if (auto a = body.find("apiVersion");
      a != body.end() && (!a->is_string() || *a != type.ApiVersion())) {
    return Error(400, "the apiVersion of the provided object (" + a->dump() + ") does not match " +
                          type.ApiVersion());
  }
  body["kind"] = type.kind;
  body["apiVersion"] = type.ApiVersion();
  json& md = body["metadata"];
  if (!md.is_object()) {
    if (!md.is_null()) return Error(400, "metadata must be an object");
    md = json::object();
  }
  if (type.namespaced) {
    std::string bns = FieldValue(body, "metadata.namespace");
    if (!bns.empty() && bns != ns) {
      return Error(400,
                   "the namespace of the provided object does not match the namespace sent "
                   "on the request");
    }
    md["namespace"] = ns;
  } else {
    md.erase("namespace");
  }
  std::string name = FieldValue(body, "metadata.name");
  auto& objs = objects_[&type];
  FieldErrors errs;
  if (name.empty()) {
    std::string prefix = FieldValue(body, "metadata.generateName");
    ValidateObjectName(prefix, true, &errs);
    if (!errs.empty()) return InvalidReply(type, prefix, errs);
    static const char kChars[] = "bcdfghjklmnpqrstvwxz2456789";
    for (int attempt = 0; attempt < 100 && name.empty(); ++attempt) {
      std::string cand = prefix;
      for (int i = 0; i < 5; ++i) cand += kChars[rng_() % (sizeof(kChars) - 1)];
      if (!objs.count(ns + "/" + cand)) name = cand;
    }
    md["name"] = name;
  } else {
    ValidateObjectName(name, false, &errs);
    if (!errs.empty()) return InvalidReply(type, name, errs);
  }
  md["name"] = name;
  if (objs.count(ns + "/" + name)) {
    return Error(409, type.Qualified() + " \"" + name + "\" already exists", "AlreadyExists",
                 Details(type, name));
  }
  if (!admin && type.status_subresource) {
    // Like the real strategies: claims start without status, pods as Pending.
    if (type.plural == "pods") {
      body["status"] = {{"phase", "Pending"}};
    } else if (type.plural == "resourceclaims") {
      body.erase("status");
    }
  }
  if (Reply v = ValidateLocked(type, body); v.code != 200) return v;
  md["uid"] = RandomUuid(rng_);
  md["creationTimestamp"] = NowRfc3339();
  md["generation"] = 1;
  md.erase("deletionTimestamp");
  md.erase("managedFields");
  md["resourceVersion"] = std::to_string(++rv_);
  owners_.erase(ObjKey(type, ns, name));
  objs[ns + "/" + name] = body;
  RecordLocked(type, "ADDED", body, nullptr);
  return {201, body};
}

Reply ApiServer::Impl::Update(const Target& t, json body) {
  std::lock_guard<std::mutex> l(mu_);
  return UpdateLocked(t, std::move(body), true);
}

Reply ApiServer::Impl::UpdateLocked(const Target& t, json body, bool enforce_rv) {
  const ResourceType& type = *t.type;
  auto& objs = objects_[&type];
  auto it = objs.find(t.ns + "/" + t.name);
  if (it == objs.end()) return NotFound(type, t.name);
  const json& old = it->second;
  if (body["metadata"].is_null()) body["metadata"] = json::object();
  if (!body["metadata"].is_object()) return Error(400, "metadata must be an object");
  std::string bname = FieldValue(body, "metadata.name");
  if (!bname.empty() && bname != t.name) {
    return Error(400, "the name of the object (" + bname +
                          ") does not match the name on the URL (" + t.name + ")");
  }
  std::string bns = FieldValue(body, "metadata.namespace");
  if (type.namespaced && !bns.empty() && bns != t.ns) {
    return Error(400,
                 "the namespace of the provided object does not match the namespace sent "
                 "on the request");
  }
  if (auto k = body.find("kind"); k != body.end() && (!k->is_string() || *k != type.kind)) {
    return Error(400,
                 "the kind of the provided object (" + k->dump() + ") does not match " + type.kind);
  }
  std::string brv = FieldValue(body, "metadata.resourceVersion");
  if (enforce_rv && !brv.empty() && brv != FieldValue(old, "metadata.resourceVersion")) {
    return Conflict(type, t.name);
  }
  json next;
  if (t.sub == "status") {
    next = old;
    if (body.contains("status") && !body["status"].is_null()) {
      next["status"] = body["status"];
    } else {
      next.erase("status");
    }
    if (type.plural == "pods") {
      // Pod status writers (kubelet, Multus) may also change labels and annotations.
      for (const char* f : {"labels", "annotations"}) {
        if (body["metadata"].contains(f)) {
          next["metadata"][f] = body["metadata"][f];
        } else {
          next["metadata"].erase(f);
        }
      }
    }
  } else {
    next = std::move(body);
    if (type.status_subresource) {
      if (old.contains("status")) {
        next["status"] = old["status"];
      } else {
        next.erase("status");
      }
    }
    json& md = next["metadata"];
    for (const char* f : {"uid", "creationTimestamp", "generation", "deletionTimestamp"}) {
      if (old["metadata"].contains(f)) {
        md[f] = old["metadata"][f];
      } else {
        md.erase(f);
      }
    }
    md["name"] = t.name;
    if (type.namespaced) md["namespace"] = t.ns;
    md.erase("managedFields");
    next["kind"] = type.kind;
    next["apiVersion"] = type.ApiVersion();
    if (SpecPart(next) != SpecPart(old)) {
      const json& g = old["metadata"]["generation"];
      md["generation"] = (g.is_number_integer() ? g.get<int64_t>() : 0) + 1;
    }
  }
  next["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"];
  if (Reply v = ValidateLocked(type, next); v.code != 200) return v;
  if (next == old) return {200, old};  // no-op: no new resourceVersion, no event
  // Finalizers all gone on an object being deleted: it goes away now.
  const json* fin =
      next["metadata"].contains("finalizers") ? &next["metadata"]["finalizers"] : nullptr;
  if (next["metadata"].contains("deletionTimestamp") &&
      (!fin || !fin->is_array() || fin->empty())) {
    json gone = next;
    DeleteLocked(type, t.ns + "/" + t.name);
    gone["metadata"]["resourceVersion"] = std::to_string(rv_);
    return {200, gone};
  }
  next["metadata"]["resourceVersion"] = std::to_string(++rv_);
  json prev = std::move(it->second);
  it->second = next;
  RecordLocked(type, "MODIFIED", next, &prev);
  return {200, next};
}

Reply ApiServer::Impl::Patch(const Target& t, const std::string& content_type,
                             const std::string& body_text, const std::string& manager, bool force) {
  std::string ct = content_type.substr(0, content_type.find(';'));
  json patch = json::parse(body_text, nullptr, false);
  if (patch.is_discarded() && ct == "application/apply-patch+yaml") {
    auto docs = ParseManifests(body_text);
    if (docs.ok() && docs->size() == 1) patch = (*docs)[0];
  }
  if (patch.is_discarded()) {
    return Error(400, "the patch body is not valid JSON");
  }
  std::lock_guard<std::mutex> l(mu_);
  const ResourceType& type = *t.type;
  auto& objs = objects_[&type];
  auto it = objs.find(t.ns + "/" + t.name);
  if (ct == "application/merge-patch+json" || ct == "application/strategic-merge-patch+json") {
    if (it == objs.end()) return NotFound(type, t.name);
    if (!patch.is_object()) return Error(400, "a merge patch must be a JSON object");
    json next = it->second;
    next.merge_patch(patch);
    return UpdateLocked(t, std::move(next), true);
  }
  if (ct == "application/json-patch+json") {
    if (it == objs.end()) return NotFound(type, t.name);
    try {
      json next = it->second.patch(patch);
      return UpdateLocked(t, std::move(next), true);
    } catch (const json::exception& e) {
      return Error(422, std::string("the JSON patch cannot be applied: ") + e.what(), "Invalid");
    }
  }
  if (ct != "application/apply-patch+yaml") {
    return Error(415, "unsupported patch content type \"" + ct + "\"");
  }
  // Server-side apply.
  if (manager.empty()) {
    return Error(400, "PATCH " + type.Qualified() + " \"" + t.name +
                          "\": fieldManager: Required value: is required for apply patch");
  }
  if (!patch.is_object()) return Error(400, "an apply patch must be a JSON object");
  if (patch.contains("metadata") && !patch["metadata"].is_object()) {
    return Error(400, "metadata must be an object");
  }
  std::string pname = FieldValue(patch, "metadata.name");
  if (!pname.empty() && pname != t.name) {
    return Error(400, "the name of the object (" + pname +
                          ") does not match the name on the "
                          "URL (" +
                          t.name + ")");
  }
  if (it == objs.end()) {
    if (!t.sub.empty()) return NotFound(type, t.name);
    patch["metadata"]["name"] = t.name;
    Reply r = CreateLocked(type, t.ns, patch, false);
    return r;
  }
  const json& old = it->second;
  json applied = patch;
  applied.erase("apiVersion");
  applied.erase("kind");
  // Only labels, annotations, finalizers and ownerReferences of metadata are appliable.
  json md_patch = json::object();
  if (applied.contains("metadata") && applied["metadata"].is_object()) {
    for (const char* f : {"labels", "annotations", "finalizers", "ownerReferences"}) {
      if (applied["metadata"].contains(f)) md_patch[f] = applied["metadata"][f];
    }
  }
  applied.erase("metadata");
  if (!md_patch.empty()) applied["metadata"] = md_patch;
  std::string okey = ObjKey(type, t.ns, t.name);
  std::map<std::string, std::set<std::string>> owners = owners_[okey];
  json next = old;
  if (applied.contains("status") && !applied["status"].is_object()) {
    return Error(400, "status must be an object");
  }
  if (type.plural == "resourceclaims" && t.sub == "status") {
    // A manager that no longer lists status.devices gives up all its entries.
    json empty = json::array();
    const json* devs = &empty;
    if (applied.contains("status") && applied["status"].contains("devices")) {
      devs = &applied["status"]["devices"];
    }
    if (!devs->is_array()) return Error(400, "status.devices must be a list");
    // status.devices is a list-map keyed by driver/pool/device/shareID; each entry belongs to
    // the manager that applied it.
    json current = old.contains("status") && old["status"].contains("devices") &&
                           old["status"]["devices"].is_array()
                       ? old["status"]["devices"]
                       : json::array();
    std::set<std::string> mine = owners[manager];
    std::set<std::string> listed;
    std::vector<std::string> conflicts;
    for (const json& e : *devs) {
      if (!e.is_object()) return Error(400, "status.devices entries must be objects");
      std::string k = DeviceKey(e);
      listed.insert(k);
      for (auto& [m, keys] : owners) {
        if (m == manager || !keys.count(k)) continue;
        for (const json& c : current) {
          if (DeviceKey(c) == k && c != e)
            conflicts.push_back("conflict with \"" + m + "\": " + DeviceKeyPath(e));
        }
      }
    }
    if (!conflicts.empty() && !force) {
      std::string msg = "Apply failed with " + std::to_string(conflicts.size()) + " conflict" +
                        (conflicts.size() > 1 ? "s" : "") + ": ";
      for (size_t i = 0; i < conflicts.size(); ++i) msg += (i ? "; " : "") + conflicts[i];
      return Error(409, msg, "Conflict", Details(type, t.name));
    }
    json merged = json::array();
    std::set<std::string> placed;
    for (const json& c : current) {
      std::string k = DeviceKey(c);
      if (listed.count(k)) {
        for (const json& e : *devs) {
          if (DeviceKey(e) == k && !placed.count(k)) {
            merged.push_back(e);
            placed.insert(k);
          }
        }
      } else if (!mine.count(k)) {
        merged.push_back(c);  // someone else's entry: untouched
      }
    }
    for (const json& e : *devs) {
      std::string k = DeviceKey(e);
      if (!placed.count(k)) {
        merged.push_back(e);
        placed.insert(k);
      }
    }
    for (auto& [m, keys] : owners) {
      if (m == manager) continue;
      for (const std::string& k : listed) keys.erase(k);
    }
    owners[manager] = listed;
    if (applied.contains("status")) applied["status"].erase("devices");
    if (!next["status"].is_object()) next["status"] = json::object();
    next["status"]["devices"] = merged;
  }
  next.merge_patch(applied);
  Reply r = UpdateLocked(t, std::move(next), false);
  if (r.code == 200) owners_[okey] = std::move(owners);
  return r;
}

void ApiServer::Impl::DeleteLocked(const ResourceType& type, const std::string& key) {
  // Work list: the object, then what it owns (ownerReferences) and, for a namespace, what is
  // in it — like the garbage collector and namespace controller, but at once.
  std::vector<std::pair<const ResourceType*, std::string>> work = {{&type, key}};
  std::set<std::string> done;
  while (!work.empty()) {
    auto [t, k] = work.back();
    work.pop_back();
    auto& objs = objects_[t];
    auto it = objs.find(k);
    if (it == objs.end() || !done.insert(t->Qualified() + "/" + k).second) continue;
    json obj = std::move(it->second);
    objs.erase(it);
    std::string uid = FieldValue(obj, "metadata.uid");
    std::string name = FieldValue(obj, "metadata.name");
    owners_.erase(ObjKey(*t, FieldValue(obj, "metadata.namespace"), name));
    obj["metadata"]["resourceVersion"] = std::to_string(++rv_);
    RecordLocked(*t, "DELETED", obj, nullptr);
    for (auto& [ot, m] : objects_) {
      for (const auto& [ok, o] : m) {
        bool dependent = t->plural == "namespaces" && t->group.empty() && ot->namespaced &&
                         FieldValue(o, "metadata.namespace") == name;
        const json* refs = nullptr;
        if (o["metadata"].contains("ownerReferences")) refs = &o["metadata"]["ownerReferences"];
        if (refs && refs->is_array()) {
          for (const json& r : *refs) {
            if (FieldValue(r, "uid") == uid) dependent = true;
          }
        }
        if (dependent) work.push_back({ot, ok});
      }
    }
  }
}

Reply ApiServer::Impl::Delete(const Target& t, const json& options) {
  std::lock_guard<std::mutex> l(mu_);
  auto& objs = objects_[t.type];
  std::string key = t.ns + "/" + t.name;
  auto it = objs.find(key);
  if (it == objs.end()) return NotFound(*t.type, t.name);
  if (options.contains("preconditions") && options["preconditions"].is_object()) {
    const json& p = options["preconditions"];
    std::string uid = FieldValue(p, "uid"), rv = FieldValue(p, "resourceVersion");
    if ((!uid.empty() && uid != FieldValue(it->second, "metadata.uid")) ||
        (!rv.empty() && rv != FieldValue(it->second, "metadata.resourceVersion"))) {
      return Conflict(*t.type, t.name);
    }
  }
  const json& md = it->second["metadata"];
  if (md.contains("finalizers") && md["finalizers"].is_array() && !md["finalizers"].empty()) {
    // Finalizers keep the object until their owners remove them.
    if (md.contains("deletionTimestamp")) return {200, it->second};
    json next = it->second;
    next["metadata"]["deletionTimestamp"] = NowRfc3339();
    next["metadata"]["resourceVersion"] = std::to_string(++rv_);
    json prev = std::move(it->second);
    it->second = next;
    RecordLocked(*t.type, "MODIFIED", next, &prev);
    return {200, next};
  }
  json obj = it->second;
  DeleteLocked(*t.type, key);
  obj["metadata"]["resourceVersion"] = std::to_string(rv_);
  return {200, obj};
}

Reply ApiServer::Impl::DeleteCollection(const Target& t, const Selector& sel) {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<std::string> keys;
  for (const auto& [key, obj] : objects_[t.type]) {
    if (!t.ns.empty() && FieldValue(obj, "metadata.namespace") != t.ns) continue;
    if (sel.Matches(obj)) keys.push_back(key);
  }
  json items = json::array();
  for (const std::string& k : keys) {
    auto& objs = objects_[t.type];
    auto it = objs.find(k);
    if (it == objs.end()) continue;  // went with an owner deleted before it
    json obj = it->second;
    DeleteLocked(*t.type, k);
    items.push_back(std::move(obj));
  }
  return {200,
          {{"kind", t.type->kind + "List"},
           {"apiVersion", t.type->ApiVersion()},
           {"metadata", {{"resourceVersion", std::to_string(rv_)}}},
           {"items", std::move(items)}}};
}

void ApiServer::Impl::RecordLocked(const ResourceType& type, const std::string& kind,
                                   const json& obj, const json* old) {
  Event e;
  e.rv = rv_;
  e.type = &type;
  e.kind = kind;
  e.object = std::make_shared<const json>(obj);
  if (old) e.old = std::make_shared<const json>(*old);
  e.line = std::make_shared<const std::string>(EventLine(kind, obj));
  history_.push_back(std::move(e));
  while (history_.size() > opt_.history_size) {
    floor_ = history_.front().rv;
    history_.pop_front();
  }
  cv_.notify_all();
}

void ApiServer::Impl::Watch(const Target& t, Selector sel, const httplib::Request& req,
                            httplib::Response& res) {
  struct State {
    std::vector<std::string> pending;
    uint64_t last = 0;
    Clock::time_point deadline;
    Clock::time_point last_write;
    uint64_t epoch = 0;
    bool bookmarks = false;
    bool finished = false;
  };
  auto st = std::make_shared<State>();
  // Without timeoutSeconds a watch lasts 10 minutes (client-go asks for 5-10 anyway); the
  // bound matters because a watch whose client vanished is only noticed on the next write.
  int timeout = 600;
  if (req.has_param("timeoutSeconds")) {
    try {
      timeout = std::stoi(req.get_param_value("timeoutSeconds"));
    } catch (...) {
      res.status = 400;
      res.set_content(StatusBody(400, "BadRequest", "invalid timeoutSeconds").dump(),
                      "application/json");
      return;
    }
  }
  std::string b =
      req.has_param("allowWatchBookmarks") ? req.get_param_value("allowWatchBookmarks") : "";
  st->bookmarks = b == "true" || b == "1";
  st->deadline = Clock::now() + std::chrono::seconds(std::max(timeout, 1));
  st->last_write = Clock::now();
  std::string rv_text =
      req.has_param("resourceVersion") ? req.get_param_value("resourceVersion") : "";
  auto in_scope = [t](const Event& e) {
    return e.type == t.type &&
           (t.ns.empty() || FieldValue(*e.object, "metadata.namespace") == t.ns);
  };
  auto expired_line = [](uint64_t asked, uint64_t floor) {
    return EventLine("ERROR", StatusBody(410, "Expired",
                                         "too old resource version: " + std::to_string(asked) +
                                             " (" + std::to_string(floor + 1) + ")"));
  };
  {
    std::lock_guard<std::mutex> l(mu_);
    st->epoch = outage_epoch_;
    std::string initial =
        req.has_param("sendInitialEvents") ? req.get_param_value("sendInitialEvents") : "";
    if (rv_text.empty() || rv_text == "0" || initial == "true") {
      // Current state as synthetic ADDED events, then live events.
      for (const auto& [key, obj] : objects_[t.type]) {
        if (!t.ns.empty() && FieldValue(obj, "metadata.namespace") != t.ns) continue;
        if (sel.Matches(obj)) st->pending.push_back(EventLine("ADDED", obj));
      }
      st->last = rv_;
      if (initial == "true" && st->bookmarks) {
        // The WatchList protocol: a bookmark marks the end of the initial state.
        st->pending.push_back(
            EventLine("BOOKMARK", {{"kind", t.type->kind},
                                   {"apiVersion", t.type->ApiVersion()},
                                   {"metadata",
                                    {{"resourceVersion", std::to_string(rv_)},
                                     {"annotations", {{"k8s.io/initial-events-end", "true"}}}}}}));
      }
    } else {
      uint64_t asked = 0;
      try {
        size_t used = 0;
        asked = std::stoull(rv_text, &used);
        if (used != rv_text.size()) throw std::invalid_argument("rv");
      } catch (...) {
        res.status = 400;
        res.set_content(
            StatusBody(400, "BadRequest", "invalid resource version: " + rv_text).dump(),
            "application/json");
        return;
      }
      if (asked < floor_) {
        // Like the real watch cache: HTTP 200, then one ERROR event carrying 410 Expired.
        st->pending.push_back(expired_line(asked, floor_));
        st->finished = true;
      }
      st->last = asked;
    }
  }
  auto provider = [this, st, sel = std::move(sel), in_scope, expired_line, t](
                      size_t, httplib::DataSink& sink) -> bool {
    auto flush = [&](std::vector<std::string>& lines) -> bool {
      for (const std::string& line : lines) {
        if (!sink.write(line.data(), line.size())) return false;
      }
      lines.clear();
      st->last_write = Clock::now();
      return true;
    };
    if (!st->pending.empty()) {
      if (!flush(st->pending)) return false;
    }
    if (st->finished) {
      sink.done();
      return true;
    }
    std::vector<std::string> out;
    std::unique_lock<std::mutex> lk(mu_);
    const auto interval = std::chrono::milliseconds(opt_.bookmark_interval_ms);
    while (true) {
      if (stopping_ || outage_epoch_ != st->epoch || Clock::now() >= st->deadline) {
        lk.unlock();
        sink.done();
        return true;
      }
      if (st->last < floor_) {
        out.push_back(expired_line(st->last, floor_));
        st->finished = true;
        break;
      }
      // Events after st->last (history is ordered by rv).
      auto it = std::upper_bound(history_.begin(), history_.end(), st->last,
                                 [](uint64_t v, const Event& e) { return v < e.rv; });
      for (; it != history_.end() && out.size() < 256; ++it) {
        st->last = it->rv;
        if (!in_scope(*it)) continue;
        bool now = sel.Matches(*it->object);
        if (it->kind == "MODIFIED" && it->old) {
          bool before = sel.Matches(*it->old);
          if (before && now) {
            out.push_back(*it->line);
          } else if (before) {
            out.push_back(EventLine("DELETED", *it->object));
          } else if (now) {
            out.push_back(EventLine("ADDED", *it->object));
          }
        } else if (now) {
          out.push_back(*it->line);
        }
      }
      if (!out.empty()) break;
      if (st->bookmarks && Clock::now() - st->last_write >= interval) {
        json bm = {{"kind", t.type->kind},
                   {"apiVersion", t.type->ApiVersion()},
                   {"metadata", {{"resourceVersion", std::to_string(st->last)}}}};
        out.push_back(EventLine("BOOKMARK", bm));
        break;
      }
      auto wake = std::min(st->deadline, st->last_write + interval);
      if (!st->bookmarks) wake = std::min(st->deadline, Clock::now() + interval);
      cv_.wait_until(lk, wake);
      // A client that went away frees its thread now, not at the watch timeout.
      if (!sink.is_writable()) return false;
    }
    lk.unlock();
    if (!flush(out)) return false;
    if (st->finished) sink.done();
    return true;
  };
  res.status = 200;
  res.set_chunked_content_provider("application/json", std::move(provider));
}

absl::Status ApiServer::Impl::Seed(const json& obj) {
  if (!obj.is_object()) return absl::InvalidArgumentError("seed: object expected");
  std::string kind = FieldValue(obj, "kind");
  if (kind.size() >= 4 && kind.compare(kind.size() - 4, 4, "List") == 0 && obj.contains("items")) {
    for (const json& item : obj["items"]) {
      absl::Status s = Seed(item);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }
  std::string api = FieldValue(obj, "apiVersion");
  const ResourceType* type = nullptr;
  for (const ResourceType& t : types_) {
    if (t.kind == kind && t.ApiVersion() == api) type = &t;
  }
  if (!type) {
    return absl::InvalidArgumentError("seed: unsupported kind " + kind + " in " + api);
  }
  std::string ns = FieldValue(obj, "metadata.namespace");
  if (type->namespaced && ns.empty()) ns = "default";
  std::lock_guard<std::mutex> l(mu_);
  Reply r = CreateLocked(*type, ns, obj, true);
  if (r.code != 201) {
    return absl::InvalidArgumentError("seed " + kind + " " + FieldValue(obj, "metadata.name") +
                                      ": " + FieldValue(r.body, "message"));
  }
  return absl::OkStatus();
}

std::string ApiServer::Impl::Kubeconfig(int port) const {
  std::string host = opt_.host == "0.0.0.0" ? "127.0.0.1" : opt_.host;
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  std::string server = (tls() ? "https://" : "http://") + host + ":" + std::to_string(port);
  std::string user = opt_.token.empty() ? "{}" : "{token: \"" + opt_.token + "\"}";
  std::string cluster = "{server: \"" + server + "\"";
  if (tls()) cluster += ", insecure-skip-tls-verify: true";
  cluster += "}";
  return "apiVersion: v1\nkind: Config\nclusters:\n- name: knd-local\n  cluster: " + cluster +
         "\nusers:\n- name: knd-local\n  user: " + user +
         "\ncontexts:\n- name: knd-local\n  context: {cluster: knd-local, user: knd-local}\n"
         "current-context: knd-local\n";
}

ApiServer::ApiServer(ApiServerOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

ApiServer::~ApiServer() { Stop(); }

absl::Status ApiServer::Start() { return impl_->Start(&port_); }
void ApiServer::Stop() { impl_->Stop(); }
bool ApiServer::tls() const { return impl_->tls(); }
absl::Status ApiServer::Seed(const json& object_or_list) { return impl_->Seed(object_or_list); }
std::string ApiServer::Kubeconfig() const { return impl_->Kubeconfig(port_); }

// Parses seed file text: JSON, or YAML with one or more documents.
absl::StatusOr<std::vector<json>> ParseManifests(const std::string& text) {
  std::vector<json> out;
  json j = json::parse(text, nullptr, false);
  if (!j.is_discarded()) {
    out.push_back(std::move(j));
    return out;
  }
  try {
    for (const YAML::Node& doc : YAML::LoadAll(text)) {
      json d = YamlToJson(doc);
      if (!d.is_null()) out.push_back(std::move(d));
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(std::string("not JSON or YAML: ") + e.what());
  }
  return out;
}

}  // namespace knd::localcp
