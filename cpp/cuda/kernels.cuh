// Internal to spqindex_cuda: kernel launchers and the device-side layouts they share.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace spqindex {
namespace cuda {
namespace detail {

[[noreturn]] inline void throw_cuda(cudaError_t err, const char* what, const char* file, int line) {
  throw std::runtime_error(std::string("spqindex CUDA error: ") + cudaGetErrorString(err) + " (" +
                           what + ") at " + file + ":" + std::to_string(line));
}

#define SPQ_CUDA_CHECK(call)                                                     \
  do {                                                                           \
    cudaError_t spq_err_ = (call);                                               \
    if (spq_err_ != cudaSuccess)                                                 \
      ::spqindex::cuda::detail::throw_cuda(spq_err_, #call, __FILE__, __LINE__); \
  } while (0)

/// A candidate is one uint64 key: (order-preserving bits of the float score) << 32 | row.
/// Rows on the device are sorted by id, so key order is exactly the CPU's (score, id) order.
constexpr uint64_t kEmptyKey = ~uint64_t(0);  ///< padding; sorts after every real candidate
constexpr uint32_t kMaxRows = 0xFFFFFFFEu;    ///< row 0xFFFFFFFF is reserved for kEmptyKey

constexpr int kBlock = 256;        ///< threads per scan / merge block
constexpr int kRowsPerThread = 4;  ///< rows each thread scores per tile
constexpr int kTile = kBlock * kRowsPerThread;

/// Capacity of a block's candidate buffer for top-k: a power of two >= k + kTile, so a whole
/// tile of candidates always fits after a compaction down to k.
inline int select_capacity(size_t k) {
  size_t cap = 1;
  while (cap < k + kTile) cap <<= 1;
  return static_cast<int>(cap);
}
inline size_t scan_smem_bytes(size_t k, int M, int K) {
  return static_cast<size_t>(select_capacity(k)) * sizeof(uint64_t) +
         static_cast<size_t>(M) * K * sizeof(float);
}

/// Codes on the device ("word planes"): row r's packed FAISS bytes read as little-endian 32-bit
/// words; word w of every row is stored contiguously.
/// Layout: words (nplanes, plane), plane = n rounded up to a multiple of kTile (zero padded);
/// nplanes = ceil(code_size / 4), plus one zero plane when nbits does not divide 32 (codes may
/// straddle two words).
struct DeviceCodes {
  const uint32_t* words;
  size_t plane;
  size_t n;
  int M;
  int nbits;
};

/// luts (nq, M, K) for queries q (nq, M*dsub) and codebooks transposed (M, dsub, K), computed with
/// exactly the float32 operations of kernels_scalar.cpp + lut.cpp. metric: spqindex::Metric id.
void launch_lut(const float* q, size_t nq, const float* centroids_t, int M, int K, int dsub,
                int metric, float* luts, cudaStream_t stream);

/// Packed codes (n, code_size) of x (n, M*dsub); codebooks (M, K, dsub). Same as encode.cpp.
void launch_encode(const float* x, size_t n, const float* centroids, int M, int K, int dsub,
                   int nbits, size_t code_size, uint8_t* codes, cudaStream_t stream);

/// Sets *flag to 1 when any of the n floats is NaN or Inf (flag is not cleared).
void launch_check_finite(const float* x, size_t n, int* flag, cudaStream_t stream);

/// For each query q and chunk c of rows [c*rows_per_chunk, ...): the k best keys of the chunk,
/// sorted, padded with kEmptyKey. out layout (nq, nchunks, k).
void launch_scan_select(const float* luts, size_t nq, const DeviceCodes& codes, size_t k,
                        size_t rows_per_chunk, int nchunks, uint64_t* out, cudaStream_t stream);

/// Resident scan blocks per SM for this shape (one "wave" is this times the SM count).
int scan_blocks_per_sm(int nbits, int M, size_t k);

/// Reduces nlists candidate lists per query to ceil(nlists / group): in (nq, nlists, k) ->
/// out (nq, ceil(nlists / group), k), each output list the k best keys of `group` input lists.
void launch_merge(const uint64_t* in, size_t nq, int nlists, size_t k, int group, uint64_t* out,
                  cudaStream_t stream);

/// keys (nq, k) -> D (nq, k) scores (negated when `negate`), I (nq, k) = ids[row]; padding
/// becomes (+inf or -inf, -1).
void launch_finish(const uint64_t* keys, size_t nq, size_t k, const int64_t* ids, bool negate,
                   float* D, int64_t* I, cudaStream_t stream);

/// Largest dynamic shared memory one block may use on `device` (opt-in limit).
size_t max_smem_per_block(int device);

}  // namespace detail
}  // namespace cuda
}  // namespace spqindex
