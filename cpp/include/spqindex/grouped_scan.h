// Exact 8-bit fast scan without byte permutes (AVX2): grouped-minimum tables, after André et al.,
// "Cache locality is not enough" (VLDB 2015). Each sub-space's 256 codewords are put in an
// internal order of 16 tight groups of 16 (group = high nibble of the internal code), so a
// 16-entry uint8 table of per-group LUT minima, looked up with the 4-bit byte shuffle on the high
// nibble of each stored (internal) code byte, gives a lower bound of the quantized sum.
//
// Bound. With q the uint8 LUT of quantize_lut (fastscan.h) in internal order and
// gmin[m, g] = min_{c : c >> 4 == g} q[m, c], every row's group sum G = Σ_m gmin[m, c_m >> 4]
// is <= its quantized sum Q = Σ_m q[m, c_m]. fastscan.h shows that a row can reach the top-k
// only if Q <= QuantizedLut::bound(thr); so rows with G > bound are safely pruned and every row
// with G <= bound is offered to the sink (CandidateSink), which rescores it exactly.
//
// Refinement. Where a block has at least kRefineRows candidates by G and the query carries its
// full table (ScanQuery::exact), the kernel also sums Q for the block's 64 rows (AVX2: the
// 256-entry table as 16 shuffles of 16 entries, merged by the high-nibble bits with four levels of
// byte blends) and offers only rows with G <= bound and Q <= bound: the sink gets fewer rows to
// rescore where the group bound is loose (codewords about equally far from the query). Every level
// gives the same masks.
//
// Integration: an 8-bit Index stores internal codes (CodeLayout with these CodeGroups converts
// at put_row / get_row; files store the internal codes with their order, io.h); the planner
// (search.cpp) permutes the float LUT's columns to internal order before quantize_lut and, when the
// level has no byte-permute 8-bit kernel, points ScanQuery::qlut at the group minima
// (QuantizedLut::grouped). Tight groups are what make the bound prune.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "spqindex/codebooks.h"
#include "spqindex/fastscan.h"

namespace spqindex {

/// The internal codeword order of an 8-bit codebook. Layouts (M, 256).
struct CodeGroups {
  int M = 0;
  std::vector<uint8_t> to_internal;  ///< FAISS code -> internal code (group << 4 | rank)
  std::vector<uint8_t> to_original;  ///< internal code -> FAISS code
};

/// Deterministic grouping from the codebooks (nbits must be 8): per sub-space, four levels of
/// median splits along the principal axis of the current set (ties by codeword index) give 16
/// groups of 16 nearby codewords; within a group, ascending original index.
CodeGroups group_codewords(const Codebooks& cb);

/// A block's group-bound candidates are refined by exact quantized sums from this many on
/// (about where one block's exact pass costs what rescoring that many rows in float does).
constexpr int kRefineRows = 8;

/// The CodeGroups of a stored codeword order (to_internal, layout (M, 256), as files keep it).
/// Any permutation gives exact results (a group's minimum bounds each member); false when a
/// sub-space's row is not a permutation of 0..255.
bool groups_from_order(const uint8_t* to_internal, int M, CodeGroups* out);

/// The grouped kernel's query table. Layout (M, 32): for sub-space m, the 16 group minima twice
/// (one copy per 128-bit lane).
struct GroupedLut {
  std::vector<uint8_t> table;
};

/// Group minima of an ok QuantizedLut of 8-bit codes whose columns are in internal order.
void grouped_lut(const QuantizedLut& q, int M, GroupedLut* out);

/// Portable reference of the grouped kernel (same contract as the AVX2 one, simd.h).
ScanKernel scan8_grouped_scalar();

}  // namespace spqindex
