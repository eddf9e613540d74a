// The one background thread of a status writer or event recorder, with the start/stop protocol
// they share. The owner keeps its mutex, condition variable and stop flag (its loop waits on
// them); Stop() sets the flag under the mutex, wakes the loop and joins it.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace knd::kube {

class WorkerThread {
 public:
  WorkerThread(std::mutex& mu, std::condition_variable& cv, bool& stop)
      : mu_(mu), cv_(cv), stop_(stop) {}
  // The owner must call Stop() in its own destructor: the loop uses the owner's members.
  ~WorkerThread() { Stop(); }
  WorkerThread(const WorkerThread&) = delete;
  WorkerThread& operator=(const WorkerThread&) = delete;

  // Runs `loop` on a new thread unless one is running.
  void Start(std::function<void()> loop) {
    std::lock_guard<std::mutex> l(mu_);
    if (started_) return;
    started_ = true;
    stop_ = false;
    thread_ = std::thread(std::move(loop));
  }

  // Idempotent; a later Start() runs the loop again.
  void Stop() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    std::lock_guard<std::mutex> l(mu_);
    started_ = false;
  }

 private:
  std::mutex& mu_;
  std::condition_variable& cv_;
  bool& stop_;
  bool started_ = false;
  std::thread thread_;
};

}  // namespace knd::kube
