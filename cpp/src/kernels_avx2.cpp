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
      acc = _mm256_add_ps(
          acc, _mm256_mul_ps(_mm256_set1_ps(x[d]), _mm256_loadu_ps(ct + (size_t)d * K + k)));
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

// Encoder argmin in two steps. (1) approx_k = ‖c_k‖² + Σ_d (−2 x_d) c_k[d] in one FMA chain
// (−2x is exact), one op per (k, d) instead of three. With g = (dsub + 4) · 2^-23 (twice
// γ_{dsub+2}), both approx_k + ‖x‖² and the exact float distance S_k are within
// Ea = g (C² + 2‖x‖C) resp. g · D_k of the real distance D_k (C = max ‖c‖), so the exact winner w
// satisfies approx_w <= tau = amin + 2 Ea + 3 g (‖x‖² (1 + g) + |amin| + Ea) + tiny.
// 2‖x‖C <= ‖x‖² + C² replaces the square root (a larger tau only admits more candidates).
// (2) every k with approx_k <= tau is rescored with exact_l2, ascending k, strict < : ties to the
// smaller k; a single candidate is the approximate argmin and the answer as it is.
//
// Lanes are vectors: 8 vectors at once, one codeword per step (its coordinates broadcast), so
// the running minimum, its index and the candidate count need no horizontal reductions.
constexpr int kLanes = 8;
constexpr int kMaxDsubBatch = 256;

// Expanded tau: tau = amin + A |amin| + B xn + E with Ea = g (2 C² + xn (1 + 1e-6)).
struct TauBound {
  double A, B, E, tiny;
  bool ok;  ///< C small enough for the bound at all
  TauBound(double max_norm, int dsub) {
    const double C2 = max_norm * max_norm, g = (dsub + 4) * (1.0 / 8388608.0);
    A = 3 * g;
    B = 2 * g * (1 + 1e-6) + 3 * g * (1 + g) + 3 * g * g * (1 + 1e-6);
    tiny = (8.0 * dsub + 32) * __FLT_DENORM_MIN__;
    E = (4 * g + 6 * g * g) * C2 + tiny;
    ok = 2 * C2 < 1e35;
  }
};

// tau for 4 lanes in double, rounded to float with a relative margin above float's 2^-24 (so the
// float value is >= tau). Lanes outside the bound's range come back as NaN (no candidate).
__m128 tau4(__m128 amin, __m128 xn, const TauBound& tb) {
  const __m256d a = _mm256_cvtps_pd(amin), x = _mm256_cvtps_pd(xn);
  const __m256d absmask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7FFFFFFFFFFFFFFFll));
  __m256d t = _mm256_add_pd(a, _mm256_mul_pd(_mm256_set1_pd(tb.A), _mm256_and_pd(a, absmask)));
  t = _mm256_add_pd(t, _mm256_add_pd(_mm256_mul_pd(_mm256_set1_pd(tb.B), x), _mm256_set1_pd(tb.E)));
  t = _mm256_add_pd(t, _mm256_add_pd(_mm256_mul_pd(_mm256_and_pd(t, absmask), _mm256_set1_pd(1e-6)),
                                     _mm256_set1_pd(tb.tiny)));
  // In range: xn < 1e35 and amin finite (|amin| < inf); else NaN.
  const __m256d in = _mm256_and_pd(
      _mm256_cmp_pd(x, _mm256_set1_pd(1e35), _CMP_LT_OQ),
      _mm256_cmp_pd(_mm256_and_pd(a, absmask), _mm256_set1_pd(__builtin_inf()), _CMP_LT_OQ));
  t = _mm256_blendv_pd(_mm256_set1_pd(__builtin_nan("")), t, in);
  // cvtpd_ps rounds to nearest: add one float ulp of margin by rounding up explicitly.
  const __m128 f = _mm256_cvtpd_ps(t);
  const __m256d back = _mm256_cvtps_pd(f);
  const __m128 up = _mm_castsi128_ps(_mm_add_epi32(_mm_castps_si128(f), _mm_set1_epi32(1)));
  const __m128 down = _mm_castsi128_ps(_mm_sub_epi32(_mm_castps_si128(f), _mm_set1_epi32(1)));
  // f < t: move one ulp toward +inf (positive f: +1 in the bit pattern, negative f: -1).
  const __m128 below = _mm256_cvtpd_ps(_mm256_cmp_pd(back, t, _CMP_LT_OQ));
  const __m128 neg = _mm_cmplt_ps(f, _mm_setzero_ps());
  const __m128 moved = _mm_blendv_ps(up, down, neg);
  return _mm_blendv_ps(f, moved, below);
}

template <int DSUB>
void nearest_lanes(const float* const* xs, const float* rows, const float* ct, const float* norms,
                   const TauBound& tb, int K, int dsub_rt, int* out, float* approx) {
  const int dsub = DSUB > 0 ? DSUB : dsub_rt;
  alignas(32) float xt[kMaxDsubBatch * kLanes];  // −2x, layout (dsub, lanes)
  __m256 xn = _mm256_setzero_ps();
  for (int d = 0; d < dsub; d++) {
    const __m256 v = _mm256_setr_ps(xs[0][d], xs[1][d], xs[2][d], xs[3][d], xs[4][d], xs[5][d],
                                    xs[6][d], xs[7][d]);
    xn = _mm256_add_ps(xn, _mm256_mul_ps(v, v));
    _mm256_store_ps(xt + d * kLanes, _mm256_mul_ps(v, _mm256_set1_ps(-2.f)));
  }
  // Pass 1: approx (K, lanes), running minimum and its first index per lane.
  __m256 vmin = _mm256_set1_ps(__builtin_inff());
  __m256i vidx = _mm256_setzero_si256();
  // DSUB <= 8: −2x stays in registers across k (the compiler cannot prove approx and xt apart).
  constexpr int R = DSUB > 0 && DSUB <= 8 ? DSUB : 1;
  __m256 xr[R];
  for (int d = 0; d < R; d++) xr[d] = _mm256_load_ps(xt + d * kLanes);
  for (int k = 0; k < K; k++) {
    const float* c = rows + (size_t)k * dsub;
    __m256 a = _mm256_broadcast_ss(norms + k);
    if (DSUB > 0 && DSUB <= 8) {
      for (int d = 0; d < R; d++) a = _mm256_fmadd_ps(xr[d], _mm256_broadcast_ss(c + d), a);
    } else {
      for (int d = 0; d < dsub; d++)
        a = _mm256_fmadd_ps(_mm256_load_ps(xt + d * kLanes), _mm256_broadcast_ss(c + d), a);
    }
    _mm256_store_ps(approx + (size_t)k * kLanes, a);
    const __m256 lt = _mm256_cmp_ps(a, vmin, _CMP_LT_OQ);
    vmin = _mm256_min_ps(a, vmin);  // equal or NaN: keeps vmin, like the strict < above
    vidx = _mm256_blendv_epi8(vidx, _mm256_set1_epi32(k), _mm256_castps_si256(lt));
  }
  const __m256 tau =
      _mm256_set_m128(tau4(_mm256_extractf128_ps(vmin, 1), _mm256_extractf128_ps(xn, 1), tb),
                      tau4(_mm256_castps256_ps128(vmin), _mm256_castps256_ps128(xn), tb));
  // Pass 2: candidates per lane (compare masks are -1).
  __m256i cnt = _mm256_setzero_si256();
  for (int k = 0; k < K; k++)
    cnt = _mm256_sub_epi32(cnt, _mm256_castps_si256(_mm256_cmp_ps(
                                    _mm256_load_ps(approx + (size_t)k * kLanes), tau, _CMP_LE_OQ)));
  alignas(32) int count[kLanes], idx[kLanes];
  alignas(32) float tauv[kLanes];
  _mm256_store_si256(reinterpret_cast<__m256i*>(count), cnt);
  _mm256_store_si256(reinterpret_cast<__m256i*>(idx), vidx);
  _mm256_store_ps(tauv, tau);
  for (int l = 0; l < kLanes; l++) {
    if (count[l] == 1) {
      out[l] = idx[l];
    } else if (count[l] == 0) {  // out of the bound's range (NaN tau): exact scan
      out[l] = -1;
    } else {
      int best = -1;
      float best_s = __builtin_inff();
      for (int k = 0; k < K; k++) {
        if (!(approx[(size_t)k * kLanes + l] <= tauv[l])) continue;
        const float s = exact_l2(xs[l], rows + (size_t)k * dsub, dsub);
        if (s < best_s) {
          best_s = s;
          best = k;
        }
      }
      out[l] = best < 0 ? 0 : best;  // every exact distance is +inf: the scalar scan keeps k = 0
    }
  }
  (void)ct;
}

// nearest() for n vectors (row stride `stride`), writing out[i * out_stride].
void nearest_batch(const float* x, size_t n, size_t stride, const float* ct, const float* rows,
                   const float* norms, double max_norm, int K, int dsub, uint8_t* out,
                   size_t out_stride) {
  const TauBound tb(max_norm, dsub);
  if (K < 16 || dsub > kMaxDsubBatch || !tb.ok) {  // few codewords: the exact scan is as cheap
    for (size_t i = 0; i < n; i++)
      out[i * out_stride] = static_cast<uint8_t>(nearest_exact(x + i * stride, ct, K, dsub));
    return;
  }
  alignas(32) float approx[256 * kLanes];
  for (size_t i = 0; i < n; i += kLanes) {
    const float* xs[kLanes];
    const size_t nv = n - i < kLanes ? n - i : kLanes;
    for (size_t l = 0; l < kLanes; l++) xs[l] = x + (i + (l < nv ? l : nv - 1)) * stride;
    int best[kLanes];
    switch (dsub) {
      case 2:
        nearest_lanes<2>(xs, rows, ct, norms, tb, K, dsub, best, approx);
        break;
      case 4:
        nearest_lanes<4>(xs, rows, ct, norms, tb, K, dsub, best, approx);
        break;
      case 8:
        nearest_lanes<8>(xs, rows, ct, norms, tb, K, dsub, best, approx);
        break;
      case 16:
        nearest_lanes<16>(xs, rows, ct, norms, tb, K, dsub, best, approx);
        break;
      default:
        nearest_lanes<0>(xs, rows, ct, norms, tb, K, dsub, best, approx);
        break;
    }
    for (size_t l = 0; l < nv; l++) {
      const int k = best[l] >= 0 ? best[l] : nearest_exact(xs[l], ct, K, dsub);
      out[(i + l) * out_stride] = static_cast<uint8_t>(k);
    }
  }
}

int nearest(const float* x, const float* ct, const float* rows, const float* norms, double max_norm,
            int K, int dsub) {
  uint8_t k;
  nearest_batch(x, 1, 0, ct, rows, norms, max_norm, K, dsub, &k, 1);
  return k;
}

}  // namespace

// The complete AVX2 table (simd.h): scan kernels from the AVX2 scan files.
Kernels avx2_kernels() {
  Kernels k{SimdLevel::AVX2, subspace_l2, subspace_ip, nearest, nearest_batch};
  k.scan4 = scan4_avx2();
  k.scan8_grouped = scan8_grouped_avx2();
  k.sums4 = sums4_avx2();
  k.sums8 = sums8_scalar();
  return k;
}

}  // namespace spqindex
