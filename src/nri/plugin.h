// The NRI plugin: connects to the runtime's NRI socket, multiplexes the trunk, serves the
// Plugin service on ConnID 1 (dispatching to a Handler), registers through the Runtime
// service on ConnID 2, and reconnects whenever the connection goes away (the runtime never
// reconnects to external plugins, and a runtime restart recreates the socket). Between
// attempts it watches the socket's directory with inotify: the moment a runtime (re)creates
// the socket, knd dials it, instead of sleeping out a backoff during which the runtime would
// start pods without knd's hook (lessons-from-peers §1). The backoff (doubling from min to
// max) only paces attempts while the socket is there but does not answer.
//
// Subscribed events: RUN/STOP/REMOVE_POD_SANDBOX and CREATE_CONTAINER (mask 0x000F), which
// every runtime's ValidEvents contains (0x7FF on NRI v0.8 and up). Pod events arrive either as
// the v0.12 dedicated RPCs or as StateChange (older runtimes, and v0.12's fallback); both
// reach the same Handler methods.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "nri/handler.h"

namespace knd::nri {

// RUN_POD_SANDBOX | STOP_POD_SANDBOX | REMOVE_POD_SANDBOX | CREATE_CONTAINER.
inline constexpr int32_t kSubscribedEvents = 0x000F;

class Plugin {
 public:
  struct Options {
    std::string socket_path = "/var/run/nri/nri.sock";
    std::string name = "knd";
    std::string index = "10";  // two digits; plugins are called in index order
    // Backoff between connection attempts: doubles from min to max, reset after a session
    // got registered.
    absl::Duration backoff_min = absl::Milliseconds(500);
    absl::Duration backoff_max = absl::Seconds(10);
    // Deadline for our RegisterPlugin call.
    absl::Duration register_timeout = absl::Seconds(5);
    // A handler slower than this is logged: the runtime drops plugins at 2 s by default.
    absl::Duration slow_handler = absl::Seconds(1);
  };

  Plugin(Options opts, Handler& handler);
  ~Plugin();
  Plugin(const Plugin&) = delete;
  Plugin& operator=(const Plugin&) = delete;

  // Validates the options and starts the connection thread.
  absl::Status Start();
  // Closes the connection and joins the thread; prompt (does not wait for backoff).
  void Stop();

  // True while registered with a runtime and synchronized (for /readyz).
  bool connected() const { return connected_.load(); }
  // Number of sessions that completed Synchronize since Start (tests watch reconnects).
  int sessions() const { return sessions_.load(); }
  // Seconds spent not connected since Start (including now, if disconnected): the time the
  // runtime could start pods without knd's hook.
  double disconnected_seconds() const;

  // What the runtime said of itself in its last Configure (empty before the first one).
  struct RuntimeInfo {
    std::string name;     // e.g. "containerd"
    std::string version;  // e.g. "v2.1.9" or "1.7.24~ds1"
    std::string nri_version;
    std::chrono::milliseconds request_timeout{0};  // the runtime drops a plugin slower than this
  };
  RuntimeInfo runtime() const;

 private:
  class Session;
  void Run();
  // One connection: returns when it closes or Stop() is called. True if it got registered.
  bool RunSession();
  // Waits `d`, or less when the socket appears in its directory (inotify). True = stopping.
  bool SleepOrStop(absl::Duration d);
  void SetConnected(bool up);

  Options opts_;
  Handler& handler_;
  std::atomic<bool> connected_{false};
  std::atomic<int> sessions_{0};

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  Session* current_ = nullptr;   // guarded by mu_
  int wake_fd_ = -1;             // eventfd: Stop() wakes SleepOrStop
  bool socket_missing_ = false;  // the last dial found no socket (connection thread only)
  std::string socket_id_;        // the socket file of the last connection (same thread)
  // Guarded by mu_: when the current disconnected period began, and the earlier ones' sum.
  std::chrono::steady_clock::time_point down_since_{};
  std::chrono::steady_clock::duration down_total_{};
  bool down_ = true;
  RuntimeInfo runtime_;  // guarded by mu_
  std::thread thread_;
};

}  // namespace knd::nri
