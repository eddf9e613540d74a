#include "kube/claim_status.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/text.h"
#include "kube/http_util.h"

namespace knd::kube {

using nlohmann::json;

std::string FormatTime(std::chrono::system_clock::time_point t) {
  // RFC 3339 in UTC with whole seconds, as metav1.Time marshals (Go's time.RFC3339 in UTC
  // ends in "Z"; absl's RFC3339_sec would write "+00:00").
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%SZ", absl::FromChrono(t), absl::UTCTimeZone());
}

json DeviceStatusEntry(const DeviceStatus& s, std::chrono::system_clock::time_point now) {
  json cond = {{"type", "Ready"},
               {"status", s.ready ? "True" : "False"},
               {"reason", !s.reason.empty() ? s.reason : (s.ready ? "Attached" : "NotAttached")},
               {"message", s.message},
               {"lastTransitionTime", FormatTime(now)}};
  if (s.observed_generation > 0) cond["observedGeneration"] = s.observed_generation;
  json e = {{"driver", s.driver},
            {"pool", s.pool},
            {"device", s.device},
            {"conditions", json::array({cond})}};
  if (!s.share_id.empty()) e["shareID"] = s.share_id;
  if (!s.interface_name.empty() || !s.ips.empty() || !s.hardware_address.empty()) {
    json nd = json::object();
    if (!s.interface_name.empty()) nd["interfaceName"] = s.interface_name;
    if (!s.ips.empty()) nd["ips"] = s.ips;
    if (!s.hardware_address.empty()) nd["hardwareAddress"] = s.hardware_address;
    e["networkData"] = std::move(nd);
  }
  if (s.data.is_object()) e["data"] = s.data;
  return e;
}

std::string ClaimStatusPath(const std::string& ns, const std::string& name) {
  return absl::StrCat("/apis/resource.k8s.io/v1/namespaces/", ns, "/resourceclaims/", name,
                      "/status");
}

json ClaimStatusApplyBody(const std::string& ns, const std::string& name, const std::string& uid,
                          const json& devices) {
  json md = {{"name", name}, {"namespace", ns}};
  // With a uid the apply is refused (422, uid is immutable) when the claim of that name is a
  // newer one than ours, so we never write to a claim we did not prepare.
  if (!uid.empty()) md["uid"] = uid;
  return {{"apiVersion", "resource.k8s.io/v1"},
          {"kind", "ResourceClaim"},
          {"metadata", std::move(md)},
          {"status", {{"devices", devices}}}};
}

namespace {

std::string EntryKey(const json& e) {
  auto s = [&](const char* f) {
    return e.contains(f) && e[f].is_string() ? e[f].get<std::string>() : "";
  };
  return absl::StrCat(s("driver"), "/", s("pool"), "/", s("device"), "/", s("shareID"));
}

// Copies lastTransitionTime from `old` conditions of the same type and status into `e`.
void KeepTransitionTimes(const json& old, json* e) {
  if (!old.contains("conditions") || !e->contains("conditions")) return;
  for (json& c : (*e)["conditions"]) {
    if (!c.is_object()) continue;
    for (const json& o : old["conditions"]) {
      if (o.is_object() && JsonString(o, "type") == JsonString(c, "type") &&
          JsonString(o, "status") == JsonString(c, "status") && o.contains("lastTransitionTime")) {
        c["lastTransitionTime"] = o["lastTransitionTime"];
      }
    }
  }
}

}  // namespace

ClaimStatusWriter::ClaimStatusWriter(Client& client, ClaimStatusWriterOptions opts)
    : client_(client), opts_(std::move(opts)) {}

ClaimStatusWriter::~ClaimStatusWriter() { Stop(); }

void ClaimStatusWriter::Start() {
  worker_.Start([this] { Loop(); });
}

void ClaimStatusWriter::Stop() { worker_.Stop(); }

void ClaimStatusWriter::Set(const std::string& ns, const std::string& name, const std::string& uid,
                            std::vector<json> devices) {
  json ours = json::array();
  for (json& d : devices) {
    if (JsonString(d, "driver") == opts_.driver_name) ours.push_back(std::move(d));
  }
  Upsert(ns, name, uid, std::move(ours), false);
}

void ClaimStatusWriter::Clear(const std::string& ns, const std::string& name,
                              const std::string& uid) {
  Upsert(ns, name, uid, json::array(), true);
}

void ClaimStatusWriter::Upsert(const std::string& ns, const std::string& name,
                               const std::string& uid, json devices, bool cleared) {
  {
    std::lock_guard<std::mutex> l(mu_);
    auto [it, fresh] = claims_.try_emplace(uid);
    Claim& c = it->second;
    if (!fresh) {
      std::map<std::string, const json*> old;
      for (const json& e : c.devices) old[EntryKey(e)] = &e;
      for (json& e : devices) {
        auto o = old.find(EntryKey(e));
        if (o != old.end()) KeepTransitionTimes(*o->second, &e);
      }
      if (!cleared && !c.cleared && c.devices == devices && c.written == c.version) {
        return;  // already on the server: no write
      }
      c.version++;
    }
    c.ns = ns;
    c.name = name;
    c.devices = std::move(devices);
    c.cleared = cleared;
    // attempts/not_before stay: a new state during a backoff waits for it (and coalesces).
  }
  cv_.notify_all();
}

std::vector<std::string> ClaimStatusWriter::Pending() const {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<std::string> out;
  for (const auto& [uid, c] : claims_) {
    if (c.written != c.version) out.push_back(uid);
  }
  return out;
}

bool ClaimStatusWriter::WaitIdle(std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> l(mu_);
  return cv_.wait_for(l, timeout, [this] {
    if (busy_) return false;
    for (const auto& [uid, c] : claims_) {
      if (c.written != c.version) return false;
    }
    return true;
  });
}

ClaimStatusStats ClaimStatusWriter::Stats() const {
  std::lock_guard<std::mutex> l(mu_);
  return stats_;
}

void ClaimStatusWriter::Loop() {
  std::mt19937_64 rng(std::random_device{}());
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    // The first due claim; else sleep until the earliest backoff ends or something changes.
    Clock::time_point now = Clock::now();
    Clock::time_point next = Clock::time_point::max();
    std::string uid;
    for (const auto& [u, c] : claims_) {
      if (c.written == c.version) continue;
      if (c.not_before <= now) {
        uid = u;
        break;
      }
      next = std::min(next, c.not_before);
    }
    if (uid.empty()) {
      if (next == Clock::time_point::max()) {
        cv_.wait(l);
      } else {
        cv_.wait_until(l, next);
      }
      continue;
    }
    Claim& c = claims_[uid];
    const std::string ns = c.ns, name = c.name;
    const uint64_t version = c.version;
    json body = ClaimStatusApplyBody(ns, name, uid, c.devices);
    busy_ = true;
    l.unlock();
    absl::Status st =
        client_.Apply(ClaimStatusPath(ns, name), body, opts_.driver_name, /*force=*/true).status();
    l.lock();
    auto it = claims_.find(uid);  // only this thread erases
    Claim& cur = it->second;
    bool gone = false;
    if (st.ok()) {
      stats_.writes++;
      cur.written = version;
      cur.attempts = 0;
      spdlog::debug("claim {}/{} (uid {}): status.devices written", ns, name, uid);
    } else if (absl::IsNotFound(st) || absl::IsInvalidArgument(st)) {
      stats_.dropped++;
      cur.written = version;
      cur.attempts = 0;
      gone = absl::IsNotFound(st);
      spdlog::warn("claim {}/{} (uid {}): status.devices not written, giving up: {}", ns, name, uid,
                   std::string(st.message()));
    } else {
      stats_.failures++;
      auto delay =
          internal::BackoffDelay(cur.attempts, opts_.backoff_initial, opts_.backoff_max, unit(rng));
      cur.attempts++;
      cur.not_before = Clock::now() + delay;
      spdlog::warn("claim {}/{} (uid {}): writing status.devices failed (retry in {} ms): {}", ns,
                   name, uid, delay.count(), std::string(st.message()));
    }
    if (cur.written == cur.version) {
      if (cur.cleared || gone) claims_.erase(it);
      if (opts_.on_written) {
        l.unlock();
        opts_.on_written(uid);
        l.lock();
      }
    }
    busy_ = false;  // after the callback, so WaitIdle() also waits for it
    cv_.notify_all();
  }
}

}  // namespace knd::kube
