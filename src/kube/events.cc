#include "kube/events.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kube/claim_status.h"

namespace knd::kube {

using nlohmann::json;

namespace {

constexpr size_t kMaxMessage = 1024;

// Cuts `s` to at most `n` bytes without splitting a UTF-8 sequence.
std::string Truncate(const std::string& s, size_t n) {
  if (s.size() <= n) return s;
  size_t end = n;
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
  return s.substr(0, end);
}

std::string EventNamespace(const ObjectRef& o) { return o.ns.empty() ? "default" : o.ns; }

std::string ObjectKey(const ObjectRef& o) {
  return absl::StrCat(o.kind, "/", o.ns, "/", o.name, "/", o.uid);
}

}  // namespace

ObjectRef ClaimObject(const std::string& ns, const std::string& name, const std::string& uid) {
  return {"resource.k8s.io/v1", "ResourceClaim", ns, name, uid};
}

ObjectRef PodObject(const std::string& ns, const std::string& name, const std::string& uid) {
  return {"v1", "Pod", ns, name, uid};
}

ObjectRef NodeObject(const std::string& name) { return {"v1", "Node", "", name, ""}; }

EventRecorder::EventRecorder(Client& client, EventRecorderOptions opts)
    : client_(client), opts_(std::move(opts)) {}

EventRecorder::~EventRecorder() { Stop(); }

void EventRecorder::Start() {
  worker_.Start([this] { Loop(); });
}

void EventRecorder::Stop() { worker_.Stop(); }

void EventRecorder::Record(const ObjectRef& obj, const std::string& type, const std::string& reason,
                           const std::string& message) {
  std::string msg = Truncate(message, kMaxMessage);
  std::string key = absl::StrCat(ObjectKey(obj), "\n", type, "\n", reason, "\n", msg);
  SysClock::time_point now = SysClock::now();
  {
    std::lock_guard<std::mutex> l(mu_);
    auto q = queued_.find(key);
    if (q != queued_.end()) {
      q->second->times++;
      q->second->last = now;
      stats_.folded++;
      return;  // the queued item will carry this occurrence too
    }
    queue_.push_back(Item{key, obj, type, reason, std::move(msg), 1, now, now});
    queued_[key] = std::prev(queue_.end());
    if (queue_.size() > std::max<size_t>(1, opts_.max_queue)) {
      queued_.erase(queue_.front().key);
      queue_.pop_front();
      stats_.dropped_queue++;
    }
  }
  cv_.notify_all();
}

bool EventRecorder::WaitIdle(std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> l(mu_);
  return cv_.wait_for(l, timeout, [this] { return !busy_ && queue_.empty(); });
}

EventStats EventRecorder::Stats() const {
  std::lock_guard<std::mutex> l(mu_);
  return stats_;
}

void EventRecorder::Loop() {
  std::unique_lock<std::mutex> l(mu_);
  while (true) {
    cv_.wait(l, [this] { return stop_ || !queue_.empty(); });
    if (stop_) break;
    Item item = std::move(queue_.front());
    queued_.erase(item.key);
    queue_.pop_front();
    busy_ = true;
    l.unlock();
    Process(std::move(item));
    l.lock();
    busy_ = false;
    cv_.notify_all();
  }
}

bool EventRecorder::TakeToken(const std::string& obj_key, Clock::time_point now) {
  auto [it, fresh] = buckets_.try_emplace(obj_key);
  Bucket& b = it->second;
  if (fresh) {
    b.tokens = opts_.burst;
  } else {
    double secs = std::chrono::duration<double>(now - b.last).count();
    b.tokens = std::min<double>(opts_.burst, b.tokens + secs * opts_.refill_per_second);
  }
  b.last = now;
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

std::string EventRecorder::NewEventName(const ObjectRef& obj) {
  // Like client-go: "<object name>.<unix nanoseconds in hex>", unique within this process.
  int64_t ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(SysClock::now().time_since_epoch())
          .count();
  last_name_ns_ = std::max(ns, last_name_ns_ + 1);
  return absl::StrCat(obj.name, ".", absl::Hex(last_name_ns_));
}

void EventRecorder::Trim(Clock::time_point now) {
  if (written_.size() > opts_.max_tracked) {
    for (auto it = written_.begin(); it != written_.end();) {
      it = now - it->second.last >= opts_.dedup_window ? written_.erase(it) : std::next(it);
    }
    while (written_.size() > opts_.max_tracked) written_.erase(written_.begin());
  }
  if (buckets_.size() > opts_.max_tracked) {
    for (auto it = buckets_.begin(); it != buckets_.end();) {
      double secs = std::chrono::duration<double>(now - it->second.last).count();
      bool full = it->second.tokens + secs * opts_.refill_per_second >= opts_.burst;
      it = full ? buckets_.erase(it) : std::next(it);
    }
  }
}

void EventRecorder::Process(Item item) {
  const Clock::time_point now = Clock::now();
  const std::string obj_key = ObjectKey(item.obj);
  const std::string ns = EventNamespace(item.obj);
  std::unique_lock<std::mutex> l(mu_);
  uint64_t count = item.times;
  SysClock::time_point first = item.first;
  auto w = written_.find(item.key);
  if (w != written_.end() && now - w->second.last < opts_.dedup_window) {
    // A repeat: bump the existing Event.
    Written& wr = w->second;
    wr.count += item.times;
    wr.last = now;
    if (!TakeToken(obj_key, now)) {
      stats_.dropped_flood++;  // counted here; written with the next patch that gets a token
      return;
    }
    const std::string name = wr.name;
    count = wr.count;
    first = wr.first;
    l.unlock();
    json patch = {{"count", count}, {"lastTimestamp", FormatTime(item.last)}};
    absl::Status st =
        client_.MergePatch(absl::StrCat("/api/v1/namespaces/", ns, "/events/", name), patch)
            .status();
    l.lock();
    if (st.ok()) {
      stats_.patched++;
      return;
    }
    if (!absl::IsNotFound(st)) {
      stats_.failed++;
      spdlog::warn("event {} on {} {}/{}: updating Event {} failed: {}", item.reason, item.obj.kind,
                   item.obj.ns, item.obj.name, name, std::string(st.message()));
      return;
    }
    // The Event expired on the server (events have a TTL): create it again with the count.
    written_.erase(item.key);
  } else if (!TakeToken(obj_key, now)) {
    stats_.dropped_flood++;
    spdlog::debug("event {} on {} {}/{} dropped: too many events for this object", item.reason,
                  item.obj.kind, item.obj.ns, item.obj.name);
    return;
  }
  const std::string name = NewEventName(item.obj);
  l.unlock();
  json ev = {{"apiVersion", "v1"},
             {"kind", "Event"},
             {"metadata", {{"name", name}, {"namespace", ns}}},
             {"involvedObject",
              {{"apiVersion", item.obj.api_version},
               {"kind", item.obj.kind},
               {"namespace", item.obj.ns},
               {"name", item.obj.name},
               {"uid", item.obj.uid}}},
             {"type", item.type},
             {"reason", item.reason},
             {"message", item.message},
             {"source", {{"component", opts_.driver_name}, {"host", opts_.node_name}}},
             {"reportingComponent", opts_.driver_name},
             {"reportingInstance", opts_.node_name},
             {"firstTimestamp", FormatTime(first)},
             {"lastTimestamp", FormatTime(item.last)},
             {"count", count}};
  absl::Status st = client_.Create(absl::StrCat("/api/v1/namespaces/", ns, "/events"), ev).status();
  l.lock();
  if (!st.ok()) {
    stats_.failed++;
    spdlog::warn("event {} on {} {}/{}: creating Event failed: {}", item.reason, item.obj.kind,
                 item.obj.ns, item.obj.name, std::string(st.message()));
    return;
  }
  stats_.created++;
  written_[item.key] = Written{ns, name, count, first, now};
  Trim(now);
}

}  // namespace knd::kube
