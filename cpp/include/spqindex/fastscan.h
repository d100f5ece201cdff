// Fast scan: the stored code blocks (code_layout.h) against uint8-quantized LUTs. The quantized
// sums only find candidates; every candidate is rescored with the float LUT (adc_score's
// sequential sum over m), so results equal the exact contract (scan.h) bit for bit.
//
// Exactness argument. For query LUT L (M, K) the quantizer picks per-m offsets min_m and one
// scale a; q[m,k] = min(round((L[m,k] - min_m) * a), qmax) and
// e_m = max_k max(0, q[m,k] / a - (L[m,k] - min_m)), what rounding up added (entries clipped to
// qmax only lose, which keeps Q a lower bound). For a code c with quantized sum
// Q = Σ_m q[m,c_m] (exact in uint16), the real sum R of its LUT
// entries is >= base + Q / a - Σ e_m (base = Σ min_m), and the float32 sequential sum S differs
// from R by at most γ_M · Σ_m max_k |L[m,k]|. So S >= base + Q/a - slack, and a code can only
// reach the top-k (S <= the k-th exact score thr, ties by id included) if
//     Q <= (thr - base + slack) · a      (QuantizedLut::bound).
// Kernels report every code meeting that bound; the caller rescores and updates the bound.
#pragma once
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace spqindex {

/// A query's LUT quantized to uint8 for the kernels, with the bound of the header comment.
/// Table layout: nbits 4: (ceil(M/2), 2, 32): for pair p, 32 bytes of q[2p, 0..15] twice (one
/// per 128-bit lane) then 32 bytes of q[2p+1, 0..15] twice (zeros past M).
///               nbits 8: (M, 256).
struct QuantizedLut {
  std::vector<uint8_t> table;
  double scale = 1;  ///< a
  double base = 0;   ///< Σ_m min_m
  double slack = 0;  ///< Σ_m e_m + float32 summation error bound
  double range = 0;  ///< the LUT span mapped to qmax (qmax / a)
  bool ok = false;   ///< false: LUT not finite or too wide; use the float scan
  /// The kernel's table when it is not `table`: the group minima of the grouped 8-bit kernel
  /// (grouped_scan.h GroupedLut::table); empty otherwise.
  std::vector<uint8_t> grouped;
  const uint8_t* kernel_table() const { return grouped.empty() ? table.data() : grouped.data(); }

  /// Largest quantized sum a code may have and still reach a score <= thr; -1: none can.
  int32_t bound(float thr) const;
};

/// Quantizes one float LUT (layout (M, K), K = 2^nbits, nbits 4 or 8). The scale maps the
/// widest sub-space's range, or `cap` if smaller, to qmax: entries more than cap above their
/// sub-space's minimum are clipped. Any cap > 0 is exact; a cap near (k-th score - base), where
/// every entry of a top-k code lies, gives the finest steps (fewer candidates to rescore).
void quantize_lut(const float* lut, int M, int nbits, QuantizedLut* out,
                  double cap = std::numeric_limits<double>::infinity());

/// One query of a kernel call. The kernel reads `bound` before each block (sum <= bound is a
/// candidate; bound < 0 skips the query) and calls the sink, which may lower it.
struct ScanQuery {
  const uint8_t* qlut;  ///< QuantizedLut::kernel_table()
  int32_t bound;
  /// Grouped 8-bit kernels only (grouped_scan.h): the full (M, 256) table, to drop the candidates
  /// of a block whose exact quantized sum exceeds the bound; nullptr: group bound only.
  const uint8_t* exact = nullptr;
};

/// Receives the candidates of one block for query qi: bit j of mask = row block * 64 + j.
using CandidateSink = void (*)(void* ctx, int qi, size_t block, uint64_t mask);

/// One kernel call: blocks [b0, b1) of the stored blocks (code_layout.h Fast4 / Fast8) against nq
/// <= kMaxScanQueries queries. Plain pointers only: ISA files must not instantiate inline or
/// template code from headers (the linker could pick their AVX-512 copy for the whole program).
struct ScanArgs {
  const uint8_t* blocks;  ///< block 0 of the stored codes
  size_t block_bytes;
  int M;
  size_t b0, b1;
  int nq;
  ScanQuery* queries;
  CandidateSink sink;
  void* ctx;
};

/// Queries sharing one load of each code block.
constexpr int kMaxScanQueries = 4;

/// A fast-scan kernel (simd.h): offers every code of blocks [b0, b1) within each query's bound.
using ScanKernel = void (*)(const ScanArgs& args);

}  // namespace spqindex
