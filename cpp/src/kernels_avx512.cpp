// AVX-512 kernels. Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq for this file only; holds no static objects
// (a static initialiser here would run on CPUs without AVX-512).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

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


// Running minimum per lane over chunks of 16 codewords (strict <, so each lane keeps its first
// minimum), then the smallest index among the lanes holding the overall minimum. Distances are
// finite or +inf (inputs are finite), so this equals the scalar first-minimum scan.
int nearest_exact(const float* x, const float* ct, int K, int dsub) {
  if (K < 16) {
    float dist[16];
    subspace_l2(x, ct, K, dsub, dist);
    int best = 0;
    for (int k = 1; k < K; k++)
      if (dist[k] < dist[best]) best = k;
    return best;
  }
  __m512 best = _mm512_setzero_ps();
  __m512i best_k = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  __m512i kv = best_k;
  for (int k = 0; k < K; k += 16) {
    __m512 acc = _mm512_setzero_ps();
    for (int d = 0; d < dsub; d++) {
      __m512 diff = _mm512_sub_ps(_mm512_set1_ps(x[d]), _mm512_loadu_ps(ct + (size_t)d * K + k));
      acc = _mm512_add_ps(acc, _mm512_mul_ps(diff, diff));
    }
    if (k == 0) {
      best = acc;
    } else {
      kv = _mm512_add_epi32(kv, _mm512_set1_epi32(16));
      const __mmask16 lt = _mm512_cmp_ps_mask(acc, best, _CMP_LT_OQ);
      best = _mm512_mask_mov_ps(best, lt, acc);
      best_k = _mm512_mask_mov_epi32(best_k, lt, kv);
    }
  }
  const float m = _mm512_reduce_min_ps(best);
  const __mmask16 at_min = _mm512_cmp_ps_mask(best, _mm512_set1_ps(m), _CMP_EQ_OQ);
  return _mm512_mask_reduce_min_epi32(at_min, best_k);
}

// Exact sequential distance of one codeword (the reference's arithmetic, in order over d).
float exact_l2(const float* x, const float* c, int dsub) {
  float acc = 0.f;
  for (int d = 0; d < dsub; d++) {
    const float diff = x[d] - c[d];
    acc += diff * diff;
  }
  return acc;
}

// Encoder argmin in two steps. (1) approx_k = ‖c_k‖² − 2 x·c_k with FMAs, one op per (k, d)
// instead of three (the FMA chain's error is within γ_{dsub+1} of the same terms). With g = (dsub + 4) · 2^-23 (twice γ_{dsub+2}), both approx_k + ‖x‖² and the
// exact float distance S_k are within Ea = g (C² + 2‖x‖C) resp. g · D_k of the real distance D_k
// (C = max ‖c‖), so the exact winner w satisfies approx_w <= tau below. (2) every k with
// approx_k <= tau is rescored with exact_l2, ascending k, strict < : ties to the smaller k.
// Returns -1 when values are too large for the bound (caller takes the exact scan).
// DSUB > 0: dsub known at compile time (the x broadcasts stay in registers across k).
template <int DSUB>
int nearest_bounded(const float* x, const float* ct, const float* rows, const float* norms,
                    double max_norm, int K, int dsub_rt) {
  const int dsub = DSUB > 0 ? DSUB : dsub_rt;
  float xnf = 0.f;  // ‖x‖² in float: its relative error is below g, covered by xn * (1 + g)
  for (int d = 0; d < dsub; d++) xnf += x[d] * x[d];
  const double xn = xnf, xr = std::sqrt(xn * (1 + 1e-6)), C = max_norm;
  if (!((xr + C) * (xr + C) < 1e36)) return -1;
  const double g = (dsub + 4) * (1.0 / 8388608.0);
  const double Ea = g * (C * C + 2 * xr * C);
  float approx[256];
  // approx = ‖c‖² + Σ_d (−2 x_d) c_d in one FMA chain (−2x is exact).
  __m512 vmin = _mm512_set1_ps(std::numeric_limits<float>::infinity());
  for (int k = 0; k < K; k += 16) {
    __m512 a = _mm512_loadu_ps(norms + k);
    for (int d = 0; d < dsub; d++)
      a = _mm512_fmadd_ps(_mm512_set1_ps(-2.f * x[d]), _mm512_loadu_ps(ct + (size_t)d * K + k), a);
    _mm512_storeu_ps(approx + k, a);
    vmin = _mm512_min_ps(vmin, a);
  }
  const float amin = _mm512_reduce_min_ps(vmin);
  const double tiny = (8.0 * dsub + 32) * std::numeric_limits<float>::denorm_min();
  const double tau = amin + 2 * Ea + 3 * g * (xn * (1 + g) + std::fabs(amin) + Ea) + tiny;
  // Rounded to float with a relative margin above float's 2^-24, so tauf >= tau.
  const float tauf = static_cast<float>(tau + std::fabs(tau) * 1e-6 + tiny);
  const __m512 vtau = _mm512_set1_ps(tauf);
  // Count the candidates without branching; a single one is the approximate argmin itself.
  int count = 0, only = 0;
  for (int k = 0; k < K; k += 16) {
    const uint32_t mask = _mm512_cmp_ps_mask(_mm512_loadu_ps(approx + k), vtau, _CMP_LE_OQ);
    count += __builtin_popcount(mask);
    only += mask ? k + __builtin_ctz(mask) : 0;
  }
  if (count == 1) return only;
  int best = -1;
  float best_s = std::numeric_limits<float>::infinity();
  for (int k = 0; k < K; k += 16) {
    uint32_t mask = _mm512_cmp_ps_mask(_mm512_loadu_ps(approx + k), vtau, _CMP_LE_OQ);
    while (mask) {
      const int kk = k + __builtin_ctz(mask);
      mask &= mask - 1;
      const float s = exact_l2(x, rows + (size_t)kk * dsub, dsub);
      if (s < best_s) {
        best_s = s;
        best = kk;
      }
    }
  }
  if (best < 0) best = 0;  // every exact distance is +inf: the scalar scan keeps k = 0
  return best;
}

int nearest(const float* x, const float* ct, const float* rows, const float* norms,
            double max_norm, int K, int dsub) {
  if (K >= 64) {  // below, one op per (k, d) saves too little to pay for the second step
    int k;
    switch (dsub) {
      case 4: k = nearest_bounded<4>(x, ct, rows, norms, max_norm, K, dsub); break;
      case 8: k = nearest_bounded<8>(x, ct, rows, norms, max_norm, K, dsub); break;
      case 16: k = nearest_bounded<16>(x, ct, rows, norms, max_norm, K, dsub); break;
      default: k = nearest_bounded<0>(x, ct, rows, norms, max_norm, K, dsub);
    }
    if (k >= 0) return k;
  }
  return nearest_exact(x, ct, K, dsub);
}

}  // namespace

Kernels avx512_kernels() { return Kernels{SimdLevel::AVX512, subspace_l2, subspace_ip, nearest}; }

}  // namespace spqindex
