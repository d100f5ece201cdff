// Fast scan: a derived, SIMD-friendly copy of the codes plus uint8-quantized LUTs. The quantized
// sums only find candidates; every candidate is rescored with the float LUT (adc_score's
// sequential sum over m), so results equal the exact contract (scan.h) bit for bit.
//
// Exactness argument. For query LUT L (M, K) the quantizer picks per-m offsets min_m and one
// scale a; q[m,k] = round((L[m,k] - min_m) * a) and e_m = max_k |L[m,k] - min_m - q[m,k] / a|.
// For a code c with quantized sum Q = Σ_m q[m,c_m] (exact in uint16), the real sum R of its LUT
// entries is >= base + Q / a - Σ e_m (base = Σ min_m), and the float32 sequential sum S differs
// from R by at most γ_M · Σ_m max_k |L[m,k]|. So S >= base + Q/a - slack, and a code can only
// reach the top-k (S <= the k-th exact score thr, ties by id included) if
//     Q <= (thr - base + slack) · a      (QuantizedLut::bound).
// Kernels report every code meeting that bound; the caller rescores and updates the bound.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace spqindex {

/// Codes per block of the derived layouts.
constexpr size_t kFastScanBlock = 64;

/// The derived layout of the packed codes, blocks of 64 codes (rows past n are zero codes).
/// nbits 4: per pair p of sub-quantizers (m = 2p, 2p+1; M padded to even), 64 bytes: two
///   halves of 32 codes (rows 0..31, 32..63 of the block); in a half, byte 2i holds code i and
///   byte 2i+1 code 16+i, each byte = c[2p] | c[2p+1] << 4.  Layout: (nblocks, ceil(M/2), 64)
/// nbits 8: per m, 64 bytes: byte 2i holds row i, byte 2i+1 row 32+i.  Layout: (nblocks, M, 64)
struct PackedCodes {
  int M = 0;
  int nbits = 0;
  size_t n = 0;             ///< rows packed so far
  size_t block_bytes = 0;
  std::vector<uint8_t> data;
  bool ids_ascending = true;  ///< ids[row] increase with row (kept by Index; see fastscan_topk)

  size_t nblocks() const { return (n + kFastScanBlock - 1) / kFastScanBlock; }
  const uint8_t* block(size_t b) const { return data.data() + b * block_bytes; }
  /// Drops everything (after a remove).
  void reset() {
    n = 0;
    data.clear();
  }
};

inline bool fastscan_layout_exists(int nbits) { return nbits == 4 || nbits == 8; }

/// Brings `out` up to date with packed rows [out->n, n) of `codes` (FAISS layout, see codes.h).
void pack_codes(const uint8_t* codes, size_t n, int M, int nbits, PackedCodes* out);

/// A query's LUT quantized to uint8 for the kernels, with the bound of the header comment.
/// Table layout: nbits 4: (ceil(M/2), 2, 32): for pair p, 32 bytes of q[2p, 0..15] twice (one
/// per 128-bit lane) then 32 bytes of q[2p+1, 0..15] twice (zeros past M).
///               nbits 8: (M, 256).
struct QuantizedLut {
  std::vector<uint8_t> table;
  double scale = 1;   ///< a
  double base = 0;    ///< Σ_m min_m
  double slack = 0;   ///< Σ_m e_m + float32 summation error bound
  bool ok = false;    ///< false: LUT not finite or too wide; use the float scan

  /// Largest quantized sum a code may have and still reach a score <= thr; -1: none can.
  int32_t bound(float thr) const;
};

/// Quantizes one float LUT (layout (M, K), K = 2^nbits, nbits 4 or 8).
void quantize_lut(const float* lut, int M, int nbits, QuantizedLut* out);

/// One query of a kernel call. The kernel reads `bound` before each block (sum <= bound is a
/// candidate; bound < 0 skips the query) and calls the sink, which may lower it.
struct ScanQuery {
  const uint8_t* qlut;  ///< QuantizedLut::table
  int32_t bound;
};

/// Receives the candidates of one block for query qi: bit j of mask = row block * 64 + j.
using CandidateSink = void (*)(void* ctx, int qi, size_t block, uint64_t mask);

/// One kernel call: blocks [b0, b1) of PackedCodes data against nq <= kMaxScanQueries queries.
/// Plain pointers only: ISA files must not instantiate inline or template code from headers
/// (the linker could pick their AVX-512 copy for the whole program).
struct ScanArgs {
  const uint8_t* blocks;  ///< PackedCodes::data
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

class TopK;

/// Exact top-k of the rows in blocks [b0, b1) (rows < n) for nq queries, on this thread.
/// luts: float LUTs (nq, M, K); qluts: their quantized forms (queries that are not ok take the
/// float scan); codes: the FAISS-layout rows (float scan); heaps: nq.
/// ids == nullptr: the heaps hold row numbers instead of ids. Only valid when ids ascend with
/// rows (same tie order); it saves a cache miss per offered row (ties are common).
/// Code blocks of a cache-sized chunk are scanned by every query before the next chunk.
/// shared (nq, or nullptr): thresholds shared by tasks splitting the same queries over the
/// database. Each full heap's k-th score is >= the global k-th score, so their minimum prunes
/// every task (rows with a score <= it are still offered: ties by id stay exact).
void fastscan_topk(ScanKernel kernel, const PackedCodes& packed, const uint8_t* codes,
                   const int64_t* ids, size_t n, const float* luts, const QuantizedLut* qluts,
                   size_t nq, size_t b0, size_t b1, TopK* heaps,
                   std::atomic<float>* shared = nullptr);

}  // namespace spqindex
