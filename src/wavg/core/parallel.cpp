// Thread pool behind parallel_for: workers sleep on a condition variable between jobs; the caller
// runs block 0 itself and waits for the rest.
#include "wavg/core/parallel.h"

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace wavg::detail {

namespace {

int default_threads() {
  const unsigned hw = std::thread::hardware_concurrency();
  return int(std::clamp<unsigned>(hw == 0 ? 1 : hw, 1, 2));
}

class Pool {
 public:
  ~Pool() { resize(0); }

  int size() const { return int(workers_.size()) + 1; }

  void resize(int total) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      ++generation_;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
    stop_ = false;
    for (int i = 1; i < total; ++i) workers_.emplace_back([this, i] { work(i); });
  }

  void run(int blocks, const std::function<void(int)>& job) {
    std::unique_lock<std::mutex> lock(mu_);
    job_ = &job;
    blocks_ = blocks;
    pending_ = blocks - 1;
    error_ = nullptr;
    ++generation_;
    lock.unlock();
    cv_.notify_all();
    std::exception_ptr mine;
    try {
      job(0);
    } catch (...) {
      mine = std::current_exception();
    }
    lock.lock();
    done_.wait(lock, [this] { return pending_ == 0; });
    job_ = nullptr;
    if (mine) std::rethrow_exception(mine);
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void work(int index) {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      if (job_ == nullptr || index >= blocks_) continue;
      const auto* job = job_;
      lock.unlock();
      std::exception_ptr err;
      try {
        (*job)(index);
      } catch (...) {
        err = std::current_exception();
      }
      lock.lock();
      if (err && !error_) error_ = err;
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;
  int blocks_ = 0, pending_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

Pool& pool() {
  static Pool* p = [] {
    auto* q = new Pool();  // intentionally leaked: workers must outlive static destructors
    q->resize(default_threads());
    return q;
  }();
  return *p;
}

std::mutex g_run_mu;  // one parallel_for at a time (banks may be driven from two threads)

}  // namespace

int averaging_threads() { return pool().size(); }

void set_averaging_threads(int n) {
  std::lock_guard<std::mutex> lock(g_run_mu);
  pool().resize(n <= 0 ? default_threads() : n);
}

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t align) {
  if (n <= 0) return;
  const int threads = averaging_threads();
  if (threads == 1 || n < kParallelGrain) {
    fn(0, n);
    return;
  }
  std::lock_guard<std::mutex> lock(g_run_mu);
  const int blocks = threads;
  int64_t per = (n + blocks - 1) / blocks;
  per = (per + align - 1) / align * align;
  pool().run(blocks, [&](int b) {
    const int64_t begin = std::min<int64_t>(n, b * per);
    const int64_t end = std::min<int64_t>(n, begin + per);
    if (begin < end) fn(begin, end);
  });
}

}  // namespace wavg::detail
