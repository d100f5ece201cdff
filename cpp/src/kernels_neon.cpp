// NEON kernels (aarch64 Advanced SIMD). Like every ISA file: no static objects, only intrinsics
// and builtins (simd.h). Explicit mul then add (no FMA) keeps every lane bit-identical to the
// scalar kernel. ARM speed is not measured yet (built and tested under qemu-aarch64).
#include <arm_neon.h>

#include <cstdint>

#include "spqindex/simd.h"

namespace spqindex {
namespace {

void subspace_l2(const float* x, const float* ct, int K, int dsub, float* dist) {
  int k = 0;
  for (; k + 4 <= K; k += 4) {
    float32x4_t acc = vdupq_n_f32(0.f);
    for (int d = 0; d < dsub; d++) {
      const float32x4_t diff = vsubq_f32(vdupq_n_f32(x[d]), vld1q_f32(ct + (size_t)d * K + k));
      acc = vaddq_f32(acc, vmulq_f32(diff, diff));
    }
    vst1q_f32(dist + k, acc);
  }
  for (; k < K; k++) {
    float acc = 0.f;
    for (int d = 0; d < dsub; d++) {
      const float diff = x[d] - ct[(size_t)d * K + k];
      acc += diff * diff;
    }
    dist[k] = acc;
  }
}

void subspace_ip(const float* x, const float* ct, int K, int dsub, float* dot) {
  int k = 0;
  for (; k + 4 <= K; k += 4) {
    float32x4_t acc = vdupq_n_f32(0.f);
    for (int d = 0; d < dsub; d++)
      acc = vaddq_f32(acc, vmulq_f32(vdupq_n_f32(x[d]), vld1q_f32(ct + (size_t)d * K + k)));
    vst1q_f32(dot + k, acc);
  }
  for (; k < K; k++) {
    float acc = 0.f;
    for (int d = 0; d < dsub; d++) acc += x[d] * ct[(size_t)d * K + k];
    dot[k] = acc;
  }
}

// Exact distances 4 codewords at a time with a running first minimum per lane (strict <), then
// the smallest index among the lanes holding the overall minimum: the scalar first-minimum scan.
int nearest(const float* x, const float* ct, const float*, const float*, double, int K, int dsub) {
  if (K < 4) {
    float dist[4];
    subspace_l2(x, ct, K, dsub, dist);
    int best = 0;
    for (int k = 1; k < K; k++)
      if (dist[k] < dist[best]) best = k;
    return best;
  }
  float32x4_t best = vdupq_n_f32(0.f);
  const uint32_t lanes[4] = {0, 1, 2, 3};
  uint32x4_t best_k = vld1q_u32(lanes), kv = best_k;
  for (int k = 0; k < K; k += 4) {
    float32x4_t acc = vdupq_n_f32(0.f);
    for (int d = 0; d < dsub; d++) {
      const float32x4_t diff = vsubq_f32(vdupq_n_f32(x[d]), vld1q_f32(ct + (size_t)d * K + k));
      acc = vaddq_f32(acc, vmulq_f32(diff, diff));
    }
    if (k == 0) {
      best = acc;
    } else {
      kv = vaddq_u32(kv, vdupq_n_u32(4));
      const uint32x4_t lt = vcltq_f32(acc, best);
      best = vbslq_f32(lt, acc, best);
      best_k = vbslq_u32(lt, kv, best_k);
    }
  }
  float bv[4];
  uint32_t bk[4];
  vst1q_f32(bv, best);
  vst1q_u32(bk, best_k);
  int r = 0;
  for (int l = 1; l < 4; l++)
    if (bv[l] < bv[r] || (bv[l] == bv[r] && bk[l] < bk[r])) r = l;
  return static_cast<int>(bk[r]);
}

}  // namespace

// The complete NEON table (simd.h): scan kernels from the NEON scan files.
Kernels neon_kernels() {
  Kernels k{SimdLevel::NEON, subspace_l2, subspace_ip, nearest};
  k.scan4 = scan4_neon();
  k.scan8 = scan8_neon();
  k.sums4 = sums4_scalar();
  k.sums8 = sums8_scalar();
  return k;
}

}  // namespace spqindex
