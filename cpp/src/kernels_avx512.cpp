// AVX-512 kernels. Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq for this file only;
// holds no static objects (a static initialiser here would run on CPUs without AVX-512) and uses
// only intrinsics/builtins (simd.h).
#include <immintrin.h>

#include <cstdint>

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
// Step (1) for NV vectors at once: each codeword chunk is loaded once for all of them.
// approx = ‖c‖² + Σ_d (−2 x_d) c_d in one FMA chain (−2x is exact). DSUB > 0: known at compile
// time. Layout: approx (NV, K).
template <int DSUB, int NV>
void approx_pass(const float* const* xs, const float* ct, const float* norms, int K, int dsub_rt,
                 float* approx, float* amin) {
  const int dsub = DSUB > 0 ? DSUB : dsub_rt;
  __m512 vmin[NV];
  for (int v = 0; v < NV; v++) vmin[v] = _mm512_set1_ps(__builtin_inff());
  for (int k = 0; k < K; k += 16) {
    __m512 a[NV];
    const __m512 nk = _mm512_loadu_ps(norms + k);
    for (int v = 0; v < NV; v++) a[v] = nk;
    for (int d = 0; d < dsub; d++) {
      const __m512 c = _mm512_loadu_ps(ct + (size_t)d * K + k);
      for (int v = 0; v < NV; v++) a[v] = _mm512_fmadd_ps(_mm512_set1_ps(-2.f * xs[v][d]), c, a[v]);
    }
    for (int v = 0; v < NV; v++) {
      _mm512_storeu_ps(approx + (size_t)v * K + k, a[v]);
      vmin[v] = _mm512_min_ps(vmin[v], a[v]);
    }
  }
  for (int v = 0; v < NV; v++) amin[v] = _mm512_reduce_min_ps(vmin[v]);
}

// Step (2): candidates within tau of the approximate minimum, rescored exactly.
// Returns -1 when values are too large for the bound (caller takes the exact scan).
int finish_bounded(const float* x, const float* approx, float amin, const float* rows,
                   double max_norm, int K, int dsub) {
  // ‖x‖² in float, any order: relative error below g, covered by xn * (1 + g).
  __m512 xx = _mm512_setzero_ps();
  for (int d = 0; d < dsub; d += 16) {
    const __m512 xv = _mm512_maskz_loadu_ps(dsub - d >= 16 ? 0xFFFF : (1u << (dsub - d)) - 1, x + d);
    xx = _mm512_add_ps(xx, _mm512_mul_ps(xv, xv));
  }
  const double xn = _mm512_reduce_add_ps(xx), xr = __builtin_sqrt(xn * (1 + 1e-6)), C = max_norm;
  if (!((xr + C) * (xr + C) < 1e36) || !__builtin_isfinite(amin)) return -1;
  const double g = (dsub + 4) * (1.0 / 8388608.0);
  const double Ea = g * (C * C + 2 * xr * C);
  const double tiny = (8.0 * dsub + 32) * __FLT_DENORM_MIN__;
  const double tau = amin + 2 * Ea + 3 * g * (xn * (1 + g) + __builtin_fabs(amin) + Ea) + tiny;
  // Rounded to float with a relative margin above float's 2^-24, so tauf >= tau.
  const float tauf = static_cast<float>(tau + __builtin_fabs(tau) * 1e-6 + tiny);
  const __m512 vtau = _mm512_set1_ps(tauf);
  // Count the candidates without branching; a single one is the approximate argmin itself.
  __m512i count = _mm512_setzero_si512(), only = _mm512_setzero_si512();
  __m512i kv = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i one = _mm512_set1_epi32(1), step = _mm512_set1_epi32(16);
  for (int k = 0; k < K; k += 16) {
    const __mmask16 le = _mm512_cmp_ps_mask(_mm512_loadu_ps(approx + k), vtau, _CMP_LE_OQ);
    count = _mm512_mask_add_epi32(count, le, count, one);
    only = _mm512_mask_mov_epi32(only, le, kv);
    kv = _mm512_add_epi32(kv, step);
  }
  if (_mm512_reduce_add_epi32(count) == 1) return _mm512_reduce_max_epi32(only);
  int best = -1;
  float best_s = __builtin_inff();
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

template <int DSUB>
void nearest_batch_d(const float* x, size_t n, size_t stride, const float* ct, const float* rows,
                     const float* norms, double max_norm, int K, int dsub, uint8_t* out,
                     size_t out_stride) {
  constexpr int NV = 4;
  float approx[NV * 256];
  float amin[NV];
  for (size_t i = 0; i < n; i += NV) {
    const float* xs[NV];
    const int nv = n - i < NV ? static_cast<int>(n - i) : NV;
    for (int v = 0; v < NV; v++) xs[v] = x + (i + (v < nv ? v : nv - 1)) * stride;
    if (nv == NV) {
      approx_pass<DSUB, NV>(xs, ct, norms, K, dsub, approx, amin);
    } else {
      for (int v = 0; v < nv; v++)
        approx_pass<DSUB, 1>(xs + v, ct, norms, K, dsub, approx + (size_t)v * K, amin + v);
    }
    for (int v = 0; v < nv; v++) {
      int k = finish_bounded(xs[v], approx + (size_t)v * K, amin[v], rows, max_norm, K, dsub);
      if (k < 0) k = nearest_exact(xs[v], ct, K, dsub);
      out[(i + v) * out_stride] = static_cast<uint8_t>(k);
    }
  }
}

// nearest() for n vectors (row stride `stride`), writing out[i * out_stride].
void nearest_batch(const float* x, size_t n, size_t stride, const float* ct, const float* rows,
                   const float* norms, double max_norm, int K, int dsub, uint8_t* out,
                   size_t out_stride) {
  if (K < 64) {  // below, one op per (k, d) saves too little to pay for the second step
    for (size_t i = 0; i < n; i++)
      out[i * out_stride] = static_cast<uint8_t>(nearest_exact(x + i * stride, ct, K, dsub));
    return;
  }
  switch (dsub) {
    case 4: return nearest_batch_d<4>(x, n, stride, ct, rows, norms, max_norm, K, dsub, out, out_stride);
    case 8: return nearest_batch_d<8>(x, n, stride, ct, rows, norms, max_norm, K, dsub, out, out_stride);
    case 16: return nearest_batch_d<16>(x, n, stride, ct, rows, norms, max_norm, K, dsub, out, out_stride);
    default: return nearest_batch_d<0>(x, n, stride, ct, rows, norms, max_norm, K, dsub, out, out_stride);
  }
}

int nearest(const float* x, const float* ct, const float* rows, const float* norms,
            double max_norm, int K, int dsub) {
  uint8_t k;
  nearest_batch(x, 1, 0, ct, rows, norms, max_norm, K, dsub, &k, 1);
  return k;
}

}  // namespace

// The complete AVX-512 table (simd.h): scan kernels from the AVX-512 scan files; the exact 8-bit
// scan needs VBMI (vpermi2b), which the caller detected.
Kernels avx512_kernels(bool vbmi) {
  Kernels k{SimdLevel::AVX512, subspace_l2, subspace_ip, nearest, nearest_batch};
  k.scan4 = scan4_avx512();
  if (vbmi) k.scan8 = scan8_avx512vbmi();
  k.sums4 = sums4_avx2();  // AVX2 code runs on every AVX-512 CPU
  k.sums8 = sums8_scalar();
  return k;
}

}  // namespace spqindex
