// 8-bit fast scan, AVX-512 VBMI (this file only is compiled with -mavx512vbmi; no static
// objects). A 256-entry uint8 LUT is four registers; two vpermi2b look up 128 entries each
// (index bits 0..6) and index bit 7 picks between them. uint16 accumulation.
#include <immintrin.h>

#include "spqindex/fastscan.h"
#include "spqindex/simd.h"

namespace spqindex {
namespace {

// Accumulation: see scan4_avx2.cpp. Byte 2i of a record is row i, byte 2i+1 row 32+i.
constexpr size_t kPrefetchBytes = 4096;

template <int NQ>
void scan8_nq(const ScanArgs& a) {
  const int M = a.M;
  for (size_t b = a.b0; b < a.b1; b++) {
    const uint8_t* blk = a.blocks + b * a.block_bytes;
    for (size_t off = 0; off < a.block_bytes; off += 64)  // see scan4_avx512.cpp
      _mm_prefetch(reinterpret_cast<const char*>(blk + kPrefetchBytes + off), _MM_HINT_T0);
    __m512i acc[NQ], acch[NQ];
    for (int qi = 0; qi < NQ; qi++) acc[qi] = acch[qi] = _mm512_setzero_si512();
    for (int m = 0; m < M; m++) {
      const __m512i idx = _mm512_loadu_si512(blk + m * 64);
      const __mmask64 upper = _mm512_movepi8_mask(idx);  // index >= 128
      for (int qi = 0; qi < NQ; qi++) {
        const uint8_t* t = a.queries[qi].qlut + m * 256;
        const __m512i r0 =
            _mm512_permutex2var_epi8(_mm512_loadu_si512(t), idx, _mm512_loadu_si512(t + 64));
        const __m512i r1 =
            _mm512_permutex2var_epi8(_mm512_loadu_si512(t + 128), idx, _mm512_loadu_si512(t + 192));
        const __m512i v = _mm512_mask_blend_epi8(upper, r0, r1);
        acc[qi] = _mm512_add_epi16(acc[qi], v);
        acch[qi] = _mm512_add_epi16(acch[qi], _mm512_srli_epi16(v, 8));
      }
    }
    for (int qi = 0; qi < NQ; qi++) {
      const int32_t bound = a.queries[qi].bound;
      if (bound < 0) continue;
      const __m512i bnd = _mm512_set1_epi16(static_cast<short>(static_cast<uint16_t>(bound)));
      const __m512i lo = _mm512_sub_epi16(acc[qi], _mm512_slli_epi16(acch[qi], 8));
      const uint64_t le_lo = _mm512_cmple_epu16_mask(lo, bnd);        // rows 0..31
      const uint64_t le_hi = _mm512_cmple_epu16_mask(acch[qi], bnd);  // rows 32..63
      if (le_lo | le_hi) a.sink(a.ctx, qi, b, le_lo | le_hi << 32);
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

ScanKernel scan8_avx512vbmi() { return scan8; }

}  // namespace spqindex
