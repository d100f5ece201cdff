// The library's own persistent thread pool (no OpenMP: avoids two OpenMP runtimes fighting when
// PyTorch lives in the same process). Several callers may run parallel_for at once; the calling
// thread always takes part, so a call completes even when every worker is busy elsewhere.
// Idle workers spin briefly only while parallel calls arrive back to back (threads.cpp);
// SPQINDEX_SPIN_US=N fixes the spin to N microseconds (0: workers sleep as soon as they are idle).
#pragma once
#include <cstddef>
#include <functional>

namespace spqindex {

/// Runs fn(task) for task in [0, ntasks) on up to `max_threads` threads (0 = the pool's size),
/// blocks until all are done, and rethrows the first exception a task raised.
void parallel_for(size_t ntasks, const std::function<void(size_t task)>& fn, int max_threads = 0);

/// Number of threads parallel_for uses (the caller included). Default: hardware concurrency,
/// or the SPQINDEX_NUM_THREADS environment variable.
int get_num_threads();
/// Resizes the pool (n >= 1). Calls already running finish on the old pool.
void set_num_threads(int n);

}  // namespace spqindex
