// 4-bit fast scan, AVX-512BW (this file only is compiled with AVX-512 flags; no static objects).
// One 64-byte load covers a pair of sub-quantizers for all 64 rows of a block; each 128-bit
// lane is shuffled against the same 16-entry LUT (broadcast), uint16 accumulation.
#include <immintrin.h>

#include "spqindex/fastscan.h"
#include "spqindex/simd.h"

namespace spqindex {
namespace {

constexpr size_t kPrefetchBytes = 4096;

// Accumulation: see scan4_avx2.cpp (acc holds low + 256 * high bytes, acch the high bytes).
// Per block the sums are uint16 (that trick), or uint8 with saturation when every live bound is
// below 255 (see scan4_avx2.cpp: then min(sum, 255) selects exactly the same rows).

// The candidate rows of a block from the uint16 compares of the low bytes (rows i, 32+i) and the
// high bytes (rows 16+i, 48+i) of the 32 lanes.
inline uint64_t rows_mask(uint64_t le_lo, uint64_t le_hi) {
  return (le_lo & 0xFFFF) | (le_hi & 0xFFFF) << 16 | (le_lo >> 16) << 32 | (le_hi >> 16) << 48;
}

// The sum of one pair's two LUT entries for the 64 rows (each entry <= 127: no wrap).
inline __m512i pair_sum(const uint8_t* t, __m512i clo, __m512i chi) {
  const __m512i vl = _mm512_shuffle_epi8(
      _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(t))), clo);
  const __m512i vh = _mm512_shuffle_epi8(
      _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(t + 32))), chi);
  return _mm512_add_epi8(vl, vh);
}

// One block's sums for NQ queries: uint8 with saturation (SMALL) or the uint16 pair.
template <int NQ, bool SMALL>
inline void block_sums(const uint8_t* blk, int P, const ScanArgs& a, __m512i* acc, __m512i* acch) {
  const __m512i nib = _mm512_set1_epi8(0x0F);
  for (int qi = 0; qi < NQ; qi++) acc[qi] = acch[qi] = _mm512_setzero_si512();
  for (int p = 0; p < P; p++) {
    const __m512i c = _mm512_loadu_si512(blk + p * 64);
    const __m512i clo = _mm512_and_si512(c, nib);
    const __m512i chi = _mm512_and_si512(_mm512_srli_epi16(c, 4), nib);
    for (int qi = 0; qi < NQ; qi++) {
      const __m512i v = pair_sum(a.queries[qi].qlut + p * 64, clo, chi);
      if (SMALL) {
        acc[qi] = _mm512_adds_epu8(acc[qi], v);
      } else {
        acc[qi] = _mm512_add_epi16(acc[qi], v);
        acch[qi] = _mm512_add_epi16(acch[qi], _mm512_srli_epi16(v, 8));
      }
    }
  }
}

template <int NQ>
void scan4_nq(const ScanArgs& a) {
  const int P = (a.M + 1) / 2;
  for (size_t b = a.b0; b < a.b1; b++) {
    const uint8_t* blk = a.blocks + b * a.block_bytes;
    // Software prefetch kPrefetchBytes ahead: one query per block load is bandwidth-bound.
    for (size_t off = 0; off < a.block_bytes; off += 64)
      _mm_prefetch(reinterpret_cast<const char*>(blk + kPrefetchBytes + off), _MM_HINT_T0);
    bool small = true;
    for (int qi = 0; qi < NQ; qi++) small &= a.queries[qi].bound < 255;
    __m512i acc[NQ], acch[NQ];
    if (small)
      block_sums<NQ, true>(blk, P, a, acc, acch);
    else
      block_sums<NQ, false>(blk, P, a, acc, acch);
    for (int qi = 0; qi < NQ; qi++) {
      const int32_t bound = a.queries[qi].bound;
      if (bound < 0) continue;
      const __m512i bnd = _mm512_set1_epi16(static_cast<short>(static_cast<uint16_t>(bound)));
      __m512i lo, hi;
      if (small) {
        if (!_mm512_cmple_epu8_mask(acc[qi], _mm512_set1_epi8(static_cast<char>(bound)))) continue;
        lo = _mm512_and_si512(acc[qi], _mm512_set1_epi16(0x00FF));
        hi = _mm512_srli_epi16(acc[qi], 8);
      } else {
        lo = _mm512_sub_epi16(acc[qi], _mm512_slli_epi16(acch[qi], 8));
        hi = acch[qi];
      }
      const uint64_t le_lo = _mm512_cmple_epu16_mask(lo, bnd);  // rows i, 32+i
      const uint64_t le_hi = _mm512_cmple_epu16_mask(hi, bnd);  // rows 16+i, 48+i
      if (le_lo | le_hi) a.sink(a.ctx, qi, b, rows_mask(le_lo, le_hi));
    }
  }
}

void scan4(const ScanArgs& a) {
  switch (a.nq) {
    case 1:
      return scan4_nq<1>(a);
    case 2:
      return scan4_nq<2>(a);
    case 3:
      return scan4_nq<3>(a);
    default:
      return scan4_nq<4>(a);
  }
}

}  // namespace

ScanKernel scan4_avx512() { return scan4; }

}  // namespace spqindex
