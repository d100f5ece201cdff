#include "spqindex/threads.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <new>

#include <pthread.h>
#include <thread>
#include <vector>

#include "spqindex/error.h"

namespace spqindex {
namespace {

/// One parallel_for call: tasks are claimed with an atomic counter by every participant.
/// Every task index is claimed exactly once; after a failure the rest are skipped but still
/// counted, so the caller's wait for done == ntasks always ends.
struct Job {
  const std::function<void(size_t)>* fn;
  size_t ntasks;
  std::atomic<size_t> next{0};
  std::atomic<size_t> done{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  std::condition_variable cv;
  std::exception_ptr error;  // first failure, guarded by mu

  void run() {
    size_t finished = 0;
    for (;;) {
      size_t t = next.fetch_add(1);
      if (t >= ntasks) break;
      if (!failed.load(std::memory_order_relaxed)) {
        try {
          (*fn)(t);
        } catch (...) {
          std::lock_guard<std::mutex> lock(mu);
          if (!error) error = std::current_exception();
          failed.store(true);
        }
      }
      finished++;
    }
    if (finished && done.fetch_add(finished) + finished == ntasks) {
      std::lock_guard<std::mutex> lock(mu);
      cv.notify_all();
    }
  }
};

class Pool {
 public:
  explicit Pool(int nthreads) : nthreads_(nthreads) {
    for (int i = 1; i < nthreads; i++) workers_.emplace_back([this] { loop(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
  }
  int size() const { return nthreads_; }

  void run(size_t ntasks, const std::function<void(size_t)>& fn, int max_threads) {
    int nt = max_threads > 0 ? std::min(max_threads, nthreads_) : nthreads_;
    nt = static_cast<int>(std::min<size_t>(nt, ntasks));
    if (nt <= 1) {
      for (size_t t = 0; t < ntasks; t++) fn(t);
      return;
    }
    auto job = std::make_shared<Job>();
    job->fn = &fn;
    job->ntasks = ntasks;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (int i = 1; i < nt; i++) queue_.push_back(job);
    }
    cv_.notify_all();
    job->run();
    {
      std::unique_lock<std::mutex> lock(job->mu);
      // Every claimed task must finish before fn (owned by the caller's frame) goes away.
      job->cv.wait(lock, [&] { return job->done.load() == job->ntasks; });
    }
    // Workers that pick the job up later find no task left and never touch fn.
    if (job->error) std::rethrow_exception(job->error);
  }

 private:
  void loop() {
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
        if (stop_ && queue_.empty()) return;
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      job->run();
    }
  }

  int nthreads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stop_ = false;
};

int default_threads() {
  if (const char* env = std::getenv("SPQINDEX_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n >= 1) return std::min(n, 1024);
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw ? static_cast<int>(hw) : 1;
}

std::mutex g_pool_mu;
std::shared_ptr<Pool> g_pool;

// After fork() only the forking thread exists in the child: the pool's workers are gone and its
// mutexes may be held. The child forgets (leaks) the old pool and makes a new one on first use.
void forget_pool_in_child() {
  new (&g_pool_mu) std::mutex();
  new std::shared_ptr<Pool>(std::move(g_pool));  // never destroyed: its threads do not exist here
  g_pool.reset();
}

std::shared_ptr<Pool> current_pool() {
  static const int registered = pthread_atfork(nullptr, nullptr, forget_pool_in_child);
  (void)registered;
  std::lock_guard<std::mutex> lock(g_pool_mu);
  if (!g_pool) g_pool = std::make_shared<Pool>(default_threads());
  return g_pool;
}

}  // namespace

void parallel_for(size_t ntasks, const std::function<void(size_t)>& fn, int max_threads) {
  if (ntasks == 0) return;
  current_pool()->run(ntasks, fn, max_threads);
}

int get_num_threads() { return current_pool()->size(); }

void set_num_threads(int n) {
  SPQ_CHECK_ARG(n >= 1 && n <= 1024, "n: number of threads must be in 1..1024");
  auto fresh = std::make_shared<Pool>(n);
  std::shared_ptr<Pool> old;
  {
    std::lock_guard<std::mutex> lock(g_pool_mu);
    old = std::move(g_pool);
    g_pool = std::move(fresh);
  }
  // `old` is destroyed here unless a running call still holds it.
}

}  // namespace spqindex
