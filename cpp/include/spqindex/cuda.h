// The optional CUDA path (built with SPQINDEX_CUDA=ON, library spqindex_cuda).
// Plain C++: no CUDA types here, so bindings.cpp compiles without nvcc.
//
// A GpuIndex is a read-only snapshot of a CPU Index on one device: codes are copied once, re-laid
// out for coalesced loads (rows sorted by id, 32-bit words plane by plane), and stay resident.
// search() returns exactly what Index::search returns (same ids, bitwise-equal distances):
// the LUT is computed with the same float32 operations in the same order (no FMA contraction),
// each score is the float32 sum over m = 0..M-1 in order, and ties are broken by the smaller id.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "spqindex/codebooks.h"
#include "spqindex/metric.h"

namespace spqindex {

class Index;

namespace cuda {

/// Number of usable CUDA devices; 0 when there is no driver or no device (never throws).
int device_count();

/// Name and theoretical peak memory bandwidth (GB/s) of a device, for benchmarks.
struct DeviceInfo {
  char name[256];
  double peak_bandwidth_gbs;
  int sm_count;
};
DeviceInfo device_info(int device);

class GpuIndex {
 public:
  /// Largest k a GPU search supports (the per-block candidate buffers live in shared memory).
  static constexpr size_t kMaxK = 2048;

  /// Copies the codes and ids of `cpu` to `device`. Throws std::invalid_argument for a bad device
  /// or an index too large for one device (more than 2^32 - 2 codes, LUT above shared memory).
  GpuIndex(const Index& cpu, int device);
  ~GpuIndex();
  GpuIndex(const GpuIndex&) = delete;
  GpuIndex& operator=(const GpuIndex&) = delete;

  int device() const;
  size_t ntotal() const;
  int dim() const;
  const Codebooks& codebooks() const;
  Metric metric() const;

  /// Exact top-k of nq host queries (layout (nq, dim)); D, I are host arrays of layout (nq, k).
  void search(const float* q, size_t nq, size_t k, float* D, int64_t* I);
  /// Same with the queries already in device memory on this index's device. `stream` is the
  /// producer's cudaStream_t as an integer (0: none, 1: legacy default, 2: per-thread default);
  /// the search waits for the work queued there without blocking the host.
  void search_device(const float* q_dev, size_t nq, size_t k, float* D, int64_t* I,
                     uintptr_t stream);
  /// Packed codes (layout (n, code_size)) of n host vectors, computed on the device; identical to
  /// spqindex::encode.
  void encode(const float* x, size_t n, uint8_t* codes);
  /// Same with the vectors in device memory (see search_device for `stream`).
  void encode_device(const float* x_dev, size_t n, uint8_t* codes, uintptr_t stream);

  /// Device time of the last search's scan kernels (LUT + scan + selection), in milliseconds.
  float last_search_ms() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cuda
}  // namespace spqindex
