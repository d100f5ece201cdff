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
template <int NQ>
void scan4_nq(const ScanArgs& a) {
  const int P = (a.M + 1) / 2;
  const __m512i nib = _mm512_set1_epi8(0x0F);
  for (size_t b = a.b0; b < a.b1; b++) {
    const uint8_t* blk = a.blocks + b * a.block_bytes;
    // Software prefetch kPrefetchBytes ahead: one query per block load is bandwidth-bound.
    for (size_t off = 0; off < a.block_bytes; off += 64)
      _mm_prefetch(reinterpret_cast<const char*>(blk + kPrefetchBytes + off), _MM_HINT_T0);
    __m512i acc[NQ], acch[NQ];
    for (int qi = 0; qi < NQ; qi++) acc[qi] = acch[qi] = _mm512_setzero_si512();
    for (int p = 0; p < P; p++) {
      const __m512i c = _mm512_loadu_si512(blk + p * 64);
      const __m512i clo = _mm512_and_si512(c, nib);
      const __m512i chi = _mm512_and_si512(_mm512_srli_epi16(c, 4), nib);
      for (int qi = 0; qi < NQ; qi++) {
        const uint8_t* t = a.queries[qi].qlut + p * 64;
        const __m512i vl = _mm512_shuffle_epi8(
            _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(t))), clo);
        const __m512i vh = _mm512_shuffle_epi8(
            _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(t + 32))),
            chi);
        const __m512i v = _mm512_add_epi8(vl, vh);  // <= 254: no carry into the next byte
        acc[qi] = _mm512_add_epi16(acc[qi], v);
        acch[qi] = _mm512_add_epi16(acch[qi], _mm512_srli_epi16(v, 8));
      }
    }
    for (int qi = 0; qi < NQ; qi++) {
      const int32_t bound = a.queries[qi].bound;
      if (bound < 0) continue;
      const __m512i bnd = _mm512_set1_epi16(static_cast<short>(static_cast<uint16_t>(bound)));
      const __m512i lo = _mm512_sub_epi16(acc[qi], _mm512_slli_epi16(acch[qi], 8));
      const uint64_t le_lo = _mm512_cmple_epu16_mask(lo, bnd);        // rows i, 32+i
      const uint64_t le_hi = _mm512_cmple_epu16_mask(acch[qi], bnd);  // rows 16+i, 48+i
      if (le_lo | le_hi) {
        const uint64_t mask =
            (le_lo & 0xFFFF) | (le_hi & 0xFFFF) << 16 | (le_lo >> 16) << 32 | (le_hi >> 16) << 48;
        a.sink(a.ctx, qi, b, mask);
      }
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
