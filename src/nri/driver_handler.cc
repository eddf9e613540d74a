#include "nri/driver_handler.h"

#include <spdlog/spdlog.h>

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

DriverHandler::~DriverHandler() {
  if (reconcile_.joinable()) reconcile_.join();
}

absl::Status DriverHandler::Configure(const std::string& runtime_name,
                                      const std::string& runtime_version,
                                      std::chrono::milliseconds request_timeout) {
  spdlog::info("NRI: connected to runtime {} {}", runtime_name, runtime_version);
  // The hooks plan their work to finish inside what the runtime allows each call.
  pods_.SetRuntimeTimeout(request_timeout);
  return absl::OkStatus();
}

absl::Status DriverHandler::Synchronize(const std::vector<api::PodSandbox>& pods,
                                        const std::vector<api::Container>& /*containers*/) {
  std::vector<PodInfo> running;
  running.reserve(pods.size());
  for (const auto& p : pods) running.push_back(ToPodInfo(p));
  if (reconcile_.joinable()) reconcile_.join();  // a previous connection's reconcile
  reconciled_ = false;
  reconcile_ = std::thread([this, running = std::move(running)] {
    absl::Status st = pods_.Reconcile(running);
    if (!st.ok()) spdlog::error("reconcile after NRI synchronize: {}", st.ToString());
    reconciled_ = true;
  });
  return absl::OkStatus();
}

absl::Status DriverHandler::RunPodSandbox(const api::PodSandbox& pod) {
  return pods_.Attach(ToPodInfo(pod));
}

absl::Status DriverHandler::StopPodSandbox(const api::PodSandbox& pod) {
  return pods_.Detach(ToPodInfo(pod));
}

absl::Status DriverHandler::RemovePodSandbox(const api::PodSandbox& pod) {
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
