// 4-bit fast scan, AVX2 (this file only is compiled with -mavx2; no static objects here).
// Per 32-row half-block and pair of sub-quantizers: one 32-byte load, two byte shuffles per
// query (low nibble -> LUT m = 2p, high nibble -> LUT 2p+1), uint16 accumulation.
#include <immintrin.h>

#include "spqindex/fastscan.h"
#include "spqindex/simd.h"

namespace spqindex {
namespace {

// Accumulation trick: a shuffle result v holds two uint8 per uint16 lane (rows i and 16+i).
// acc += v sums low + 256 * high (mod 2^16); acch += v >> 8 sums the high bytes exactly, so the
// low sums are acc - (acch << 8) (exact while every sum fits in uint16, see quantize_lut).
//
// Bound compare in int16: a lane is a candidate unless sum > bound as signed int16, with bound
// clamped to 32767. Sums up to 32767 compare exactly; a larger sum (possible only for M > 258)
// reads negative and is reported, which only adds a candidate for the exact rescoring.
constexpr size_t kPrefetchBytes = 4096;

struct HalfSums {
  __m256i lo, hi;  ///< uint16 lane i: row i, row 16 + i of the half
};

inline HalfSums finish(__m256i acc, __m256i acch) {
  return {_mm256_sub_epi16(acc, _mm256_slli_epi16(acch, 8)), acch};
}

// Candidate rows of a half (bit i: row i of the half).
inline uint32_t half_mask(HalfSums s, __m256i bnd) {
  const __m256i gt =
      _mm256_packs_epi16(_mm256_cmpgt_epi16(s.lo, bnd), _mm256_cmpgt_epi16(s.hi, bnd));
  // packs interleaves 128-bit lanes: [lo0-7 hi0-7 lo8-15 hi8-15] -> reorder to row order.
  return ~static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_permute4x64_epi64(gt, 0xD8)));
}

// Whether any lane of m is within the bound (one compare and movemask for 16 lanes).
inline bool any_within(__m256i m, __m256i bnd) {
  return static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_cmpgt_epi16(m, bnd))) != 0xFFFFFFFFu;
}

inline __m256i bound_vec(int32_t bound) {
  return _mm256_set1_epi16(static_cast<short>(bound > 32767 ? 32767 : bound));
}

// One pair p of a half for one query: adds the two shuffled entries to acc / acch.
inline void accumulate(const uint8_t* t, __m256i clo, __m256i chi, __m256i* acc, __m256i* acch) {
  const __m256i vl =
      _mm256_shuffle_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(t)), clo);
  const __m256i vh =
      _mm256_shuffle_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(t + 32)), chi);
  const __m256i v = _mm256_add_epi8(vl, vh);  // <= 254: no carry into the next byte
  *acc = _mm256_add_epi16(*acc, v);
  *acch = _mm256_add_epi16(*acch, _mm256_srli_epi16(v, 8));
}

void prefetch_block(const uint8_t* blk, size_t block_bytes) {
  for (size_t off = 0; off < block_bytes; off += 64)  // see scan4_avx512.cpp
    _mm_prefetch(reinterpret_cast<const char*>(blk + kPrefetchBytes + off), _MM_HINT_T0);
}

// Per block, the kernel takes one of two sum widths.
// - uint8 with saturation, when every live bound is below 255 (the usual case once the scan has
//   a threshold and fastscan_topk has refined the LUT): min(sum, 255) is still a lower bound,
//   and with bound < 255 it selects exactly the rows the uint16 sum would. 32 rows per register,
//   no high-byte bookkeeping.
// - uint16 (the accumulation trick above) otherwise.
// PC: the pair count when fixed at compile time (0: a.M).

// Candidate rows of a half from uint8 sums s (bit i: row i of the half; byte 2i holds row i,
// byte 2i+1 row 16+i, see code_layout.h).
inline uint32_t half_mask8(__m256i s, __m256i bnd8) {
  const __m256i le = _mm256_cmpeq_epi8(_mm256_min_epu8(s, bnd8), s);
  // Per 128-bit lane: even bytes (rows i) then odd bytes (rows 16 + i); then lanes to row order.
  const __m256i even_odd = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15, 0,
                                            2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
  const __m256i rows = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(le, even_odd), 0xD8);
  return static_cast<uint32_t>(_mm256_movemask_epi8(rows));
}

// The codes of one pair record for both halves: low and high nibbles of rows 0-31 and 32-63.
struct PairCodes {
  __m256i lo0, hi0, lo1, hi1;
};

inline PairCodes pair_codes(const uint8_t* rec, __m256i nib) {
  const __m256i c0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rec));
  const __m256i c1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rec + 32));
  return {_mm256_and_si256(c0, nib), _mm256_and_si256(_mm256_srli_epi16(c0, 4), nib),
          _mm256_and_si256(c1, nib), _mm256_and_si256(_mm256_srli_epi16(c1, 4), nib)};
}

// One block in uint8: both halves per pass over the pairs; mask[qi] gets the candidates.
template <int NQ, int PC>
inline void block_u8(const uint8_t* blk, int P, const uint8_t* const* lut, const int32_t* bound,
                     uint64_t* mask) {
  const __m256i nib = _mm256_set1_epi8(0x0F);
  __m256i s0[NQ], s1[NQ];
  for (int qi = 0; qi < NQ; qi++) s0[qi] = s1[qi] = _mm256_setzero_si256();
  for (int p = 0; p < (PC ? PC : P); p++) {
    const PairCodes c = pair_codes(blk + p * 64, nib);
    for (int qi = 0; qi < NQ; qi++) {
      const __m256i tl = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lut[qi] + p * 64));
      const __m256i th =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lut[qi] + p * 64 + 32));
      // Each entry <= 127, so a pair's two entries add without wrapping.
      s0[qi] = _mm256_adds_epu8(
          s0[qi], _mm256_add_epi8(_mm256_shuffle_epi8(tl, c.lo0), _mm256_shuffle_epi8(th, c.hi0)));
      s1[qi] = _mm256_adds_epu8(
          s1[qi], _mm256_add_epi8(_mm256_shuffle_epi8(tl, c.lo1), _mm256_shuffle_epi8(th, c.hi1)));
    }
  }
  for (int qi = 0; qi < NQ; qi++) {
    mask[qi] = 0;
    if (bound[qi] < 0) continue;
    const __m256i b = _mm256_set1_epi8(static_cast<char>(bound[qi]));
    const __m256i m = _mm256_min_epu8(s0[qi], s1[qi]);
    if (!_mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_min_epu8(m, b), m))) continue;
    mask[qi] = half_mask8(s0[qi], b) | uint64_t{half_mask8(s1[qi], b)} << 32;
  }
}

// One block in uint16, both halves per pass over the pairs (NQ <= 2: the four accumulators per
// query fit the 16 registers).
template <int NQ, int PC>
inline void block_u16_both(const uint8_t* blk, int P, const uint8_t* const* lut,
                           const int32_t* bound, uint64_t* mask) {
  const __m256i nib = _mm256_set1_epi8(0x0F);
  __m256i acc0[NQ], acch0[NQ], acc1[NQ], acch1[NQ];
  for (int qi = 0; qi < NQ; qi++)
    acc0[qi] = acch0[qi] = acc1[qi] = acch1[qi] = _mm256_setzero_si256();
  for (int p = 0; p < (PC ? PC : P); p++) {
    const PairCodes c = pair_codes(blk + p * 64, nib);
    for (int qi = 0; qi < NQ; qi++) {
      accumulate(lut[qi] + p * 64, c.lo0, c.hi0, &acc0[qi], &acch0[qi]);
      accumulate(lut[qi] + p * 64, c.lo1, c.hi1, &acc1[qi], &acch1[qi]);
    }
  }
  for (int qi = 0; qi < NQ; qi++) {
    mask[qi] = 0;
    if (bound[qi] < 0) continue;
    const __m256i b = bound_vec(bound[qi]);
    const HalfSums h0 = finish(acc0[qi], acch0[qi]), h1 = finish(acc1[qi], acch1[qi]);
    const __m256i m =
        _mm256_min_epi16(_mm256_min_epi16(h0.lo, h0.hi), _mm256_min_epi16(h1.lo, h1.hi));
    if (!any_within(m, b)) continue;
    mask[qi] = half_mask(h0, b) | uint64_t{half_mask(h1, b)} << 32;
  }
}

// One block in uint16, one half at a time (NQ 3, 4: both halves' accumulators would not fit).
template <int NQ, int PC>
inline void block_u16_halves(const uint8_t* blk, int P, const uint8_t* const* lut,
                             const int32_t* bound, uint64_t* mask) {
  const __m256i nib = _mm256_set1_epi8(0x0F);
  for (int qi = 0; qi < NQ; qi++) mask[qi] = 0;
  for (int h = 0; h < 2; h++) {
    __m256i acc[NQ], acch[NQ];
    for (int qi = 0; qi < NQ; qi++) acc[qi] = acch[qi] = _mm256_setzero_si256();
    for (int p = 0; p < (PC ? PC : P); p++) {
      const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + p * 64 + h * 32));
      const __m256i clo = _mm256_and_si256(c, nib);
      const __m256i chi = _mm256_and_si256(_mm256_srli_epi16(c, 4), nib);
      for (int qi = 0; qi < NQ; qi++) accumulate(lut[qi] + p * 64, clo, chi, &acc[qi], &acch[qi]);
    }
    for (int qi = 0; qi < NQ; qi++) {
      if (bound[qi] < 0) continue;
      const __m256i b = bound_vec(bound[qi]);
      const HalfSums s = finish(acc[qi], acch[qi]);
      if (any_within(_mm256_min_epi16(s.lo, s.hi), b))
        mask[qi] |= uint64_t{half_mask(s, b)} << (32 * h);
    }
  }
}

template <int NQ, int PC>
void scan4_nq(const ScanArgs& a) {
  const int P = (a.M + 1) / 2;
  const uint8_t* lut[NQ];
  int32_t bound[NQ];
  for (int qi = 0; qi < NQ; qi++) {
    lut[qi] = a.queries[qi].qlut;
    bound[qi] = a.queries[qi].bound;
  }
  for (size_t b = a.b0; b < a.b1; b++) {
    bool live = false, small = true;
    for (int qi = 0; qi < NQ; qi++) {
      live |= bound[qi] >= 0;
      small &= bound[qi] < 255;
    }
    if (!live) return;  // every query is done (the sink set bound < 0)
    const uint8_t* blk = a.blocks + b * a.block_bytes;
    prefetch_block(blk, a.block_bytes);
    uint64_t mask[NQ];
    if (small)
      block_u8<NQ, PC>(blk, P, lut, bound, mask);
    else if constexpr (NQ <= 2)
      block_u16_both<NQ, PC>(blk, P, lut, bound, mask);
    else
      block_u16_halves<NQ, PC>(blk, P, lut, bound, mask);
    for (int qi = 0; qi < NQ; qi++) {
      if (!mask[qi]) continue;
      a.sink(a.ctx, qi, b, mask[qi]);
      bound[qi] = a.queries[qi].bound;
    }
  }
}

template <int PC>
void scan4_p(const ScanArgs& a) {
  switch (a.nq) {
    case 1:
      return scan4_nq<1, PC>(a);
    case 2:
      return scan4_nq<2, PC>(a);
    case 3:
      return scan4_nq<3, PC>(a);
    default:
      return scan4_nq<4, PC>(a);
  }
}

void scan4(const ScanArgs& a) {
  switch ((a.M + 1) / 2) {
    case 4:
      return scan4_p<4>(a);
    case 8:
      return scan4_p<8>(a);
    default:
      return scan4_p<0>(a);
  }
}

// Quantized sums of every row (simd.h SumsKernel), the scan4 loop without the bound.
void sums4(const uint8_t* blocks, size_t block_bytes, int M, size_t b0, size_t b1,
           const uint8_t* qlut, uint16_t* out) {
  const int P = (M + 1) / 2;
  const __m256i nib = _mm256_set1_epi8(0x0F);
  for (size_t b = b0; b < b1; b++) {
    const uint8_t* blk = blocks + b * block_bytes;
    for (int h = 0; h < 2; h++) {
      __m256i acc = _mm256_setzero_si256(), acch = _mm256_setzero_si256();
      for (int p = 0; p < P; p++) {
        const __m256i c =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + p * 64 + h * 32));
        const uint8_t* t = qlut + p * 64;
        const __m256i vl = _mm256_shuffle_epi8(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t)), _mm256_and_si256(c, nib));
        const __m256i vh =
            _mm256_shuffle_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(t + 32)),
                                _mm256_and_si256(_mm256_srli_epi16(c, 4), nib));
        const __m256i v = _mm256_add_epi8(vl, vh);
        acc = _mm256_add_epi16(acc, v);
        acch = _mm256_add_epi16(acch, _mm256_srli_epi16(v, 8));
      }
      // uint16 lane i of lo is row i of the half, lane i of acch row 16 + i.
      const __m256i lo = _mm256_sub_epi16(acc, _mm256_slli_epi16(acch, 8));
      uint16_t* o = out + (b - b0) * 64 + h * 32;
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(o), lo);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + 16), acch);
    }
  }
}

}  // namespace

ScanKernel scan4_avx2() { return scan4; }
SumsKernel sums4_avx2() { return sums4; }

}  // namespace spqindex
