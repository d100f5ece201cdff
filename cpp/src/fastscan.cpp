#include "spqindex/fastscan.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace spqindex {

void quantize_lut(const float* lut, int M, int nbits, QuantizedLut* out, double cap) {
  const int K = 1 << nbits;
  out->ok = false;
  std::vector<double> mins(M);
  double width = 0, abs_sum = 0, base = 0;
  for (int m = 0; m < M; m++) {
    const float* row = lut + static_cast<size_t>(m) * K;
    float lo = row[0], hi = row[0], amax = 0;
    for (int k = 0; k < K; k++) {
      if (!std::isfinite(row[k])) return;
      lo = std::min(lo, row[k]);
      hi = std::max(hi, row[k]);
      amax = std::max(amax, std::fabs(row[k]));
    }
    mins[m] = lo;
    base += lo;
    width = std::max(width, static_cast<double>(hi) - lo);
    abs_sum += amax;
  }
  // uint16 accumulation: M * qmax must fit in 65535. 4-bit kernels add the two entries of a
  // byte (sub-quantizers 2p, 2p+1) in uint8 first, so there q[m, k] <= 127.
  const int qmax = std::min(nbits == 4 ? 127 : 255, 65535 / M);
  if (qmax < 1 || !std::isfinite(abs_sum) || abs_sum > 1e37) return;
  const double range = std::min(width, cap);
  const double a = range > 0 ? qmax / range : 1.0;
  double err = 0;
  if (nbits == 4)
    out->table.assign(static_cast<size_t>((M + 1) / 2) * 64, 0);
  else
    out->table.assign(static_cast<size_t>(M) * 256, 0);
  // Any rounding works: the bound uses the error e actually made. Round half up by truncation
  // (inline; nearbyint is a libm call per entry), and dequantize with 1/a: its relative error
  // (~1e-16) is far inside the 1e-12 margin of the slack below. Entries past the range clip to
  // qmax (they only lose: no contribution to e).
  const double inv_a = 1.0 / a;
  for (int m = 0; m < M; m++) {
    const float* row = lut + static_cast<size_t>(m) * K;
    const double lo = mins[m];
    // nbits 8: row m of (M, 256); nbits 4: half m % 2 of the 64-byte pair block m / 2, each entry
    // twice.
    uint8_t* dst =
        out->table.data() + (nbits == 8 ? static_cast<size_t>(m) * 256
                                        : static_cast<size_t>(m / 2) * 64 + (m % 2) * 32);
    double e = 0;
    for (int k = 0; k < K; k++) {
      const double x = (row[k] - lo) * a;  // >= 0: lo is the row's minimum
      const int v = x < qmax ? std::min(static_cast<int>(x + 0.5), qmax) : qmax;
      e = std::max(e, v * inv_a - (row[k] - lo));
      dst[k] = static_cast<uint8_t>(v);
      if (nbits == 4) dst[16 + k] = static_cast<uint8_t>(v);
    }
    err += e;
  }
  // Float32 sequential sum of M terms: |S - R| <= (M-1) u / (1 - (M-1) u) Σ|x| (u = 2^-24);
  // doubled, plus a relative margin for the double arithmetic here and in bound().
  const double u = std::ldexp(1.0, -24);
  out->scale = a;
  out->range = qmax * inv_a;
  out->base = base;
  out->slack = err * (1 + 1e-9) + 2.0 * (M + 1) * u * abs_sum +
               1e-12 * (abs_sum + std::fabs(base)) +
               std::numeric_limits<float>::denorm_min() * (M + 1);
  out->ok = true;
}

int32_t QuantizedLut::bound(float thr) const {
  if (std::isinf(thr) && thr > 0) return 65535;
  const double t = (static_cast<double>(thr) - base + slack) * scale;
  if (!(t >= 0)) return -1;
  if (t >= 65535) return 65535;
  return static_cast<int32_t>(std::floor(t));
}

}  // namespace spqindex
