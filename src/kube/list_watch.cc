#include "kube/list_watch.h"

#include <algorithm>

#include "kube/http_util.h"

namespace knd::kube {

void RunListWatch(Client& client, const ListWatchOptions& opts, const ListWatchHandlers& h,
                  const std::atomic<bool>& stop) {
  std::string rv;
  bool need_list = true;
  auto backoff = opts.backoff_initial;
  auto fail = [&](const absl::Status& st) {
    if (h.on_error) h.on_error(st, backoff);
    bool go_on = h.sleep(backoff);
    backoff = std::min(backoff * 2, opts.backoff_max);
    return go_on;
  };
  while (!stop) {
    if (need_list) {
      ListOptions lo;
      lo.field_selector = opts.field_selector;
      auto list = client.List(opts.path, lo);
      if (!list.ok()) {
        if (!fail(list.status())) break;
        continue;
      }
      rv = internal::MetadataString(*list, "resourceVersion");
      need_list = false;
      h.on_list(*list);
    }
    ListOptions wo;
    wo.field_selector = opts.field_selector;
    wo.resource_version = rv;
    wo.allow_watch_bookmarks = true;
    wo.timeout_seconds = opts.watch_timeout_seconds;
    bool got_event = false;
    absl::Status st = client.Watch(
        opts.path, wo,
        [&](const WatchEvent& ev) {
          got_event = true;
          if (std::string v = internal::MetadataString(ev.object, "resourceVersion"); !v.empty())
            rv = v;
          if (ev.type != "BOOKMARK") h.on_event(ev);
          return true;
        },
        stop);
    if (stop) break;
    if (!st.ok()) {
      // 410 Gone (OutOfRange): our version is too old; anything else: the stream broke, and
      // after an outage the server's versions may have been reset. Either way, list again.
      need_list = true;
      if (absl::IsOutOfRange(st)) continue;
      if (!fail(st)) break;
      continue;
    }
    if (got_event) {
      backoff = opts.backoff_initial;
    } else if (!h.sleep(std::chrono::milliseconds(200))) {
      break;  // a server that closes empty streams at once must not make us spin
    }
  }
}

}  // namespace knd::kube
