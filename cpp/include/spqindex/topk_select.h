// Exact top-k for large k (hundreds to thousands: mAP@1000 needs k = 1000) that keeps the
// quantized fast path. The heap-and-bound scan (fastscan_topk) starts pruning only once k rows
// are in the heap and then offers every row whose bound has not yet tightened; with large k that
// is most rows. Here, per query:
//   1. the SIMD sums kernel writes every row's uint16 quantized sum Q (simd.h SumsKernel);
//   2. a histogram of Q over a sample of rows (2048 buckets, exact values when the sums are
//      small) proposes a bucket edge Q*, kept if at least k rows have Q <= Q* (else the full
//      histogram gives the smallest such edge);
//   3. those rows are rescored exactly; their k-th best exact score thr is >= the true k-th
//      score (k-th of a subset), so fastscan.h's argument prunes with b = QuantizedLut::bound(thr):
//      only rows with Q <= b can reach the top-k (ties by id included);
//   4. every row with Q <= b is rescored exactly (float, m in order: scan.h's arithmetic) and the
//      k best by (score, id) are kept. The result equals the exact contract bit for bit.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "spqindex/code_layout.h"
#include "spqindex/fastscan.h"
#include "spqindex/simd.h"
#include "spqindex/topk.h"

namespace spqindex {

/// Per-thread scratch of select_topk (reused across queries).
struct SelectScratch {
  std::vector<uint16_t> sums;
  std::vector<uint32_t> hist;
  std::vector<uint32_t> rows;
  std::vector<Candidate> cand;
  std::vector<uint64_t> keys;  ///< (ordered score, row) when heaps take rows
};

/// Exact top-k of the rows of blocks [b0, b1) (rows < n) of the stored blocks (code_layout.h,
/// Fast4 or Fast8) for one query, into `heap` (capacity k). lut: the float LUT (M, K); qlut: its
/// quantized form (must be ok); ids: ids[row], or nullptr to push row numbers (only when ids ascend
/// with rows: same tie order). sums: the level's SumsKernel for layout.nbits().
void select_topk(SumsKernel sums, const CodeLayout& layout, const uint8_t* blocks, size_t n,
                 size_t b0, size_t b1, const int64_t* ids, const float* lut,
                 const QuantizedLut& qlut, TopK* heap, SelectScratch* scratch);

/// Whether select_topk is the better path for k over n rows (else fastscan_topk).
inline bool prefer_select_topk(size_t k, size_t n) { return k >= 64 && n >= 8 * k; }

}  // namespace spqindex
