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
      acc = _mm512_add_ps(
          acc, _mm512_mul_ps(_mm512_set1_ps(x[d]), _mm512_loadu_ps(ct + (size_t)d * K + k)));
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

// Encoder argmin in two steps, as in kernels_avx2.cpp (the bound is derived there):
// (1) approx_k = ‖c_k‖² + Σ_d (−2 x_d) c_k[d] in one FMA chain; (2) every k with
// approx_k <= tau = amin + A |amin| + B ‖x‖² + E is rescored exactly (ascending k, strict <);
// a single candidate is the approximate argmin and the answer as it is.
// Lanes are vectors: 16 vectors at once, one codeword per step (its coordinates broadcast).
constexpr int kLanes = 16;
constexpr int kMaxDsubBatch = 256;

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

// tau for 8 lanes in double, rounded up to float (so the float value is >= tau); lanes outside
// the bound's range (xn >= 1e35 or amin not finite) come back as NaN: no candidate.
__m256 tau8(__m256 amin, __m256 xn, const TauBound& tb) {
  const __m512d a = _mm512_cvtps_pd(amin), x = _mm512_cvtps_pd(xn);
  const __m512d absa = _mm512_abs_pd(a);
  __m512d t = _mm512_add_pd(a, _mm512_mul_pd(_mm512_set1_pd(tb.A), absa));
  t = _mm512_add_pd(t, _mm512_add_pd(_mm512_mul_pd(_mm512_set1_pd(tb.B), x), _mm512_set1_pd(tb.E)));
  t = _mm512_add_pd(t, _mm512_add_pd(_mm512_mul_pd(_mm512_abs_pd(t), _mm512_set1_pd(1e-6)),
                                     _mm512_set1_pd(tb.tiny)));
  const __mmask8 in = _mm512_cmp_pd_mask(x, _mm512_set1_pd(1e35), _CMP_LT_OQ) &
                      _mm512_cmp_pd_mask(absa, _mm512_set1_pd(__builtin_inf()), _CMP_LT_OQ);
  t = _mm512_mask_mov_pd(_mm512_set1_pd(__builtin_nan("")), in, t);
  return _mm512_cvt_roundpd_ps(t, _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC);
}

template <int DSUB>
void nearest_lanes(const float* const* xs, const float* rows, const float* norms,
                   const TauBound& tb, int K, int dsub_rt, int* out, float* approx) {
  const int dsub = DSUB > 0 ? DSUB : dsub_rt;
  alignas(64) float xt[kMaxDsubBatch * kLanes];  // −2x, layout (dsub, lanes)
  alignas(64) float col[kLanes];
  __m512 xn = _mm512_setzero_ps();
  for (int d = 0; d < dsub; d++) {
    for (int l = 0; l < kLanes; l++) col[l] = xs[l][d];
    const __m512 v = _mm512_load_ps(col);
    xn = _mm512_add_ps(xn, _mm512_mul_ps(v, v));
    _mm512_store_ps(xt + d * kLanes, _mm512_mul_ps(v, _mm512_set1_ps(-2.f)));
  }
  // DSUB <= 16: −2x stays in registers across k.
  constexpr int R = DSUB > 0 && DSUB <= 16 ? DSUB : 1;
  __m512 xr[R];
  for (int d = 0; d < R; d++) xr[d] = _mm512_load_ps(xt + d * kLanes);
  // Pass 1: approx (K, lanes), running minimum and its first index per lane.
  __m512 vmin = _mm512_set1_ps(__builtin_inff());
  __m512i vidx = _mm512_setzero_si512();
  for (int k = 0; k < K; k++) {
    const float* c = rows + (size_t)k * dsub;
    __m512 a = _mm512_set1_ps(norms[k]);
    if (DSUB > 0 && DSUB <= 16) {
      for (int d = 0; d < R; d++) a = _mm512_fmadd_ps(xr[d], _mm512_set1_ps(c[d]), a);
    } else {
      for (int d = 0; d < dsub; d++)
        a = _mm512_fmadd_ps(_mm512_load_ps(xt + d * kLanes), _mm512_set1_ps(c[d]), a);
    }
    _mm512_store_ps(approx + (size_t)k * kLanes, a);
    const __mmask16 lt = _mm512_cmp_ps_mask(a, vmin, _CMP_LT_OQ);
    vmin = _mm512_mask_mov_ps(vmin, lt, a);
    vidx = _mm512_mask_mov_epi32(vidx, lt, _mm512_set1_epi32(k));
  }
  const __m512 tau = _mm512_insertf32x8(
      _mm512_castps256_ps512(tau8(_mm512_castps512_ps256(vmin), _mm512_castps512_ps256(xn), tb)),
      tau8(_mm512_extractf32x8_ps(vmin, 1), _mm512_extractf32x8_ps(xn, 1), tb), 1);
  // Pass 2: candidates per lane.
  __m512i cnt = _mm512_setzero_si512();
  const __m512i one = _mm512_set1_epi32(1);
  for (int k = 0; k < K; k++)
    cnt = _mm512_mask_add_epi32(
        cnt, _mm512_cmp_ps_mask(_mm512_load_ps(approx + (size_t)k * kLanes), tau, _CMP_LE_OQ), cnt,
        one);
  alignas(64) int count[kLanes], idx[kLanes];
  alignas(64) float tauv[kLanes];
  _mm512_store_si512(count, cnt);
  _mm512_store_si512(idx, vidx);
  _mm512_store_ps(tauv, tau);
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
  alignas(64) float approx[256 * kLanes];
  for (size_t i = 0; i < n; i += kLanes) {
    const float* xs[kLanes];
    const size_t nv = n - i < kLanes ? n - i : kLanes;
    for (size_t l = 0; l < kLanes; l++) xs[l] = x + (i + (l < nv ? l : nv - 1)) * stride;
    int best[kLanes];
    switch (dsub) {
      case 2:
        nearest_lanes<2>(xs, rows, norms, tb, K, dsub, best, approx);
        break;
      case 4:
        nearest_lanes<4>(xs, rows, norms, tb, K, dsub, best, approx);
        break;
      case 8:
        nearest_lanes<8>(xs, rows, norms, tb, K, dsub, best, approx);
        break;
      case 16:
        nearest_lanes<16>(xs, rows, norms, tb, K, dsub, best, approx);
        break;
      default:
        nearest_lanes<0>(xs, rows, norms, tb, K, dsub, best, approx);
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

// The complete AVX-512 table (simd.h): scan kernels from the AVX-512 scan files; the exact 8-bit
// scan needs VBMI (vpermi2b), which the caller detected.
Kernels avx512_kernels(bool vbmi) {
  Kernels k{SimdLevel::AVX512, subspace_l2, subspace_ip, nearest, nearest_batch};
  k.scan4 = scan4_avx512();
  if (vbmi)
    k.scan8 = scan8_avx512vbmi();
  else
    k.scan8_grouped = scan8_grouped_avx2();  // AVX2 code runs on every AVX-512 CPU
  k.sums4 = sums4_avx2();                    // AVX2 code runs on every AVX-512 CPU
  k.sums8 = sums8_scalar();
  return k;
}

}  // namespace spqindex
