// 8-bit fast scan over group-minimum tables, AVX2 (grouped_scan.h; this file only is compiled
// with -mavx2; no static objects, intrinsics only: simd.h). Per sub-space record of 64 bytes
// (byte 2i = row i, byte 2i+1 = row 32+i): two 32-byte loads, the high nibble of each code byte
// looked up in the 16 group minima with one byte shuffle per query, uint16 accumulation; blocks
// with many candidates are refined by exact quantized sums (grouped_scan.h, "Refinement").
#include <immintrin.h>

#include "spqindex/fastscan.h"
#include "spqindex/grouped_scan.h"
#include "spqindex/simd.h"

namespace spqindex {
namespace {

// Accumulation: see scan4_avx2.cpp (acc holds low + 256 * high bytes, acch the high bytes).
// Load h (0, 1) of a record: uint16 lane i holds row 16h + i (low byte) and row 32 + 16h + i.
inline void accumulate(__m256i v, __m256i* acc, __m256i* acch) {
  *acc = _mm256_add_epi16(*acc, v);
  *acch = _mm256_add_epi16(*acch, _mm256_srli_epi16(v, 8));
}

// Bit j of the result: row j of the block has its (uint16) sum <= bound.
inline uint64_t le_mask(const __m256i acc[2], const __m256i acch[2], int32_t bound) {
  const __m256i bnd = _mm256_set1_epi16(static_cast<short>(static_cast<uint16_t>(bound)));
  __m256i le_lo[2], le_hi[2];
  for (int h = 0; h < 2; h++) {
    const __m256i lo = _mm256_sub_epi16(acc[h], _mm256_slli_epi16(acch[h], 8));
    le_lo[h] = _mm256_cmpeq_epi16(_mm256_min_epu16(lo, bnd), lo);
    le_hi[h] = _mm256_cmpeq_epi16(_mm256_min_epu16(acch[h], bnd), acch[h]);
  }
  // packs interleaves 128-bit lanes; permute4x64 restores row order 0..31 resp. 32..63.
  const uint32_t m0 = static_cast<uint32_t>(
      _mm256_movemask_epi8(_mm256_permute4x64_epi64(_mm256_packs_epi16(le_lo[0], le_lo[1]), 0xD8)));
  const uint32_t m1 = static_cast<uint32_t>(
      _mm256_movemask_epi8(_mm256_permute4x64_epi64(_mm256_packs_epi16(le_hi[0], le_hi[1]), 0xD8)));
  return m0 | static_cast<uint64_t>(m1) << 32;
}

// 32 code bytes looked up in a 256-entry table: 16 shuffles of 16 entries on the low nibble,
// merged by code bits 4, 5, 6, 7 with byte blends (blendv reads bit 7 of each byte; a 16-bit
// left shift by 3, 2, 1 brings bit 4, 5, 6 there, and what it carries across bytes lands lower).
inline __m256i lookup256(const uint8_t* t, __m256i c, __m256i nib) {
  const __m256i lo = _mm256_and_si256(c, nib);
  const __m256i sel[3] = {_mm256_slli_epi16(c, 3), _mm256_slli_epi16(c, 2),
                          _mm256_slli_epi16(c, 1)};
  __m256i l3[2];
  for (int h3 = 0; h3 < 2; h3++) {
    __m256i l2[2];
    for (int h2 = 0; h2 < 2; h2++) {
      __m256i l1[2];
      for (int h1 = 0; h1 < 2; h1++) {
        const uint8_t* g = t + 16 * (8 * h3 + 4 * h2 + 2 * h1);
        const __m256i even =
            _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
        const __m256i odd =
            _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 16)));
        l1[h1] =
            _mm256_blendv_epi8(_mm256_shuffle_epi8(even, lo), _mm256_shuffle_epi8(odd, lo), sel[0]);
      }
      l2[h2] = _mm256_blendv_epi8(l1[0], l1[1], sel[1]);
    }
    l3[h3] = _mm256_blendv_epi8(l2[0], l2[1], sel[2]);
  }
  return _mm256_blendv_epi8(l3[0], l3[1], c);
}

// The rows of a block whose exact quantized sum (full (M, 256) table) is <= bound.
uint64_t exact_mask(const uint8_t* blk, int M, const uint8_t* table, int32_t bound) {
  const __m256i nib = _mm256_set1_epi8(0x0F);
  __m256i acc[2], acch[2];
  for (int h = 0; h < 2; h++) acc[h] = acch[h] = _mm256_setzero_si256();
  for (int m = 0; m < M; m++)
    for (int h = 0; h < 2; h++) {
      const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + m * 64 + h * 32));
      accumulate(lookup256(table + m * 256, c, nib), &acc[h], &acch[h]);
    }
  return le_mask(acc, acch, bound);
}

template <int NQ>
void scan8_nq(const ScanArgs& a) {
  const __m256i nib = _mm256_set1_epi8(0x0F);
  for (size_t b = a.b0; b < a.b1; b++) {
    const uint8_t* blk = a.blocks + b * a.block_bytes;
    __m256i acc[NQ][2], acch[NQ][2];
    for (int qi = 0; qi < NQ; qi++)
      for (int h = 0; h < 2; h++) acc[qi][h] = acch[qi][h] = _mm256_setzero_si256();
    for (int m = 0; m < a.M; m++) {
      __m256i hi[2];
      for (int h = 0; h < 2; h++)
        hi[h] = _mm256_and_si256(
            _mm256_srli_epi16(
                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + m * 64 + h * 32)), 4),
            nib);
      for (int qi = 0; qi < NQ; qi++) {
        const __m256i t =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.queries[qi].qlut + m * 32));
        for (int h = 0; h < 2; h++)
          accumulate(_mm256_shuffle_epi8(t, hi[h]), &acc[qi][h], &acch[qi][h]);
      }
    }
    for (int qi = 0; qi < NQ; qi++) {
      const int32_t bound = a.queries[qi].bound;
      if (bound < 0) continue;
      uint64_t mask = le_mask(acc[qi], acch[qi], bound);
      const uint8_t* exact = a.queries[qi].exact;
      if (exact && __builtin_popcountll(mask) >= kRefineRows)
        mask &= exact_mask(blk, a.M, exact, bound);
      if (mask) a.sink(a.ctx, qi, b, mask);
    }
  }
}

void scan8(const ScanArgs& a) {
  switch (a.nq) {
    case 1:
      return scan8_nq<1>(a);
    case 2:
      return scan8_nq<2>(a);
    case 3:
      return scan8_nq<3>(a);
    default:
      return scan8_nq<4>(a);
  }
}

}  // namespace

ScanKernel scan8_grouped_avx2() { return scan8; }

}  // namespace spqindex
