// Portable reference kernels. Inner loops run over k so the compiler can vectorise them with the
// baseline ISA while keeping the per-k summation order over d (and so bit-exact results).
#include "spqindex/code_layout.h"
#include "spqindex/simd.h"

namespace spqindex {
namespace {

void subspace_l2(const float* x, const float* ct, int K, int dsub, float* dist) {
  for (int k = 0; k < K; k++) dist[k] = 0.f;
  for (int d = 0; d < dsub; d++) {
    const float xd = x[d];
    const float* row = ct + static_cast<size_t>(d) * K;
    for (int k = 0; k < K; k++) {
      const float diff = xd - row[k];
      dist[k] += diff * diff;
    }
  }
}

void subspace_ip(const float* x, const float* ct, int K, int dsub, float* dot) {
  for (int k = 0; k < K; k++) dot[k] = 0.f;
  for (int d = 0; d < dsub; d++) {
    const float xd = x[d];
    const float* row = ct + static_cast<size_t>(d) * K;
    for (int k = 0; k < K; k++) dot[k] += xd * row[k];
  }
}

int nearest(const float* x, const float* ct, const float*, const float*, double, int K, int dsub) {
  float dist[256];
  subspace_l2(x, ct, K, dsub, dist);
  int best = 0;
  for (int k = 1; k < K; k++)
    if (dist[k] < dist[best]) best = k;  // strict: ties keep the smaller index
  return best;
}

// Quantized sums (simd.h SumsKernel) from the block layouts of code_layout.h.
void sums4(const uint8_t* blocks, size_t block_bytes, int M, size_t b0, size_t b1,
           const uint8_t* qlut, uint16_t* out) {
  const int P = (M + 1) / 2;
  for (size_t b = b0; b < b1; b++) {
    const uint8_t* blk = blocks + b * block_bytes;
    uint16_t* o = out + (b - b0) * 64;
    for (int j = 0; j < 64; j++) {
      const size_t pos = CodeLayout::pos4(static_cast<size_t>(j));
      uint32_t s = 0;
      for (int p = 0; p < P; p++) {
        const uint8_t byte = blk[static_cast<size_t>(p) * 64 + pos];
        s += qlut[p * 64 + (byte & 15)] + qlut[p * 64 + 32 + (byte >> 4)];
      }
      o[j] = static_cast<uint16_t>(s);
    }
  }
}

void sums8(const uint8_t* blocks, size_t block_bytes, int M, size_t b0, size_t b1,
           const uint8_t* qlut, uint16_t* out) {
  for (size_t b = b0; b < b1; b++) {
    const uint8_t* blk = blocks + b * block_bytes;
    uint16_t* o = out + (b - b0) * 64;
    for (int j = 0; j < 64; j++) o[j] = 0;
    for (int m = 0; m < M; m++)
      for (int j = 0; j < 64; j++)
        o[j] = static_cast<uint16_t>(
            o[j] +
            qlut[m * 256 +
                 blk[static_cast<size_t>(m) * 64 + CodeLayout::pos8(static_cast<size_t>(j))]]);
  }
}

}  // namespace

SumsKernel sums4_scalar() { return sums4; }
SumsKernel sums8_scalar() { return sums8; }

Kernels scalar_kernels() {
  Kernels k{SimdLevel::Scalar, subspace_l2, subspace_ip, nearest};
  k.sums4 = sums4;
  k.sums8 = sums8;
  return k;
}

}  // namespace spqindex
