#include "nri/driver_handler.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>

namespace knd::nri {

std::string NetnsPath(const api::PodSandbox& pod) {
  for (const auto& ns : pod.linux().namespaces()) {
    if (ns.type() == "network") return ns.path();
  }
  return "";
}

PodInfo ToPodInfo(const api::PodSandbox& pod) {
  return {pod.uid(), pod.namespace_(), pod.name(), NetnsPath(pod), pod.id()};
}

absl::StatusOr<SandboxFailurePolicy> ParseSandboxFailurePolicy(const std::string& s) {
  if (s == "auto") return SandboxFailurePolicy::kAuto;
  if (s == "fail") return SandboxFailurePolicy::kFail;
  if (s == "defer") return SandboxFailurePolicy::kDefer;
  return absl::InvalidArgumentError("sandbox failure policy \"" + s +
                                    "\" must be one of auto, fail, defer");
}

bool RuntimeLeaksFailedSandboxes(const std::string& runtime_name, const std::string& version) {
  if (runtime_name != "containerd") return false;
  // "v2.1.9", "2.1.9+unknown", "1.7.24~ds1": major.minor.patch at the start.
  int major = 0, minor = 0, patch = 0;
  const char* v = version.c_str();
  if (*v == 'v') ++v;
  if (std::sscanf(v, "%d.%d.%d", &major, &minor, &patch) < 2) return false;
  if (major != 2) return false;
  return minor < 2 || (minor == 2 && patch < 6);
}

DriverHandler::DriverHandler(PodNetwork& pods, SandboxFailurePolicy policy)
    : pods_(pods), policy_(policy), defer_(policy == SandboxFailurePolicy::kDefer) {
  retry_ = std::thread([this] { RetryLoop(); });
}

DriverHandler::~DriverHandler() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (retry_.joinable()) retry_.join();
  if (reconcile_.joinable()) reconcile_.join();
}

absl::Status DriverHandler::Configure(const std::string& runtime_name,
                                      const std::string& runtime_version,
                                      std::chrono::milliseconds request_timeout) {
  spdlog::info("NRI: connected to runtime {} {}", runtime_name, runtime_version);
  // The hooks plan their work to finish inside what the runtime allows each call.
  pods_.SetRuntimeTimeout(request_timeout);
  if (policy_ == SandboxFailurePolicy::kAuto) {
    defer_ = RuntimeLeaksFailedSandboxes(runtime_name, runtime_version);
    if (defer_) {
      spdlog::warn(
          "NRI: {} {} keeps the record of a sandbox that a plugin failed and then cannot restart "
          "(containerd#13609, fixed in 2.2.6): a failed attach will not fail RunPodSandbox; knd "
          "retries it in the background and the netns guard holds the pod's containers",
          runtime_name, runtime_version);
    }
  }
  return absl::OkStatus();
}

size_t DriverHandler::deferred_pods() const {
  std::lock_guard<std::mutex> l(mu_);
  return deferred_.size();
}

void DriverHandler::RetryLoop() {
  using Clock = std::chrono::steady_clock;
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    auto next = Clock::time_point::max();
    for (const auto& [uid, d] : deferred_) next = std::min(next, d.next);
    if (next == Clock::time_point::max()) {
      cv_.wait(l);
      continue;
    }
    if (Clock::now() < next) {
      cv_.wait_until(l, next);
      continue;
    }
    // The first due pod; attach outside the lock (hooks may defer or drop pods meanwhile).
    auto it = std::find_if(deferred_.begin(), deferred_.end(),
                           [&](const auto& e) { return e.second.next <= Clock::now(); });
    if (it == deferred_.end()) continue;
    Deferred d = it->second;
    l.unlock();
    absl::Status st = pods_.Attach(d.pod);
    l.lock();
    auto again = deferred_.find(d.pod.uid);
    if (again == deferred_.end() || again->second.pod.sandbox_id != d.pod.sandbox_id) continue;
    if (st.ok()) {
      spdlog::info("pod {}/{}: devices attached after a deferred failure", d.pod.namespace_,
                   d.pod.name);
      deferred_.erase(again);
      continue;
    }
    again->second.delay = std::min(again->second.delay * 2, std::chrono::milliseconds(30000));
    again->second.next = Clock::now() + again->second.delay;
  }
}

absl::Status DriverHandler::Synchronize(const std::vector<api::PodSandbox>& pods,
                                        const std::vector<api::Container>& /*containers*/) {
  std::vector<PodInfo> running;
  running.reserve(pods.size());
  for (const auto& p : pods) running.push_back(ToPodInfo(p));
  if (reconcile_.joinable()) reconcile_.join();  // a previous connection's reconcile
  reconciled_ = false;
  // Before the answer goes back: the runtime's next hook is newer than `running`.
  pods_.BeginReconcile();
  reconcile_ = std::thread([this, running = std::move(running)] {
    absl::Status st = pods_.Reconcile(running);
    if (!st.ok()) spdlog::error("reconcile after NRI synchronize: {}", st.ToString());
    reconciled_ = true;
  });
  return absl::OkStatus();
}

absl::Status DriverHandler::RunPodSandbox(const api::PodSandbox& pod) {
  PodInfo info = ToPodInfo(pod);
  absl::Status st = pods_.Attach(info);
  if (st.ok() || !defer_ || info.netns.empty()) return st;
  spdlog::warn(
      "pod {}/{}: the sandbox starts without its devices ({}); knd retries the attach (failing "
      "RunPodSandbox would break this runtime's next restart)",
      info.namespace_, info.name, std::string(st.message()));
  {
    std::lock_guard<std::mutex> l(mu_);
    deferred_[info.uid] = {info, std::chrono::steady_clock::now() + std::chrono::seconds(1),
                           std::chrono::seconds(1)};
  }
  cv_.notify_all();
  return absl::OkStatus();
}

absl::Status DriverHandler::StopPodSandbox(const api::PodSandbox& pod) {
  {
    std::lock_guard<std::mutex> l(mu_);
    deferred_.erase(pod.uid());
  }
  return pods_.Detach(ToPodInfo(pod));
}

absl::Status DriverHandler::RemovePodSandbox(const api::PodSandbox& pod) {
  {
    std::lock_guard<std::mutex> l(mu_);
    deferred_.erase(pod.uid());
  }
  // Finishes whatever StopPodSandbox could not (e.g. it failed, or never came).
  return pods_.Detach(ToPodInfo(pod));
}

absl::StatusOr<api::ContainerAdjustment> DriverHandler::CreateContainer(
    const api::PodSandbox& /*pod*/, const api::Container& /*container*/) {
  // Plain netdevs need no container edits; device nodes (RDMA) come through CDI specs
  // written in Prepare.
  return api::ContainerAdjustment();
}

}  // namespace knd::nri
