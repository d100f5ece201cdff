// Runtime SIMD dispatch: CPU features are read once, a table of kernels is chosen, and the
// SPQINDEX_SIMD environment variable (scalar|avx2|avx512|neon) can force a lower level.
// Every kernel of every level must produce bit-identical results to the scalar one.
//
// ISA files (kernels_<isa>.cpp, scan<bits>_<isa>.cpp; compiled with per-file -m flags): each
// level's kernels_<isa>.cpp fills and returns its COMPLETE table (scan kernels included, taken from
// the scan files of the same ISA). They hold no static objects and call only intrinsics and
// __builtin_* functions: an inline or template function from a header (std::min, std::sqrt,
// numeric_limits...) would be emitted there as a weak symbol, and the linker may keep that
// ISA-flagged copy for the whole program. `make check-isa` verifies this with nm (Release and -O0).
#pragma once
#include <cstddef>
#include <cstdint>

#include "spqindex/fastscan.h"

namespace spqindex {

/// x86 levels are ordered (AVX512 > AVX2 > Scalar); NEON is ARM's (aarch64) only vector level.
enum class SimdLevel { Scalar = 0, AVX2 = 1, AVX512 = 2, NEON = 3 };
constexpr int kNumSimdLevels = 4;

/// Writes the uint16 quantized sum of every row of blocks [b0, b1) (fastscan.h layouts) for one
/// query table (QuantizedLut::table): out[(b - b0) * 64 + j] = Σ_m q[m, code_m of row b*64 + j].
/// Exact: quantize_lut keeps every sum within uint16. Used by the large-k selection
/// (topk_select.h).
using SumsKernel = void (*)(const uint8_t* blocks, size_t block_bytes, int M, size_t b0, size_t b1,
                            const uint8_t* qlut, uint16_t* out);

struct Kernels {
  SimdLevel level;
  /// dist[k] = Σ_d (x[d] − ct[d, k])² summed over d in order, for k < K. ct layout (dsub, K).
  void (*subspace_l2)(const float* x, const float* ct, int K, int dsub, float* dist);
  /// dot[k] = Σ_d x[d] · ct[d, k] summed over d in order. ct layout (dsub, K).
  void (*subspace_ip)(const float* x, const float* ct, int K, int dsub, float* dot);
  /// The k with the smallest subspace_l2 distance (ties to the smaller k): the encoder.
  /// SIMD levels may find candidates with ‖c‖² − 2x·c (FMA) and a rounding-error bound, then
  /// pick among them by the exact sequential distance. rows: the codewords, layout (K, dsub);
  /// norms: ‖c_k‖² (K,); max_norm: max_k ‖c_k‖.
  int (*nearest)(const float* x, const float* ct, const float* rows, const float* norms,
                 double max_norm, int K, int dsub);
  /// nearest() for n vectors (row stride `stride` floats) into out[i * out_stride]; nullptr:
  /// the encoder calls nearest() per vector.
  void (*nearest_batch)(const float* x, size_t n, size_t stride, const float* ct, const float* rows,
                        const float* norms, double max_norm, int K, int dsub, uint8_t* out,
                        size_t out_stride) = nullptr;
  /// Fast-scan kernels for 4-bit and 8-bit codes (fastscan.h); nullptr: use the float scan.
  ScanKernel scan4 = nullptr;
  ScanKernel scan8 = nullptr;
  /// 8-bit scan over group-minimum tables (grouped_scan.h): its ScanQuery::qlut is a
  /// GroupedLut::table and the codes are internal codes; the planner takes it when scan8 is
  /// nullptr and the layout stores internal codes.
  ScanKernel scan8_grouped = nullptr;
  /// Quantized sums of 4-bit / 8-bit rows (never nullptr in a level's table).
  SumsKernel sums4 = nullptr;
  SumsKernel sums8 = nullptr;
};

/// The kernels chosen for this process (first call detects the CPU).
const Kernels& kernels();
/// Best level the CPU supports.
SimdLevel cpu_simd_level();
/// Whether set_simd_level(level) is allowed on this CPU (Scalar always is).
bool simd_level_supported(SimdLevel level);
/// Selects a level for this process (simd_level_supported must hold); returns the kernels.
void set_simd_level(SimdLevel level);
const char* simd_level_name(SimdLevel level);
/// "scalar" | "avx2" | "avx512" | "neon" -> level; throws std::invalid_argument naming `level`.
SimdLevel simd_level_from_name(const char* name);
/// The kernels of a supported level without selecting it (tests compare levels side by side).
const Kernels& kernels_for(SimdLevel level);

// Per-ISA tables: each is defined in kernels_<isa>.cpp and complete (see the header comment).
Kernels scalar_kernels();
Kernels avx2_kernels();
Kernels avx512_kernels(bool vbmi);  ///< vbmi: the CPU has AVX-512 VBMI (exact 8-bit permutes)
Kernels neon_kernels();
// Portable sums (kernels_scalar.cpp), the 8-bit sums of every level and the 4-bit sums of NEON.
SumsKernel sums4_scalar();
SumsKernel sums8_scalar();
// Scan kernels of one ISA, for that ISA's kernels_<isa>.cpp only.
ScanKernel scan4_avx2();
SumsKernel sums4_avx2();
ScanKernel scan8_grouped_avx2();
ScanKernel scan4_avx512();
ScanKernel scan8_avx512vbmi();
ScanKernel scan4_neon();
ScanKernel scan8_neon();

}  // namespace spqindex
