// AVX-512 kernels. Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq for this file only; holds no static objects
// (a static initialiser here would run on CPUs without AVX-512).
#include <immintrin.h>

#include "spqindex/simd.h"

namespace spqindex {
namespace {

// Explicit mul then add (no FMA) keeps every lane bit-identical to the scalar kernel.
void subspace_l2(const float* x, const float* ct, int K, int dsub, float* dist) {
  int k = 0;
  for (; k + 16 <= K; k += 16) {
    __m512 acc = _mm512_setzero_ps();
    for (int d = 0; d < dsub; d++) {
      __m512 diff = _mm512_sub_ps(_mm512_set1_ps(x[d]), _mm512_loadu_ps(ct + (size_t)d * K + k));
      acc = _mm512_add_ps(acc, _mm512_mul_ps(diff, diff));
    }
    _mm512_storeu_ps(dist + k, acc);
  }
  for (; k < K; k++) {
    float acc = 0.f;
    for (int d = 0; d < dsub; d++) {
      float diff = x[d] - ct[(size_t)d * K + k];
      acc += diff * diff;
    }
    dist[k] = acc;
  }
}

void subspace_ip(const float* x, const float* ct, int K, int dsub, float* dot) {
  int k = 0;
  for (; k + 16 <= K; k += 16) {
    __m512 acc = _mm512_setzero_ps();
    for (int d = 0; d < dsub; d++)
      acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_set1_ps(x[d]),
                                             _mm512_loadu_ps(ct + (size_t)d * K + k)));
    _mm512_storeu_ps(dot + k, acc);
  }
  for (; k < K; k++) {
    float acc = 0.f;
    for (int d = 0; d < dsub; d++) acc += x[d] * ct[(size_t)d * K + k];
    dot[k] = acc;
  }
}

}  // namespace

Kernels avx512_kernels() { return Kernels{SimdLevel::AVX512, subspace_l2, subspace_ip}; }

}  // namespace spqindex
