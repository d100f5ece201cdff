// 8-bit fast scan over group-minimum tables, AVX2 (grouped_scan.h; this file only is compiled
// with -mavx2; no static objects, intrinsics only: simd.h). Per sub-space record of 64 bytes
// (byte 2i = row i, byte 2i+1 = row 32+i): two 32-byte loads, the high nibble of each code byte
// looked up in the 16 group minima with one byte shuffle per query, uint16 accumulation.
#include <immintrin.h>

#include "spqindex/fastscan.h"
#include "spqindex/simd.h"

namespace spqindex {
namespace {

// Accumulation: see scan4_avx2.cpp (acc holds low + 256 * high bytes, acch the high bytes).
// Load h (0, 1) of a record: uint16 lane i holds row 16h + i (low byte) and row 32 + 16h + i.
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
        for (int h = 0; h < 2; h++) {
          const __m256i v = _mm256_shuffle_epi8(t, hi[h]);
          acc[qi][h] = _mm256_add_epi16(acc[qi][h], v);
          acch[qi][h] = _mm256_add_epi16(acch[qi][h], _mm256_srli_epi16(v, 8));
        }
      }
    }
    for (int qi = 0; qi < NQ; qi++) {
      const int32_t bound = a.queries[qi].bound;
      if (bound < 0) continue;
      const __m256i bnd = _mm256_set1_epi16(static_cast<short>(static_cast<uint16_t>(bound)));
      __m256i le_lo[2], le_hi[2];
      for (int h = 0; h < 2; h++) {
        const __m256i lo = _mm256_sub_epi16(acc[qi][h], _mm256_slli_epi16(acch[qi][h], 8));
        le_lo[h] = _mm256_cmpeq_epi16(_mm256_min_epu16(lo, bnd), lo);
        le_hi[h] = _mm256_cmpeq_epi16(_mm256_min_epu16(acch[qi][h], bnd), acch[qi][h]);
      }
      // packs interleaves 128-bit lanes; permute4x64 restores row order 0..31 resp. 32..63.
      const uint32_t m0 = static_cast<uint32_t>(_mm256_movemask_epi8(
          _mm256_permute4x64_epi64(_mm256_packs_epi16(le_lo[0], le_lo[1]), 0xD8)));
      const uint32_t m1 = static_cast<uint32_t>(_mm256_movemask_epi8(
          _mm256_permute4x64_epi64(_mm256_packs_epi16(le_hi[0], le_hi[1]), 0xD8)));
      const uint64_t mask = m0 | static_cast<uint64_t>(m1) << 32;
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
