// The list-then-watch loop every watcher of the driver runs (what client-go's reflector does):
// list for a resourceVersion, watch from it, and list again after 410 Gone or a broken stream
// (a restarted server may have reset its versions), backing off while the API is unreachable.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/status.h"
#include "kube/client.h"

namespace knd::kube {

struct ListWatchOptions {
  std::string path;            // collection path, e.g. /api/v1/pods
  std::string field_selector;  // for the list and the watch
  int watch_timeout_seconds = 300;
  std::chrono::milliseconds backoff_initial{500};
  std::chrono::milliseconds backoff_max{30000};
};

struct ListWatchHandlers {
  // A fresh list (at start and after every relist): the whole state.
  std::function<void(const nlohmann::json& list)> on_list;
  // Each watch event after it (bookmarks are consumed by the loop).
  std::function<void(const WatchEvent& event)> on_event;
  // A failed list or watch, before the backoff; optional.
  std::function<void(const absl::Status& error, std::chrono::milliseconds retry_in)> on_error;
  // Waits `d` unless stopped; returns false when it is time to stop.
  std::function<bool(std::chrono::milliseconds d)> sleep;
};

// Runs until `stop` is set (set it, then call client.WakeWatches(), to end it promptly).
void RunListWatch(Client& client, const ListWatchOptions& opts, const ListWatchHandlers& h,
                  const std::atomic<bool>& stop);

}  // namespace knd::kube
