#include "dra/health.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "common/text.h"
#include "drahealth/v1alpha1/api.grpc.pb.h"

namespace knd::dra {
namespace {

namespace hv1 = ::v1alpha1;

// A sync handler cannot be woken by the client going away; it looks this often.
constexpr std::chrono::seconds kCancelPoll{1};

hv1::NodeWatchResourcesResponse ToResponse(const std::vector<DeviceHealthInfo>& devices) {
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  hv1::NodeWatchResourcesResponse resp;
  for (const DeviceHealthInfo& d : devices) {
    hv1::DeviceHealth* h = resp.add_devices();
    h->mutable_device()->set_pool_name(d.pool);
    h->mutable_device()->set_device_name(d.device);
    h->set_health(d.healthy ? hv1::HEALTHY : hv1::UNHEALTHY);
    h->set_last_updated_time(now);
    h->set_health_check_timeout_seconds(0);  // the kubelet's default
    h->set_message(ClampHealthMessage(d.message));
  }
  return resp;
}

}  // namespace

std::string ClampHealthMessage(std::string msg) {
  msg = ValidUtf8(msg);  // a proto3 string: the kubelet refuses a message that is not UTF-8
  if (msg.size() <= kMaxHealthMessageBytes) return msg;
  constexpr char kEllipsis[] = "...";
  return ClampUtf8(msg, kMaxHealthMessageBytes - (sizeof(kEllipsis) - 1)) + kEllipsis;
}

class HealthService::Impl final : public hv1::DRAResourceHealth::Service {
 public:
  Impl(DeviceHealthSource source, std::chrono::milliseconds resend_interval)
      : source_(std::move(source)),
        resend_interval_(resend_interval > std::chrono::milliseconds::zero()
                             ? resend_interval
                             : kDefaultHealthResendInterval) {}

  grpc::Status NodeWatchResources(
      grpc::ServerContext* ctx, const hv1::NodeWatchResourcesRequest*,
      grpc::ServerWriter<hv1::NodeWatchResourcesResponse>* writer) override {
    uint64_t seen = 0;
    uint64_t epoch = 0;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stopped_) return Stopping();
      seen = generation_;
      epoch = epoch_;
      ++open_streams_;
    }
    grpc::Status st = Stream(ctx, writer, seen, epoch);
    std::lock_guard<std::mutex> l(mu_);
    --open_streams_;
    return st;
  }

  void Notify() {
    std::lock_guard<std::mutex> l(mu_);
    ++generation_;
    cv_.notify_all();
  }

  void Shutdown() {
    std::lock_guard<std::mutex> l(mu_);
    stopped_ = true;
    ++epoch_;
    cv_.notify_all();
  }

  void Resume() {
    std::lock_guard<std::mutex> l(mu_);
    stopped_ = false;
  }

  int open_streams() const {
    std::lock_guard<std::mutex> l(mu_);
    return open_streams_;
  }

 private:
  static grpc::Status Stopping() {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "DRA plugin is stopping");
  }

  // One admitted stream, until it ends. `seen` and `epoch` were read at admission, so a
  // Notify() or Shutdown() racing the first send is not lost.
  grpc::Status Stream(grpc::ServerContext* ctx,
                      grpc::ServerWriter<hv1::NodeWatchResourcesResponse>* writer, uint64_t seen,
                      uint64_t epoch) {
    spdlog::info("device health stream opened by {}", ctx->peer());
    std::optional<std::vector<DeviceHealthInfo>> sent;  // what this stream last sent
    auto keepalive_due = std::chrono::steady_clock::now();
    bool look = true;
    while (true) {
      if (look) {
        std::vector<DeviceHealthInfo> devices = source_();
        const auto now = std::chrono::steady_clock::now();
        if (!sent || devices != *sent || now >= keepalive_due) {
          SPDLOG_DEBUG("device health: sending {} device(s)", devices.size());
          if (!writer->Write(ToResponse(devices))) {
            spdlog::info("device health stream to {} closed by the client", ctx->peer());
            return grpc::Status(grpc::StatusCode::CANCELLED, "stream closed by the client");
          }
          sent = std::move(devices);
          keepalive_due = now + resend_interval_;
        }
      }
      std::unique_lock<std::mutex> l(mu_);
      const auto wake = std::min(keepalive_due, std::chrono::steady_clock::now() + kCancelPoll);
      cv_.wait_until(l, wake, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopped_ || epoch_ != epoch || generation_ != seen;
      });
      if (stopped_ || epoch_ != epoch) return Stopping();
      if (ctx->IsCancelled()) {
        spdlog::info("device health stream to {} cancelled by the client", ctx->peer());
        return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client");
      }
      look = generation_ != seen || std::chrono::steady_clock::now() >= keepalive_due;
      seen = generation_;
    }
  }

  const DeviceHealthSource source_;
  const std::chrono::milliseconds resend_interval_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;  // bumped by Notify()
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;       // bumped by Shutdown(): ends older streams
  int open_streams_ ABSL_GUARDED_BY(mu_) = 0;
};

HealthService::HealthService(DeviceHealthSource source, std::chrono::milliseconds resend_interval)
    : impl_(std::make_unique<Impl>(std::move(source), resend_interval)) {}

HealthService::~HealthService() { Shutdown(); }

grpc::Service* HealthService::service() { return impl_.get(); }

void HealthService::Notify() { impl_->Notify(); }

void HealthService::Shutdown() { impl_->Shutdown(); }

void HealthService::Resume() { impl_->Resume(); }

int HealthService::open_streams() const { return impl_->open_streams(); }

}  // namespace knd::dra
