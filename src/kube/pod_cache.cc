#include "kube/pod_cache.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kube/http_util.h"
#include "kube/list_watch.h"

namespace knd::kube {
namespace {

using nlohmann::json;

constexpr char kPodsPath[] = "/api/v1/pods";

std::string Key(const json& pod) {
  return absl::StrCat(internal::MetadataString(pod, "namespace"), "/",
                      internal::MetadataString(pod, "name"));
}

}  // namespace

PodFacts PodFactsOf(const json& pod) {
  PodFacts f;
  f.uid = internal::MetadataString(pod, "uid");
  if (!pod.is_object()) return f;
  auto field = [](const json& j, const char* key) -> const json* {
    if (!j.is_object()) return nullptr;
    auto it = j.find(key);
    return it == j.end() ? nullptr : &*it;
  };
  auto str = [&](const json* j, const char* key) {
    const json* v = j != nullptr ? field(*j, key) : nullptr;
    return v != nullptr && v->is_string() ? v->get<std::string>() : std::string();
  };
  auto add_claim = [&f](std::string name) {
    if (!name.empty() && std::find(f.claims.begin(), f.claims.end(), name) == f.claims.end()) {
      f.claims.push_back(std::move(name));
    }
  };
  const json* spec = field(pod, "spec");
  const json* status = field(pod, "status");
  if (spec != nullptr) {
    const json* hn = field(*spec, "hostNetwork");
    f.host_network = hn != nullptr && hn->is_boolean() && hn->get<bool>();
    if (const json* rc = field(*spec, "resourceClaims"); rc != nullptr && rc->is_array()) {
      for (const json& c : *rc) add_claim(str(&c, "resourceClaimName"));
    }
  }
  if (status != nullptr) {
    f.phase = str(status, "phase");
    if (const json* rs = field(*status, "resourceClaimStatuses"); rs != nullptr && rs->is_array()) {
      for (const json& c : *rs) add_claim(str(&c, "resourceClaimName"));
    }
  }
  if (const json* md = field(pod, "metadata"); md != nullptr) {
    f.multus_networks = !str(field(*md, "annotations"), kMultusNetworksAnnotation).empty();
  }
  return f;
}

PodCache::PodCache(Client& client, PodCacheOptions opts)
    : client_(client), opts_(std::move(opts)) {}

PodCache::~PodCache() { Stop(); }

void PodCache::Start() {
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] { Loop(); });
}

void PodCache::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  client_.WakeWatches();
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> lock(mu_);
  synced_ = false;
}

std::optional<PodFacts> PodCache::Lookup(const std::string& ns, const std::string& name,
                                         const std::string& uid) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = pods_.find(absl::StrCat(ns, "/", name));
  if (it == pods_.end() || (!uid.empty() && it->second.uid != uid)) {
    ++stats_.misses;
    return std::nullopt;
  }
  ++stats_.hits;
  return it->second;
}

bool PodCache::Synced() const {
  std::lock_guard<std::mutex> lock(mu_);
  return synced_;
}

PodCacheStats PodCache::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  PodCacheStats s = stats_;
  s.pods = pods_.size();
  return s;
}

bool PodCache::SleepFor(std::chrono::milliseconds d) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, d, [this] { return stop_.load(); });
  return !stop_;
}

void PodCache::Loop() {
  ListWatchOptions lw;
  lw.path = kPodsPath;
  lw.field_selector = absl::StrCat("spec.nodeName=", opts_.node_name);
  lw.watch_timeout_seconds = opts_.watch_timeout_seconds;
  lw.backoff_initial = opts_.backoff_initial;
  lw.backoff_max = opts_.backoff_max;
  ListWatchHandlers h;
  h.on_list = [this](const json& list) {
    std::map<std::string, PodFacts> pods;
    if (auto items = list.find("items"); items != list.end() && items->is_array()) {
      for (const json& pod : *items) pods[Key(pod)] = PodFactsOf(pod);
    }
    std::lock_guard<std::mutex> lock(mu_);
    pods_ = std::move(pods);
    synced_ = true;
    ++stats_.lists;
  };
  h.on_event = [this](const WatchEvent& ev) {
    const std::string key = Key(ev.object);
    PodFacts facts = PodFactsOf(ev.object);
    bool gone = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.events;
      auto it = pods_.find(key);
      if (ev.type == "DELETED") {
        // A pod deleted and re-created under the same name may be seen in either order around
        // a relist: only the UID that was deleted goes.
        if (it != pods_.end() && it->second.uid == facts.uid) pods_.erase(it);
        gone = true;
      } else {
        gone = facts.Terminal() &&
               (it == pods_.end() || it->second.uid != facts.uid || !it->second.Terminal());
        pods_[key] = facts;
      }
    }
    if (gone && on_gone_ && !facts.uid.empty()) {
      on_gone_(internal::MetadataString(ev.object, "namespace"),
               internal::MetadataString(ev.object, "name"), facts.uid);
    }
  };
  h.on_error = [this](const absl::Status& st, std::chrono::milliseconds retry_in) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.errors;
    }
    // Prepare reads pods from the API meanwhile, so this is not urgent for anyone.
    spdlog::debug("watching this node's pods: {} (retry in {} ms)", st.ToString(),
                  retry_in.count());
  };
  h.sleep = [this](std::chrono::milliseconds d) { return SleepFor(d); };
  RunListWatch(client_, lw, h, stop_);
}

}  // namespace knd::kube
