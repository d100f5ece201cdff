// ADC scan with fused k-selection, the merge of per-block candidate lists, and the finish.
//
// Selection, per block (one query, one chunk of rows): a candidate buffer of `cap` keys in shared
// memory and a threshold (the k-th best key kept so far, initially "accept all"). Each tile of
// kTile rows is scored; keys below the threshold are appended (warp-aggregated atomics). When
// the buffer could not take another full tile, it is sorted (bitonic, in shared memory) and cut
// to the k best, which sets a tighter threshold. Keys are unique (they contain the row), so the
// selection is exact: every key among the block's k best survives every cut.
#include <algorithm>

#include "kernels.cuh"

namespace spqindex {
namespace cuda {
namespace detail {
namespace {

__device__ __forceinline__ uint64_t make_key(float s, uint32_t row) {
  uint32_t u = __float_as_uint(s);
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);  // float order -> unsigned order
  return (static_cast<uint64_t>(u) << 32) | row;
}

__device__ __forceinline__ float key_score(uint64_t key) {
  uint32_t u = static_cast<uint32_t>(key >> 32);
  u = (u & 0x80000000u) ? (u & 0x7FFFFFFFu) : ~u;
  return __uint_as_float(u);
}

/// Ascending bitonic sort of buf[0, P), P a power of two; called by the whole block.
__device__ void bitonic_sort(uint64_t* buf, int P) {
  for (int size = 2; size <= P; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int i = threadIdx.x; i < P / 2; i += blockDim.x) {
        const int lo = 2 * i - (i & (stride - 1));
        const int hi = lo + stride;
        const bool up = (lo & size) == 0;
        const uint64_t a = buf[lo], b = buf[hi];
        if ((a > b) == up) {
          buf[lo] = b;
          buf[hi] = a;
        }
      }
      __syncthreads();
    }
  }
}

/// Shared state of one block's selection.
struct SelectShared {
  int count;        ///< keys in buf
  uint64_t thresh;  ///< a key is kept only if below this (kEmptyKey until k keys were seen)
};

/// Sorts the `c` buffered keys and keeps the k best at the front. Whole block; all threads
/// pass the same c. Ends synchronised.
__device__ void compact(uint64_t* buf, SelectShared& st, int c, int k) {
  int P = 1;
  while (P < c) P <<= 1;
  for (int i = c + threadIdx.x; i < P; i += blockDim.x) buf[i] = kEmptyKey;
  __syncthreads();
  bitonic_sort(buf, P);
  if (threadIdx.x == 0) {
    st.count = min(c, k);
    if (c >= k) st.thresh = buf[k - 1];
  }
  __syncthreads();
}

/// Appends `key` when `keep`; every lane of the warp must call it.
__device__ __forceinline__ void offer(uint64_t key, bool keep, uint64_t* buf, SelectShared& st) {
  const unsigned mask = __ballot_sync(0xFFFFFFFFu, keep);
  if (mask == 0) return;
  const int lane = threadIdx.x & 31;
  const int leader = __ffs(mask) - 1;
  int base = 0;
  if (lane == leader) base = atomicAdd(&st.count, __popc(mask));
  base = __shfl_sync(0xFFFFFFFFu, base, leader);
  if (keep) buf[base + __popc(mask & ((1u << lane) - 1u))] = key;
}

/// After a tile's offers: cuts the buffer when it could not take another tile, or as soon as
/// k keys exist (to set the first threshold early). Whole block.
__device__ __forceinline__ void after_tile(uint64_t* buf, SelectShared& st, int cap, int k) {
  __syncthreads();
  const int c = st.count;
  const uint64_t th = st.thresh;
  __syncthreads();  // everyone has read before the next tile appends
  if (c > cap - kTile || (c >= k && th == kEmptyKey)) compact(buf, st, c, k);
}

/// Final cut and store of the k best keys (sorted, padded). Whole block.
__device__ void finish_block(uint64_t* buf, SelectShared& st, int k, uint64_t* out) {
  __syncthreads();
  const int c = st.count;
  __syncthreads();
  compact(buf, st, c, k);
  const int kept = min(c, k);
  for (int i = threadIdx.x; i < k; i += blockDim.x) out[i] = i < kept ? buf[i] : kEmptyKey;
}

/// Scores of R rows row0 + r * kBlock: Σ_m lut[m, code_m] in order m = 0..M-1, float32.
template <int NBITS, int R>
__device__ __forceinline__ void score_rows(const float* __restrict__ lut,
                                           const uint32_t* __restrict__ words, size_t plane,
                                           size_t row0, int M, float (&s)[R]) {
  constexpr int K = 1 << NBITS;
  constexpr uint32_t kMask = K - 1;
#pragma unroll
  for (int r = 0; r < R; r++) s[r] = 0.f;
  if constexpr (32 % NBITS == 0) {
    constexpr int kPer = 32 / NBITS;  // codes per word; none straddles two words
    for (int m0 = 0, w = 0; m0 < M; m0 += kPer, w++) {
      uint32_t word[R];
#pragma unroll
      for (int r = 0; r < R; r++) word[r] = __ldg(words + w * plane + row0 + r * kBlock);
#pragma unroll
      for (int j = 0; j < kPer; j++) {
        if (m0 + j < M) {
          const float* row = lut + (m0 + j) * K;
#pragma unroll
          for (int r = 0; r < R; r++) s[r] = __fadd_rn(s[r], row[(word[r] >> (j * NBITS)) & kMask]);
        }
      }
    }
  } else {
    for (int m = 0; m < M; m++) {
      const int bit = m * NBITS, w = bit >> 5, sh = bit & 31;
      const float* row = lut + m * K;
#pragma unroll
      for (int r = 0; r < R; r++) {
        const size_t at = w * plane + row0 + r * kBlock;
        const uint64_t pair =
            __ldg(words + at) | (static_cast<uint64_t>(__ldg(words + at + plane)) << 32);
        s[r] = __fadd_rn(s[r], row[static_cast<uint32_t>(pair >> sh) & kMask]);
      }
    }
  }
}

/// grid (nq, nchunks): block (q, c) selects the k best rows of chunk c for query q.
/// Dynamic shared memory: cap keys, then the query's LUT (M, K).
template <int NBITS>
__global__ void __launch_bounds__(kBlock)
    scan_select_kernel(const float* __restrict__ luts, DeviceCodes codes, int k, int cap,
                       size_t rows_per_chunk, uint64_t* __restrict__ out) {
  constexpr int K = 1 << NBITS;
  extern __shared__ __align__(16) unsigned char smem[];
  uint64_t* buf = reinterpret_cast<uint64_t*>(smem);
  float* lut = reinterpret_cast<float*>(buf + cap);
  __shared__ SelectShared st;

  const size_t q = blockIdx.x;
  const size_t chunk = blockIdx.y;
  const int M = codes.M;
  const float* lut_q = luts + q * M * K;
  for (int i = threadIdx.x; i < M * K; i += blockDim.x) lut[i] = lut_q[i];
  if (threadIdx.x == 0) {
    st.count = 0;
    st.thresh = kEmptyKey;
  }
  __syncthreads();

  // Chunks start at multiples of kTile and the planes are padded to kTile, so every load of a
  // tile is in bounds; rows past `end` are masked.
  const size_t begin = chunk * rows_per_chunk;
  const size_t end = min(codes.n, begin + rows_per_chunk);
  for (size_t t0 = begin; t0 < end; t0 += kTile) {
    const uint64_t thr = st.thresh;
    float s[kRowsPerThread];
    score_rows<NBITS, kRowsPerThread>(lut, codes.words, codes.plane, t0 + threadIdx.x, M, s);
#pragma unroll
    for (int r = 0; r < kRowsPerThread; r++) {
      const size_t row = t0 + threadIdx.x + r * kBlock;
      // NaN scores are never results on the CPU either (they fail every comparison).
      const bool valid = row < end && !isnan(s[r]);
      const uint64_t key = valid ? make_key(s[r], static_cast<uint32_t>(row)) : kEmptyKey;
      offer(key, key < thr, buf, st);
    }
    after_tile(buf, st, cap, k);
  }
  finish_block(buf, st, k, out + (q * gridDim.y + chunk) * k);
}

/// grid (nq, nout): block (q, g) selects the k best keys of lists [g*group, (g+1)*group).
__global__ void __launch_bounds__(kBlock)
    merge_kernel(const uint64_t* __restrict__ in, int nlists, int k, int cap, int group,
                 uint64_t* __restrict__ out) {
  extern __shared__ __align__(16) unsigned char smem[];
  uint64_t* buf = reinterpret_cast<uint64_t*>(smem);
  __shared__ SelectShared st;
  const size_t q = blockIdx.x;
  const int g = blockIdx.y;
  const int l0 = g * group, l1 = min(nlists, l0 + group);
  const uint64_t* src = in + (q * nlists + l0) * k;
  const size_t len = static_cast<size_t>(l1 - l0) * k;
  if (threadIdx.x == 0) {
    st.count = 0;
    st.thresh = kEmptyKey;
  }
  __syncthreads();
  for (size_t t0 = 0; t0 < len; t0 += kTile) {
    const uint64_t thr = st.thresh;
#pragma unroll
    for (int r = 0; r < kRowsPerThread; r++) {
      const size_t i = t0 + threadIdx.x + r * kBlock;
      const uint64_t key = i < len ? src[i] : kEmptyKey;
      offer(key, key < thr, buf, st);
    }
    after_tile(buf, st, cap, k);
  }
  finish_block(buf, st, k, out + (q * gridDim.y + g) * k);
}

__global__ void finish_kernel(const uint64_t* __restrict__ keys, size_t total,
                              const int64_t* __restrict__ ids, bool negate, float* __restrict__ D,
                              int64_t* __restrict__ I) {
  const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const uint64_t key = keys[i];
  if (key == kEmptyKey) {
    D[i] = negate ? -INFINITY : INFINITY;
    I[i] = -1;
  } else {
    const float s = key_score(key);
    D[i] = negate ? -s : s;
    I[i] = ids[static_cast<uint32_t>(key)];
  }
}

template <int NBITS>
size_t prepare_scan(int M, size_t k) {
  const size_t smem = scan_smem_bytes(k, M, 1 << NBITS);
  SPQ_CUDA_CHECK(cudaFuncSetAttribute(scan_select_kernel<NBITS>,
                                      cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(smem)));
  return smem;
}

template <int NBITS>
int scan_occupancy(int M, size_t k) {
  const size_t smem = prepare_scan<NBITS>(M, k);
  int blocks = 0;
  SPQ_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, scan_select_kernel<NBITS>,
                                                               kBlock, smem));
  return std::max(blocks, 1);
}

template <int NBITS>
void scan_select_nbits(const float* luts, size_t nq, const DeviceCodes& codes, size_t k,
                       size_t rows_per_chunk, int nchunks, uint64_t* out, cudaStream_t stream) {
  const int cap = select_capacity(k);
  const size_t smem = prepare_scan<NBITS>(codes.M, k);
  const dim3 grid(static_cast<unsigned>(nq), static_cast<unsigned>(nchunks));
  scan_select_kernel<NBITS>
      <<<grid, kBlock, smem, stream>>>(luts, codes, static_cast<int>(k), cap, rows_per_chunk, out);
  SPQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void launch_scan_select(const float* luts, size_t nq, const DeviceCodes& codes, size_t k,
                        size_t rows_per_chunk, int nchunks, uint64_t* out, cudaStream_t stream) {
  if (nq == 0) return;
  switch (codes.nbits) {
    case 1:
      return scan_select_nbits<1>(luts, nq, codes, k, rows_per_chunk, nchunks, out, stream);
    case 2:
      return scan_select_nbits<2>(luts, nq, codes, k, rows_per_chunk, nchunks, out, stream);
    case 3:
      return scan_select_nbits<3>(luts, nq, codes, k, rows_per_chunk, nchunks, out, stream);
    case 4:
      return scan_select_nbits<4>(luts, nq, codes, k, rows_per_chunk, nchunks, out, stream);
    case 5:
      return scan_select_nbits<5>(luts, nq, codes, k, rows_per_chunk, nchunks, out, stream);
    case 6:
      return scan_select_nbits<6>(luts, nq, codes, k, rows_per_chunk, nchunks, out, stream);
    case 7:
      return scan_select_nbits<7>(luts, nq, codes, k, rows_per_chunk, nchunks, out, stream);
    case 8:
      return scan_select_nbits<8>(luts, nq, codes, k, rows_per_chunk, nchunks, out, stream);
    default:
      throw std::invalid_argument("nbits: the CUDA scan supports 1..8, got " +
                                  std::to_string(codes.nbits));
  }
}

int scan_blocks_per_sm(int nbits, int M, size_t k) {
  switch (nbits) {
    case 1:
      return scan_occupancy<1>(M, k);
    case 2:
      return scan_occupancy<2>(M, k);
    case 3:
      return scan_occupancy<3>(M, k);
    case 4:
      return scan_occupancy<4>(M, k);
    case 5:
      return scan_occupancy<5>(M, k);
    case 6:
      return scan_occupancy<6>(M, k);
    case 7:
      return scan_occupancy<7>(M, k);
    case 8:
      return scan_occupancy<8>(M, k);
    default:
      throw std::invalid_argument("nbits: expected 1..8");
  }
}

void launch_merge(const uint64_t* in, size_t nq, int nlists, size_t k, int group, uint64_t* out,
                  cudaStream_t stream) {
  if (nq == 0) return;
  const int cap = select_capacity(k);
  const size_t smem = static_cast<size_t>(cap) * sizeof(uint64_t);
  SPQ_CUDA_CHECK(cudaFuncSetAttribute(merge_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(smem)));
  const int nout = (nlists + group - 1) / group;
  const dim3 grid(static_cast<unsigned>(nq), static_cast<unsigned>(nout));
  merge_kernel<<<grid, kBlock, smem, stream>>>(in, nlists, static_cast<int>(k), cap, group, out);
  SPQ_CUDA_CHECK(cudaGetLastError());
}

void launch_finish(const uint64_t* keys, size_t nq, size_t k, const int64_t* ids, bool negate,
                   float* D, int64_t* I, cudaStream_t stream) {
  const size_t total = nq * k;
  if (total == 0) return;
  const int block = 256;
  finish_kernel<<<static_cast<unsigned>((total + block - 1) / block), block, 0, stream>>>(
      keys, total, ids, negate, D, I);
  SPQ_CUDA_CHECK(cudaGetLastError());
}

size_t max_smem_per_block(int device) {
  int v = 0;
  SPQ_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  return static_cast<size_t>(v);
}

}  // namespace detail
}  // namespace cuda
}  // namespace spqindex
