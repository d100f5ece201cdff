// LUT and encode kernels. Every float operation is an explicit round-to-nearest intrinsic in the
// order of the CPU reference (kernels_scalar.cpp subspace_l2 / subspace_ip, lut.cpp,
// encode.cpp), so results are bitwise equal; the build also passes --fmad=false.
#include <algorithm>

#include "kernels.cuh"

namespace spqindex {
namespace cuda {
namespace detail {
namespace {

constexpr int kMetricSPQ = 1, kMetricIP = 2;  // spqindex::Metric ids (0 is L2)

// One block per (query, sub-space); thread k computes LUT entry k.
__global__ void lut_kernel(const float* __restrict__ q, int dim, const float* __restrict__ ct,
                           int M, int K, int dsub, int metric, float* __restrict__ luts) {
  const size_t qi = blockIdx.x;
  const int m = blockIdx.y;
  const float* x = q + qi * dim + static_cast<size_t>(m) * dsub;
  const float* c = ct + static_cast<size_t>(m) * dsub * K;
  for (int k = threadIdx.x; k < K; k += blockDim.x) {
    float acc = 0.f;
    if (metric == kMetricIP) {
      for (int d = 0; d < dsub; d++) acc = __fadd_rn(acc, __fmul_rn(x[d], c[d * K + k]));
      acc = -acc;
    } else {
      for (int d = 0; d < dsub; d++) {
        const float diff = __fsub_rn(x[d], c[d * K + k]);
        acc = __fadd_rn(acc, __fmul_rn(diff, diff));
      }
      if (metric == kMetricSPQ) acc = __fsqrt_rn(acc);
    }
    luts[(qi * M + m) * K + k] = acc;
  }
}

// One thread per vector: for each sub-space the nearest codeword (strict <, ties to the smaller
// index), packed LSB first exactly like CodeWriter. Codewords are read by all lanes at once
// (broadcast loads), the vector's own values stay in L1.
__global__ void encode_kernel(const float* __restrict__ x, size_t n, const float* __restrict__ cent,
                              int M, int K, int dsub, int nbits, size_t code_size,
                              uint8_t* __restrict__ codes) {
  const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const size_t dim = static_cast<size_t>(M) * dsub;
  const float* xi = x + i * dim;
  uint8_t* row = codes + i * code_size;
  uint64_t acc = 0;
  int used = 0;
  size_t pos = 0;
  for (int m = 0; m < M; m++) {
    const float* xm = xi + static_cast<size_t>(m) * dsub;
    const float* cm = cent + static_cast<size_t>(m) * K * dsub;
    float best_d = 0.f;
    int best = 0;
    for (int k = 0; k < K; k++) {
      const float* ck = cm + static_cast<size_t>(k) * dsub;
      float d2 = 0.f;
      for (int d = 0; d < dsub; d++) {
        const float diff = __fsub_rn(xm[d], ck[d]);
        d2 = __fadd_rn(d2, __fmul_rn(diff, diff));
      }
      if (k == 0 || d2 < best_d) {
        best_d = d2;
        best = k;
      }
    }
    acc |= static_cast<uint64_t>(best) << used;
    used += nbits;
    while (used >= 8) {
      row[pos++] = static_cast<uint8_t>(acc);
      acc >>= 8;
      used -= 8;
    }
  }
  if (used > 0) row[pos] = static_cast<uint8_t>(acc);
}

__global__ void check_finite_kernel(const float* __restrict__ x, size_t n, int* flag) {
  bool bad = false;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    bad |= !isfinite(x[i]);
  if (__syncthreads_or(bad) && threadIdx.x == 0) *flag = 1;
}

}  // namespace

void launch_lut(const float* q, size_t nq, const float* centroids_t, int M, int K, int dsub,
                int metric, float* luts, cudaStream_t stream) {
  if (nq == 0) return;
  const dim3 grid(static_cast<unsigned>(nq), static_cast<unsigned>(M));
  lut_kernel<<<grid, std::max(32, std::min(K, 256)), 0, stream>>>(q, M * dsub, centroids_t, M, K,
                                                                  dsub, metric, luts);
  SPQ_CUDA_CHECK(cudaGetLastError());
}

void launch_encode(const float* x, size_t n, const float* centroids, int M, int K, int dsub,
                   int nbits, size_t code_size, uint8_t* codes, cudaStream_t stream) {
  if (n == 0) return;
  const int block = 128;
  const size_t grid = (n + block - 1) / block;
  encode_kernel<<<static_cast<unsigned>(grid), block, 0, stream>>>(x, n, centroids, M, K, dsub,
                                                                   nbits, code_size, codes);
  SPQ_CUDA_CHECK(cudaGetLastError());
}

void launch_check_finite(const float* x, size_t n, int* flag, cudaStream_t stream) {
  if (n == 0) return;
  const int block = 256;
  const size_t grid = std::min<size_t>((n + block - 1) / block, 1024);
  check_finite_kernel<<<static_cast<unsigned>(grid), block, 0, stream>>>(x, n, flag);
  SPQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace detail
}  // namespace cuda
}  // namespace spqindex
