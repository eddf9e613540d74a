#include "kube/slice_publisher.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/status.h"
#include "kube/list_watch.h"

namespace knd::kube {
namespace {

using nlohmann::json;

std::string JStr(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_string()) return "";
  return j[key].get<std::string>();
}

int64_t JInt(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number_integer()) return 0;
  return j[key].get<int64_t>();
}

const json& Sub(const json& j, const char* key) {
  static const json kNull;
  if (!j.is_object() || !j.contains(key)) return kNull;
  return j[key];
}

json OwnerRef(const SlicePublisherOptions& opts) {
  return json{{"apiVersion", "v1"},
              {"kind", "Node"},
              {"name", opts.node_name},
              {"uid", opts.node_uid},
              {"controller", true}};
}

bool HasOwnerRef(const json& slice, const json& want) {
  const json& refs = Sub(Sub(slice, "metadata"), "ownerReferences");
  if (!refs.is_array()) return false;
  for (const auto& r : refs) {
    if (JStr(r, "uid") == want["uid"] && JStr(r, "kind") == "Node" &&
        JStr(r, "name") == want["name"] && Sub(r, "controller") == json(true)) {
      return true;
    }
  }
  return false;
}

}  // namespace

std::string SliceName(const std::string& node, const std::string& driver, int index) {
  return absl::StrCat(node, "-", absl::StrReplaceAll(driver, {{".", "-"}}), "-", index);
}

SliceChanges PlanSliceChanges(const std::vector<json>& existing, std::vector<json> devices,
                              const SlicePublisherOptions& opts) {
  std::stable_sort(devices.begin(), devices.end(),
                   [](const json& a, const json& b) { return JStr(a, "name") < JStr(b, "name"); });
  const size_t per = static_cast<size_t>(std::max(1, opts.max_devices_per_slice));
  std::map<std::string, json> want;  // name -> devices array
  std::vector<std::string> order;
  for (size_t i = 0; i < devices.size(); i += per) {
    std::string name = SliceName(opts.node_name, opts.driver_name, static_cast<int>(i / per));
    json chunk = json::array();
    for (size_t k = i; k < std::min(devices.size(), i + per); ++k) chunk.push_back(devices[k]);
    want[name] = std::move(chunk);
    order.push_back(name);
  }
  const int64_t count = static_cast<int64_t>(order.size());
  const json owner = opts.node_uid.empty() ? json() : OwnerRef(opts);

  // Is the server's state exactly the desired state (any one consistent generation)?
  std::map<std::string, const json*> have;
  bool equal = existing.size() == want.size();
  int64_t max_gen = 0;
  std::optional<int64_t> common_gen;
  for (const auto& s : existing) {
    const std::string name = JStr(Sub(s, "metadata"), "name");
    const json& spec = Sub(s, "spec");
    const json& pool = Sub(spec, "pool");
    int64_t gen = JInt(pool, "generation");
    max_gen = std::max(max_gen, gen);
    if (name.empty()) continue;
    have[name] = &s;
    auto it = want.find(name);
    const json& devs = Sub(spec, "devices");
    json devs_or_empty = devs.is_array() ? devs : json::array();
    if (it == want.end() || devs_or_empty != it->second || JStr(pool, "name") != opts.node_name ||
        JInt(pool, "resourceSliceCount") != count || (common_gen && *common_gen != gen) ||
        (!owner.is_null() && !HasOwnerRef(s, owner))) {
      equal = false;
    }
    common_gen = gen;
  }
  SliceChanges out;
  if (equal) return out;

  const int64_t gen = max_gen + 1;
  for (const auto& name : order) {
    json obj = {
        {"apiVersion", "resource.k8s.io/v1"},
        {"kind", "ResourceSlice"},
        {"metadata", {{"name", name}}},
        {"spec",
         {{"driver", opts.driver_name},
          {"nodeName", opts.node_name},
          {"pool", {{"name", opts.node_name}, {"generation", gen}, {"resourceSliceCount", count}}},
          {"devices", want[name]}}}};
    if (!owner.is_null()) obj["metadata"]["ownerReferences"] = json::array({owner});
    auto it = have.find(name);
    // Pool name, driver and nodeName are immutable: a same-named slice that differs in them is
    // replaced (deleted, then created), never updated.
    if (it != have.end() && JStr(Sub(Sub(*it->second, "spec"), "pool"), "name") == opts.node_name &&
        JStr(Sub(*it->second, "spec"), "driver") == opts.driver_name &&
        JStr(Sub(*it->second, "spec"), "nodeName") == opts.node_name) {
      obj["metadata"]["resourceVersion"] = JStr(Sub(*it->second, "metadata"), "resourceVersion");
      out.updates.push_back(std::move(obj));
    } else {
      if (it != have.end()) out.deletes.push_back(name);
      out.creates.push_back(std::move(obj));
    }
  }
  for (const auto& [name, s] : have) {
    if (!want.count(name)) out.deletes.push_back(name);
  }
  return out;
}

SlicePublisher::SlicePublisher(Client& client, SlicePublisherOptions opts)
    : client_(client), opts_(std::move(opts)), node_uid_(opts_.node_uid) {
  node_looked_up_ = !node_uid_.empty();
}

SlicePublisher::~SlicePublisher() { Stop(); }

std::string SlicePublisher::FieldSelector() const {
  return absl::StrCat("spec.nodeName=", opts_.node_name, ",spec.driver=", opts_.driver_name);
}

void SlicePublisher::SetDevices(std::vector<json> devices) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    desired_ = std::move(devices);
    have_desired_ = true;
    dirty_ = true;
  }
  cv_.notify_all();
}

void SlicePublisher::Trigger() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    dirty_ = true;
  }
  cv_.notify_all();
}

void SlicePublisher::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (started_) return;
  started_ = true;
  stop_ = false;
  reconcile_thread_ = std::thread([this] { ReconcileLoop(); });
  watch_thread_ = std::thread([this] { WatchLoop(); });
}

void SlicePublisher::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  client_.WakeWatches();  // the watch thread may be waiting on an idle stream
  if (reconcile_thread_.joinable()) reconcile_thread_.join();
  if (watch_thread_.joinable()) watch_thread_.join();
  std::lock_guard<std::mutex> lock(mu_);
  started_ = false;
}

PublisherStats SlicePublisher::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  PublisherStats s = stats_;
  s.pending = (dirty_ && have_desired_) || busy_;
  return s;
}

bool SlicePublisher::SleepFor(std::chrono::milliseconds d) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, d, [this] { return stop_.load(); });
  return !stop_;
}

absl::Status SlicePublisher::ReconcileAttempt(const std::vector<json>& devices) {
  std::string uid;
  bool looked_up;
  {
    std::lock_guard<std::mutex> lock(mu_);
    uid = node_uid_;
    looked_up = node_looked_up_;
  }
  if (!looked_up) {
    auto node = client_.Get(absl::StrCat("/api/v1/nodes/", opts_.node_name));
    if (node.ok()) {
      uid = JStr(Sub(*node, "metadata"), "uid");
    } else if (absl::IsNotFound(node.status())) {
      spdlog::warn("node {} not found; publishing ResourceSlices without an ownerReference",
                   opts_.node_name);
    } else {
      return Annotate(node.status(), "looking up the Node for the slice ownerReference");
    }
    std::lock_guard<std::mutex> lock(mu_);
    node_uid_ = uid;
    node_looked_up_ = true;
  }
  SlicePublisherOptions plan_opts = opts_;
  plan_opts.node_uid = uid;

  ListOptions lo;
  lo.field_selector = FieldSelector();
  ASSIGN_OR_RETURN(json list, client_.List(kResourceSlicesPath, lo));
  std::vector<json> existing;
  if (list.contains("items") && list["items"].is_array()) {
    for (auto& s : list["items"]) {
      // Defensive: a server that ignores the field selector must not make us touch others.
      if (JStr(Sub(s, "spec"), "nodeName") == opts_.node_name &&
          JStr(Sub(s, "spec"), "driver") == opts_.driver_name) {
        existing.push_back(std::move(s));
      }
    }
  }
  SliceChanges changes = PlanSliceChanges(existing, devices, plan_opts);
  int64_t gen = 0;
  for (const auto& s : existing) {
    gen = std::max(gen, JInt(Sub(Sub(s, "spec"), "pool"), "generation"));
  }
  if (changes.empty()) {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.published_devices = devices.size();
    stats_.generation = gen;
    return absl::OkStatus();
  }
  spdlog::info("publishing {} devices: {} create, {} update, {} delete", devices.size(),
               changes.creates.size(), changes.updates.size(), changes.deletes.size());
  auto remember = [this](const json& obj) {
    std::lock_guard<std::mutex> lock(mu_);
    const std::string name = JStr(obj["metadata"], "name");
    own_specs_[name] = obj["spec"];
    // A delete of ours whose event never came (the slice was already gone) must not mask a
    // later foreign delete of the re-created slice.
    own_deletes_.erase(name);
  };
  auto record = [this](uint64_t PublisherStats::*counter) {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.*counter += 1;
    stats_.last_publish = std::chrono::system_clock::now();
  };
  // Deletes first: a same-named slice that must be replaced has to be gone before its create.
  for (const auto& name : changes.deletes) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      own_deletes_.insert(name);
      own_specs_.erase(name);
    }
    RETURN_IF_ERROR(client_.Delete(absl::StrCat(kResourceSlicesPath, "/", name)));
    std::lock_guard<std::mutex> lock(mu_);
    stats_.deletes++;
    stats_.last_publish = std::chrono::system_clock::now();
  }
  for (const auto& obj : changes.creates) {
    remember(obj);
    auto r = client_.Create(kResourceSlicesPath, obj);
    if (absl::IsAlreadyExists(r.status())) return absl::AbortedError(r.status().message());
    if (!r.ok()) return r.status();
    record(&PublisherStats::creates);
  }
  for (const auto& obj : changes.updates) {
    remember(obj);
    auto r =
        client_.Update(absl::StrCat(kResourceSlicesPath, "/", JStr(obj["metadata"], "name")), obj);
    // Deleted under us: re-list and create it.
    if (absl::IsNotFound(r.status())) return absl::AbortedError(r.status().message());
    if (!r.ok()) return r.status();
    record(&PublisherStats::updates);
  }
  std::lock_guard<std::mutex> lock(mu_);
  stats_.published_devices = devices.size();
  stats_.generation = gen + 1;
  return absl::OkStatus();
}

absl::Status SlicePublisher::ReconcileOnce() {
  std::vector<json> devices;
  {
    std::lock_guard<std::mutex> lock(mu_);
    devices = desired_;
  }
  absl::Status st = RetryOnConflict([&] { return ReconcileAttempt(devices); }, 5);
  std::lock_guard<std::mutex> lock(mu_);
  if (st.ok()) {
    stats_.reconciles++;
  } else {
    stats_.errors++;
  }
  return st;
}

void SlicePublisher::ReconcileLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  auto backoff = opts_.backoff_initial;
  while (!stop_) {
    cv_.wait(lock, [this] { return stop_ || (dirty_ && have_desired_); });
    if (stop_) break;
    // Let a burst of changes settle so it costs one publish.
    cv_.wait_for(lock, opts_.debounce, [this] { return stop_.load(); });
    if (stop_) break;
    dirty_ = false;
    busy_ = true;
    lock.unlock();
    absl::Status st = ReconcileOnce();
    lock.lock();
    busy_ = false;
    if (st.ok()) {
      backoff = opts_.backoff_initial;
      continue;
    }
    spdlog::warn("publishing ResourceSlices failed (retry in {} ms): {}", backoff.count(),
                 st.ToString());
    dirty_ = true;
    cv_.wait_for(lock, backoff, [this] { return stop_.load(); });
    backoff = std::min(backoff * 2, opts_.backoff_max);
  }
}

void SlicePublisher::WatchLoop() {
  ListWatchOptions lw;
  lw.path = kResourceSlicesPath;
  lw.field_selector = FieldSelector();
  lw.watch_timeout_seconds = opts_.watch_timeout_seconds;
  lw.backoff_initial = opts_.backoff_initial;
  lw.backoff_max = opts_.backoff_max;
  ListWatchHandlers h;
  // Anything that changed before a (re)list is caught by the reconcile it triggers, anything
  // after by the watch.
  h.on_list = [this](const json&) { Trigger(); };
  h.on_event = [this](const WatchEvent& ev) {
    const json& meta = Sub(ev.object, "metadata");
    const json& spec = Sub(ev.object, "spec");
    if (JStr(spec, "nodeName") != opts_.node_name || JStr(spec, "driver") != opts_.driver_name) {
      return;
    }
    bool ours = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      const std::string name = JStr(meta, "name");
      if (ev.type == "DELETED") {
        ours = own_deletes_.erase(name) > 0;
      } else {
        auto it = own_specs_.find(name);
        ours = it != own_specs_.end() && it->second == spec;
      }
    }
    if (!ours) {
      spdlog::debug("ResourceSlice {} {} by someone else; reconciling", JStr(meta, "name"),
                    ev.type);
      Trigger();
    }
  };
  h.on_error = [](const absl::Status& st, std::chrono::milliseconds retry_in) {
    spdlog::debug("watching own ResourceSlices: {} (retry in {} ms)", st.ToString(),
                  retry_in.count());
  };
  h.sleep = [this](std::chrono::milliseconds d) { return SleepFor(d); };
  RunListWatch(client_, lw, h, stop_);
}

}  // namespace knd::kube
