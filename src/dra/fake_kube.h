// A kube::Client of canned objects keyed by REST path, for the DRA unit tests (Get, and List of
// canned lists; the DRA side reads, it never writes). Watch sends nothing and ends on stop.
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "kube/client.h"

namespace knd::dra::fakes {

using nlohmann::json;

// An API server of canned objects, keyed by REST path.
class FakeKube : public kube::Client {
 public:
  std::map<std::string, json> objects;
  std::map<std::string, int> gets;
  std::map<std::string, json> lists;  // collection path -> List answer
  std::mutex mu;

  absl::StatusOr<json> Get(const std::string& path) override {
    std::lock_guard<std::mutex> l(mu);
    ++gets[path];
    auto it = objects.find(path);
    if (it == objects.end()) return absl::NotFoundError(path + " not found");
    return it->second;
  }
  absl::StatusOr<json> List(const std::string& path, const kube::ListOptions&) override {
    std::lock_guard<std::mutex> l(mu);
    auto it = lists.find(path);
    if (it == lists.end()) return absl::UnimplementedError("List " + path);
    return it->second;
  }
  absl::StatusOr<json> Create(const std::string&, const json&) override {
    return absl::UnimplementedError("Create");
  }
  absl::StatusOr<json> Update(const std::string&, const json&) override {
    return absl::UnimplementedError("Update");
  }
  absl::StatusOr<json> MergePatch(const std::string&, const json&) override {
    return absl::UnimplementedError("MergePatch");
  }
  absl::StatusOr<json> Apply(const std::string&, const json&, const std::string&, bool) override {
    return absl::UnimplementedError("Apply");
  }
  absl::Status Delete(const std::string&) override { return absl::UnimplementedError("Delete"); }
  absl::Status DeleteCollection(const std::string&, const kube::ListOptions&) override {
    return absl::UnimplementedError("DeleteCollection");
  }
  absl::Status Watch(const std::string&, const kube::ListOptions&,
                     const std::function<bool(const kube::WatchEvent&)>&,
                     const std::atomic<bool>& stop) override {
    while (!stop) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return absl::OkStatus();
  }
};

}  // namespace knd::dra::fakes
