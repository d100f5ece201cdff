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

// Few queries (NQ <= 2): both halves of a block per pass over the pairs (each LUT load serves 64
// rows) and one bound test per block and query. PC: the pair count when fixed at compile time.
template <int NQ, int PC>
void scan4_blocks(const ScanArgs& a) {
  const int P = PC ? PC : (a.M + 1) / 2;
  const __m256i nib = _mm256_set1_epi8(0x0F);
  const uint8_t* lut[NQ];
  int32_t bound[NQ];
  __m256i bnd[NQ];
  for (int qi = 0; qi < NQ; qi++) {
    lut[qi] = a.queries[qi].qlut;
    bound[qi] = a.queries[qi].bound;
    bnd[qi] = bound_vec(bound[qi]);
  }
  for (size_t b = a.b0; b < a.b1; b++) {
    bool live = false;
    for (int qi = 0; qi < NQ; qi++) live |= bound[qi] >= 0;
    if (!live) return;  // every query is done (the sink set bound < 0)
    const uint8_t* blk = a.blocks + b * a.block_bytes;
    prefetch_block(blk, a.block_bytes);
    __m256i acc0[NQ], acch0[NQ], acc1[NQ], acch1[NQ];
    for (int qi = 0; qi < NQ; qi++)
      acc0[qi] = acch0[qi] = acc1[qi] = acch1[qi] = _mm256_setzero_si256();
    for (int p = 0; p < P; p++) {
      const __m256i c0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + p * 64));
      const __m256i c1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + p * 64 + 32));
      const __m256i clo0 = _mm256_and_si256(c0, nib);
      const __m256i chi0 = _mm256_and_si256(_mm256_srli_epi16(c0, 4), nib);
      const __m256i clo1 = _mm256_and_si256(c1, nib);
      const __m256i chi1 = _mm256_and_si256(_mm256_srli_epi16(c1, 4), nib);
      for (int qi = 0; qi < NQ; qi++) {
        accumulate(lut[qi] + p * 64, clo0, chi0, &acc0[qi], &acch0[qi]);
        accumulate(lut[qi] + p * 64, clo1, chi1, &acc1[qi], &acch1[qi]);
      }
    }
    for (int qi = 0; qi < NQ; qi++) {
      if (bound[qi] < 0) continue;
      const HalfSums s0 = finish(acc0[qi], acch0[qi]), s1 = finish(acc1[qi], acch1[qi]);
      const __m256i m =
          _mm256_min_epi16(_mm256_min_epi16(s0.lo, s0.hi), _mm256_min_epi16(s1.lo, s1.hi));
      if (!any_within(m, bnd[qi])) continue;
      const uint64_t mask = half_mask(s0, bnd[qi]) | uint64_t{half_mask(s1, bnd[qi])} << 32;
      a.sink(a.ctx, qi, b, mask);
      bound[qi] = a.queries[qi].bound;
      bnd[qi] = bound_vec(bound[qi]);
    }
  }
}

// More queries (NQ 3, 4): one half at a time (the accumulators of both halves would not fit the
// 16 registers), one bound test per half and query, one sink call per block and query.
template <int NQ, int PC>
void scan4_halves(const ScanArgs& a) {
  const int P = PC ? PC : (a.M + 1) / 2;
  const __m256i nib = _mm256_set1_epi8(0x0F);
  const uint8_t* lut[NQ];
  int32_t bound[NQ];
  __m256i bnd[NQ];
  for (int qi = 0; qi < NQ; qi++) {
    lut[qi] = a.queries[qi].qlut;
    bound[qi] = a.queries[qi].bound;
    bnd[qi] = bound_vec(bound[qi]);
  }
  for (size_t b = a.b0; b < a.b1; b++) {
    bool live = false;
    for (int qi = 0; qi < NQ; qi++) live |= bound[qi] >= 0;
    if (!live) return;
    const uint8_t* blk = a.blocks + b * a.block_bytes;
    prefetch_block(blk, a.block_bytes);
    uint64_t mask[NQ] = {};
    for (int h = 0; h < 2; h++) {
      __m256i acc[NQ], acch[NQ];
      for (int qi = 0; qi < NQ; qi++) acc[qi] = acch[qi] = _mm256_setzero_si256();
      for (int p = 0; p < P; p++) {
        const __m256i c =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + p * 64 + h * 32));
        const __m256i clo = _mm256_and_si256(c, nib);
        const __m256i chi = _mm256_and_si256(_mm256_srli_epi16(c, 4), nib);
        for (int qi = 0; qi < NQ; qi++) accumulate(lut[qi] + p * 64, clo, chi, &acc[qi], &acch[qi]);
      }
      for (int qi = 0; qi < NQ; qi++) {
        if (bound[qi] < 0) continue;
        const HalfSums s = finish(acc[qi], acch[qi]);
        if (any_within(_mm256_min_epi16(s.lo, s.hi), bnd[qi]))
          mask[qi] |= uint64_t{half_mask(s, bnd[qi])} << (32 * h);
      }
    }
    for (int qi = 0; qi < NQ; qi++) {
      if (!mask[qi]) continue;
      a.sink(a.ctx, qi, b, mask[qi]);
      bound[qi] = a.queries[qi].bound;
      bnd[qi] = bound_vec(bound[qi]);
    }
  }
}

template <int PC>
void scan4_p(const ScanArgs& a) {
  switch (a.nq) {
    case 1:
      return scan4_blocks<1, PC>(a);
    case 2:
      return scan4_blocks<2, PC>(a);
    case 3:
      return scan4_halves<3, PC>(a);
    default:
      return scan4_halves<4, PC>(a);
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
