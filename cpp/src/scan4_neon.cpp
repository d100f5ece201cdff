// 4-bit fast scan, NEON (no static objects, intrinsics only: simd.h). Per 32-row half-block and
// pair of sub-quantizers: two 16-byte loads, two table lookups (vqtbl1q) per query and load,
// uint16 accumulation of the even (row i) and odd (row 16+i) bytes separately.
#include <arm_neon.h>

#include "spqindex/fastscan.h"
#include "spqindex/simd.h"

namespace spqindex {
namespace {

// Bit l of the result is lane l of `le` (8 lanes of 0 / 0xFFFF).
inline uint32_t movemask8(uint16x8_t le) {
  const uint8_t w[8] = {1, 2, 4, 8, 16, 32, 64, 128};
  return vaddv_u8(vand_u8(vmovn_u16(le), vld1_u8(w)));
}

template <int NQ>
void scan4_nq(const ScanArgs& a) {
  const int P = (a.M + 1) / 2;
  const uint8x16_t nib = vdupq_n_u8(0x0F);
  const uint16x8_t low = vdupq_n_u16(0x00FF);
  for (size_t b = a.b0; b < a.b1; b++) {
    const uint8_t* blk = a.blocks + b * a.block_bytes;
    uint64_t mask[NQ];
    for (int qi = 0; qi < NQ; qi++) mask[qi] = 0;
    for (int h = 0; h < 2; h++) {
      // acc[qi][j]: j = 0: rows 0..7, 1: rows 8..15 (even bytes); 2: rows 16..23, 3: 24..31 (odd).
      uint16x8_t acc[NQ][4];
      for (int qi = 0; qi < NQ; qi++)
        for (int j = 0; j < 4; j++) acc[qi][j] = vdupq_n_u16(0);
      for (int p = 0; p < P; p++) {
        const uint8_t* src = blk + p * 64 + h * 32;
        const uint8x16_t c0 = vld1q_u8(src), c1 = vld1q_u8(src + 16);
        const uint8x16_t lo0 = vandq_u8(c0, nib), hi0 = vshrq_n_u8(c0, 4);
        const uint8x16_t lo1 = vandq_u8(c1, nib), hi1 = vshrq_n_u8(c1, 4);
        for (int qi = 0; qi < NQ; qi++) {
          const uint8_t* t = a.queries[qi].qlut + p * 64;
          const uint8x16_t tl = vld1q_u8(t), th = vld1q_u8(t + 32);
          // <= 254: no carry between the bytes of a uint16 lane.
          const uint16x8_t v0 =
              vreinterpretq_u16_u8(vaddq_u8(vqtbl1q_u8(tl, lo0), vqtbl1q_u8(th, hi0)));
          const uint16x8_t v1 =
              vreinterpretq_u16_u8(vaddq_u8(vqtbl1q_u8(tl, lo1), vqtbl1q_u8(th, hi1)));
          acc[qi][0] = vaddq_u16(acc[qi][0], vandq_u16(v0, low));
          acc[qi][1] = vaddq_u16(acc[qi][1], vandq_u16(v1, low));
          acc[qi][2] = vaddq_u16(acc[qi][2], vshrq_n_u16(v0, 8));
          acc[qi][3] = vaddq_u16(acc[qi][3], vshrq_n_u16(v1, 8));
        }
      }
      for (int qi = 0; qi < NQ; qi++) {
        const int32_t bound = a.queries[qi].bound;
        if (bound < 0) continue;
        const uint16x8_t bnd = vdupq_n_u16(static_cast<uint16_t>(bound));
        uint64_t m = 0;
        for (int j = 0; j < 4; j++)
          m |= static_cast<uint64_t>(movemask8(vcleq_u16(acc[qi][j], bnd))) << (8 * j);
        mask[qi] |= m << (32 * h);
      }
    }
    for (int qi = 0; qi < NQ; qi++)
      if (mask[qi] && a.queries[qi].bound >= 0) a.sink(a.ctx, qi, b, mask[qi]);
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

ScanKernel scan4_neon() { return scan4; }

}  // namespace spqindex
