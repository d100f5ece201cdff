// AVX2 kernels. Compiled with -mavx2 -mfma for this file only; holds no static objects (a static
// initialiser here would run on CPUs without AVX2) and uses only intrinsics/builtins (simd.h).
#include <immintrin.h>

#include <cstdint>

#include "spqindex/simd.h"

namespace spqindex {
namespace {

// Explicit mul then add (no FMA) keeps every lane bit-identical to the scalar kernel.
void subspace_l2(const float* x, const float* ct, int K, int dsub, float* dist) {
  int k = 0;
  for (; k + 8 <= K; k += 8) {
    __m256 acc = _mm256_setzero_ps();
    for (int d = 0; d < dsub; d++) {
      __m256 diff = _mm256_sub_ps(_mm256_set1_ps(x[d]), _mm256_loadu_ps(ct + (size_t)d * K + k));
      acc = _mm256_add_ps(acc, _mm256_mul_ps(diff, diff));
    }
    _mm256_storeu_ps(dist + k, acc);
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
  for (; k + 8 <= K; k += 8) {
    __m256 acc = _mm256_setzero_ps();
    for (int d = 0; d < dsub; d++)
      acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(x[d]),
                                             _mm256_loadu_ps(ct + (size_t)d * K + k)));
    _mm256_storeu_ps(dot + k, acc);
  }
  for (; k < K; k++) {
    float acc = 0.f;
    for (int d = 0; d < dsub; d++) acc += x[d] * ct[(size_t)d * K + k];
    dot[k] = acc;
  }
}


// Running minimum per lane over chunks of 8 codewords (strict <, so each lane keeps its first
// minimum), then the smallest index among the lanes holding the overall minimum. Distances are
// finite or +inf (inputs are finite), so this equals the scalar first-minimum scan.
int nearest_exact(const float* x, const float* ct, int K, int dsub) {
  if (K < 8) {
    float dist[8];
    subspace_l2(x, ct, K, dsub, dist);
    int best = 0;
    for (int k = 1; k < K; k++)
      if (dist[k] < dist[best]) best = k;
    return best;
  }
  __m256 best = _mm256_set1_ps(0.f);
  __m256i best_k = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256i kv = best_k;
  for (int k = 0; k < K; k += 8) {
    __m256 acc = _mm256_setzero_ps();
    for (int d = 0; d < dsub; d++) {
      __m256 diff = _mm256_sub_ps(_mm256_set1_ps(x[d]), _mm256_loadu_ps(ct + (size_t)d * K + k));
      acc = _mm256_add_ps(acc, _mm256_mul_ps(diff, diff));
    }
    if (k == 0) {
      best = acc;
    } else {
      kv = _mm256_add_epi32(kv, _mm256_set1_epi32(8));
      const __m256 lt = _mm256_cmp_ps(acc, best, _CMP_LT_OQ);
      best = _mm256_blendv_ps(best, acc, lt);
      best_k = _mm256_blendv_epi8(best_k, kv, _mm256_castps_si256(lt));
    }
  }
  alignas(32) float bv[8];
  alignas(32) int bk[8];
  _mm256_store_ps(bv, best);
  _mm256_store_si256(reinterpret_cast<__m256i*>(bk), best_k);
  int r = 0;
  for (int l = 1; l < 8; l++)
    if (bv[l] < bv[r] || (bv[l] == bv[r] && bk[l] < bk[r])) r = l;
  return bk[r];
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
// instead of three. With g = (dsub + 4) · 2^-23 (twice γ_{dsub+2}), both approx_k + ‖x‖² and the
// exact float distance S_k are within Ea = g (C² + 2‖x‖C) resp. g · D_k of the real distance D_k
// (C = max ‖c‖), so the exact winner w satisfies approx_w <= tau below. (2) every k with
// approx_k <= tau is rescored with exact_l2, ascending k, strict < : ties to the smaller k.
// Returns -1 when values are too large for the bound (caller takes the exact scan).
int nearest_bounded(const float* x, const float* ct, const float* rows, const float* norms,
                    double max_norm, int K, int dsub) {
  float xnf = 0.f;  // ‖x‖² in float: its relative error is below g, covered by xn * (1 + g)
  for (int d = 0; d < dsub; d++) xnf += x[d] * x[d];
  const double xn = xnf, xr = __builtin_sqrt(xn * (1 + 1e-6)), C = max_norm;
  if (!((xr + C) * (xr + C) < 1e36)) return -1;
  const double g = (dsub + 4) * (1.0 / 8388608.0);
  const double Ea = g * (C * C + 2 * xr * C);
  float approx[256];
  __m256 vmin = _mm256_set1_ps(__builtin_inff());
  const __m256 two = _mm256_set1_ps(2.f);
  for (int k = 0; k < K; k += 8) {
    __m256 dot = _mm256_setzero_ps();
    for (int d = 0; d < dsub; d++)
      dot = _mm256_fmadd_ps(_mm256_set1_ps(x[d]), _mm256_loadu_ps(ct + (size_t)d * K + k), dot);
    const __m256 a = _mm256_fnmadd_ps(two, dot, _mm256_loadu_ps(norms + k));
    _mm256_storeu_ps(approx + k, a);
    vmin = _mm256_min_ps(vmin, a);
  }
  alignas(32) float mins[8];
  _mm256_store_ps(mins, vmin);
  float amin = mins[0];
  for (int l = 1; l < 8; l++) amin = mins[l] < amin ? mins[l] : amin;
  const double tiny = (8.0 * dsub + 32) * __FLT_DENORM_MIN__;
  const double tau = amin + 2 * Ea + 3 * g * (xn * (1 + g) + __builtin_fabs(amin) + Ea) + tiny;
  // Rounded to float with a relative margin above float's 2^-24, so tauf >= tau.
  const float tauf = static_cast<float>(tau + __builtin_fabs(tau) * 1e-6 + tiny);
  const __m256 vtau = _mm256_set1_ps(tauf);
  int best = -1;
  float best_s = __builtin_inff();
  for (int k = 0; k < K; k += 8) {
    uint32_t mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(approx + k), vtau, _CMP_LE_OQ));
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
  if (best < 0) {  // every exact distance is +inf: the scalar scan keeps k = 0
    best = 0;
  }
  return best;
}

int nearest(const float* x, const float* ct, const float* rows, const float* norms,
            double max_norm, int K, int dsub) {
  if (K >= 32) {  // below, one op per (k, d) saves too little to pay for the second step
    const int k = nearest_bounded(x, ct, rows, norms, max_norm, K, dsub);
    if (k >= 0) return k;
  }
  return nearest_exact(x, ct, K, dsub);
}

}  // namespace

// The complete AVX2 table (simd.h): scan kernels from the AVX2 scan files.
Kernels avx2_kernels() {
  Kernels k{SimdLevel::AVX2, subspace_l2, subspace_ip, nearest};
  k.scan4 = scan4_avx2();
  return k;
}

}  // namespace spqindex
