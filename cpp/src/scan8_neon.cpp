// 8-bit fast scan, NEON (no static objects, intrinsics only: simd.h). The 256-entry uint8 LUT
// of a sub-quantizer is four 64-byte tables: vqtbl4q looks up codes 0..63, and three vqtbx4q on
// the code minus 64, 128, 192 fill in the rest (an index >= 64 leaves a byte unchanged, and the
// uint8 subtraction wraps smaller codes out of range). uint16 accumulation as in scan4_neon.cpp.
#include <arm_neon.h>

#include "spqindex/fastscan.h"
#include "spqindex/simd.h"

namespace spqindex {
namespace {

inline uint32_t movemask8(uint16x8_t le) {
  const uint8_t w[8] = {1, 2, 4, 8, 16, 32, 64, 128};
  return vaddv_u8(vand_u8(vmovn_u16(le), vld1_u8(w)));
}

// Record of sub-quantizer m: byte 2i = row i, byte 2i+1 = row 32+i (fastscan.h). 16-byte load j
// holds rows 8j..8j+7 (even bytes) and 32+8j.. (odd bytes).
template <int NQ>
void scan8_nq(const ScanArgs& a) {
  const uint16x8_t low = vdupq_n_u16(0x00FF);
  const uint8x16_t k64 = vdupq_n_u8(64), k128 = vdupq_n_u8(128), k192 = vdupq_n_u8(192);
  for (size_t b = a.b0; b < a.b1; b++) {
    const uint8_t* blk = a.blocks + b * a.block_bytes;
    uint16x8_t acc[NQ][8];  // [j] rows 8j.., [4 + j] rows 32 + 8j..
    for (int qi = 0; qi < NQ; qi++)
      for (int j = 0; j < 8; j++) acc[qi][j] = vdupq_n_u16(0);
    for (int m = 0; m < a.M; m++) {
      uint8x16_t c[4], c64[4], c128[4], c192[4];
      for (int j = 0; j < 4; j++) {
        c[j] = vld1q_u8(blk + m * 64 + 16 * j);
        c64[j] = vsubq_u8(c[j], k64);
        c128[j] = vsubq_u8(c[j], k128);
        c192[j] = vsubq_u8(c[j], k192);
      }
      for (int qi = 0; qi < NQ; qi++) {
        const uint8_t* t = a.queries[qi].qlut + m * 256;
        const uint8x16x4_t t0 = vld1q_u8_x4(t), t1 = vld1q_u8_x4(t + 64);
        const uint8x16x4_t t2 = vld1q_u8_x4(t + 128), t3 = vld1q_u8_x4(t + 192);
        for (int j = 0; j < 4; j++) {
          uint8x16_t v = vqtbl4q_u8(t0, c[j]);
          v = vqtbx4q_u8(v, t1, c64[j]);
          v = vqtbx4q_u8(v, t2, c128[j]);
          v = vqtbx4q_u8(v, t3, c192[j]);
          const uint16x8_t w = vreinterpretq_u16_u8(v);
          acc[qi][j] = vaddq_u16(acc[qi][j], vandq_u16(w, low));
          acc[qi][4 + j] = vaddq_u16(acc[qi][4 + j], vshrq_n_u16(w, 8));
        }
      }
    }
    for (int qi = 0; qi < NQ; qi++) {
      const int32_t bound = a.queries[qi].bound;
      if (bound < 0) continue;
      const uint16x8_t bnd = vdupq_n_u16(static_cast<uint16_t>(bound));
      uint64_t mask = 0;
      for (int j = 0; j < 8; j++)
        mask |= static_cast<uint64_t>(movemask8(vcleq_u16(acc[qi][j], bnd))) << (8 * j);
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

ScanKernel scan8_neon() { return scan8; }

}  // namespace spqindex
