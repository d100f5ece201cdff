#include "spqindex/threads.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
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

// Waking a sleeping thread costs the waker a futex syscall and the sleeper tens of
// microseconds before it runs (16 us and 40-60 us measured on this project's 2-vCPU KVM
// machine), as much as a whole single-query scan. So the caller spins for the last tasks of its
// call before waiting on a condition variable, and an idle worker may spin a while before it
// sleeps, as OpenMP runtimes do (libomp's KMP_BLOCKTIME defaults to 200 ms). A spin yields the
// CPU after its first kPauseOnly, so other runnable threads on the core go first.
//
// An idle worker's spin steals a core from whatever else the process runs, so by default it
// adapts: each parallel call measures the time since the previous one; when it is at most kMaxSpin
// (calls back to back, where a spinning worker catches the next call) idle workers spin up to
// kMaxSpin after their task, otherwise they sleep at once. So a lone call, or calls further apart
// than kMaxSpin, never leave a worker spinning; the first call of a burst pays one wake-up, and a
// burst's last call one spin. SPQINDEX_SPIN_US=N fixes every spin to N microseconds instead (0:
// sleep at once; the caller's spin included), read when a pool is made.
constexpr auto kMaxSpin = std::chrono::microseconds(2000);
constexpr auto kPauseOnly = std::chrono::microseconds(20);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

/// Polls ready() for up to `budget`; true as soon as it holds.
template <typename Ready>
bool spin_until(Ready ready, std::chrono::microseconds budget) {
  if (budget.count() <= 0) return ready();
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    for (int i = 0; i < 32; i++) {
      if (ready()) return true;
      cpu_relax();
    }
    const auto spent = std::chrono::steady_clock::now() - start;
    if (spent >= budget) return ready();
    if (spent >= kPauseOnly) std::this_thread::yield();
  }
}

/// SPQINDEX_SPIN_US as a fixed spin budget, or -1 (adaptive) when unset or not a number >= 0.
long fixed_spin_us() {
  if (const char* env = std::getenv("SPQINDEX_SPIN_US")) {
    char* end = nullptr;
    const long v = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && v >= 0) return std::min(v, 1000000L);
  }
  return -1;
}

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
  explicit Pool(int nthreads) : nthreads_(nthreads), fixed_spin_us_(fixed_spin_us()) {
    for (int i = 1; i < nthreads; i++) workers_.emplace_back([this] { loop(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      pending_.store(1);  // ends the workers' spin
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
    if (fixed_spin_us_ < 0) measure_gap();
    auto job = std::make_shared<Job>();
    job->fn = &fn;
    job->ntasks = ntasks;
    bool wake;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (int i = 1; i < nt; i++) queue_.push_back(job);
      pending_.store(queue_.size(), std::memory_order_release);
      wake = sleepers_ > 0;  // spinning workers see pending_ without a syscall
    }
    if (wake) cv_.notify_all();
    job->run();
    spin_until([&] { return job->done.load(std::memory_order_acquire) == job->ntasks; },
               fixed_spin_us_ < 0 ? kMaxSpin : std::chrono::microseconds(fixed_spin_us_));
    {
      std::unique_lock<std::mutex> lock(job->mu);
      // Every claimed task must finish before fn (owned by the caller's frame) goes away.
      job->cv.wait(lock, [&] { return job->done.load() == job->ntasks; });
    }
    // Workers that pick the job up later find no task left and never touch fn.
    if (job->error) std::rethrow_exception(job->error);
  }

 private:
  using Clock = std::chrono::steady_clock;

  /// Adaptive spin: idle workers spin only when this call came soon after the previous one.
  void measure_gap() {
    const int64_t now = Clock::now().time_since_epoch().count();
    const int64_t prev = last_call_.exchange(now, std::memory_order_relaxed);
    const bool back_to_back = prev != 0 && Clock::duration(now - prev) <= kMaxSpin;
    idle_spin_us_.store(back_to_back ? kMaxSpin.count() : 0, std::memory_order_relaxed);
  }

  std::chrono::microseconds idle_spin() const {
    return std::chrono::microseconds(
        fixed_spin_us_ >= 0 ? fixed_spin_us_ : idle_spin_us_.load(std::memory_order_relaxed));
  }

  void loop() {
    for (;;) {
      std::shared_ptr<Job> job;
      spin_until([&] { return pending_.load(std::memory_order_acquire) > 0; }, idle_spin());
      {
        std::unique_lock<std::mutex> lock(mu_);
        if (!stop_ && queue_.empty()) {
          sleepers_++;  // under mu_: run() reads it after queueing, so no wake-up is lost
          cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
          sleepers_--;
        }
        if (stop_ && queue_.empty()) return;
        job = std::move(queue_.front());
        queue_.pop_front();
        pending_.store(queue_.size(), std::memory_order_release);
      }
      job->run();
    }
  }

  int nthreads_;
  long fixed_spin_us_;                    // SPQINDEX_SPIN_US, or -1: adaptive
  std::atomic<int64_t> last_call_{0};     // Clock ticks at the last parallel call (0: none yet)
  std::atomic<int64_t> idle_spin_us_{0};  // adaptive budget of idle workers
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;  // guarded by mu_
  std::atomic<size_t> pending_{0};          // queue_.size(), readable without mu_ (stop: 1)
  int sleepers_ = 0;                        // workers waiting on cv_, guarded by mu_
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
