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
constexpr size_t kPrefetchBytes = 4096;

template <int NQ>
void scan4_nq(const ScanArgs& a) {
  const int P = (a.M + 1) / 2;
  const __m256i nib = _mm256_set1_epi8(0x0F);
  for (size_t b = a.b0; b < a.b1; b++) {
    const uint8_t* blk = a.blocks + b * a.block_bytes;
    for (size_t off = 0; off < a.block_bytes; off += 64)  // see scan4_avx512.cpp
      _mm_prefetch(reinterpret_cast<const char*>(blk + kPrefetchBytes + off), _MM_HINT_T0);
    for (int h = 0; h < 2; h++) {
      __m256i acc[NQ], acch[NQ];
      for (int qi = 0; qi < NQ; qi++) acc[qi] = acch[qi] = _mm256_setzero_si256();
      for (int p = 0; p < P; p++) {
        const __m256i c =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + p * 64 + h * 32));
        const __m256i clo = _mm256_and_si256(c, nib);
        const __m256i chi = _mm256_and_si256(_mm256_srli_epi16(c, 4), nib);
        for (int qi = 0; qi < NQ; qi++) {
          const uint8_t* t = a.queries[qi].qlut + p * 64;
          const __m256i vl =
              _mm256_shuffle_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(t)), clo);
          const __m256i vh = _mm256_shuffle_epi8(
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t + 32)), chi);
          const __m256i v = _mm256_add_epi8(vl, vh);  // <= 254: no carry into the next byte
          acc[qi] = _mm256_add_epi16(acc[qi], v);
          acch[qi] = _mm256_add_epi16(acch[qi], _mm256_srli_epi16(v, 8));
        }
      }
      for (int qi = 0; qi < NQ; qi++) {
        const int32_t bound = a.queries[qi].bound;
        if (bound < 0) continue;
        const __m256i lo = _mm256_sub_epi16(acc[qi], _mm256_slli_epi16(acch[qi], 8));  // rows i
        const __m256i hi = acch[qi];                                                   // rows 16+i
        const __m256i bnd = _mm256_set1_epi16(static_cast<short>(static_cast<uint16_t>(bound)));
        const __m256i le_lo = _mm256_cmpeq_epi16(_mm256_min_epu16(lo, bnd), lo);
        const __m256i le_hi = _mm256_cmpeq_epi16(_mm256_min_epu16(hi, bnd), hi);
        // packs interleaves 128-bit lanes: [lo0-7 hi0-7 lo8-15 hi8-15] -> reorder to row order.
        const __m256i bytes = _mm256_permute4x64_epi64(_mm256_packs_epi16(le_lo, le_hi), 0xD8);
        const uint32_t mask = static_cast<uint32_t>(_mm256_movemask_epi8(bytes));
        if (mask) a.sink(a.ctx, qi, b, static_cast<uint64_t>(mask) << (32 * h));
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
