// The search planner (search.h).
#include "spqindex/search.h"

#include <algorithm>
#include <limits>
#include <memory>
#include <vector>

#include "spqindex/lut.h"
#include "spqindex/simd.h"
#include "spqindex/threads.h"
#include "spqindex/topk.h"

namespace spqindex {
namespace {

constexpr size_t kMinRowsPerTask = 16384;  // below this, splitting one query is not worth it
constexpr size_t kLutTaskQueries = 16;     // queries per LUT task

}  // namespace

void search_blocks(const Codebooks& cb, Metric metric, const BlockSource& src, const float* q,
                   size_t nq, size_t k, float* D, int64_t* I) {
  const bool negate = metric_is_similarity(metric);
  if (nq == 0) return;
  if (src.n == 0) {
    for (size_t qi = 0; qi < nq; qi++) TopK(k).write_sorted(D + qi * k, I + qi * k, negate);
    return;
  }
  const CodeLayout& layout = *src.layout;
  const Kernels& kern = kernels();
  const ScanKernel kernel = layout.kind() == CodeLayout::Kind::Fast4   ? kern.scan4
                            : layout.kind() == CodeLayout::Kind::Fast8 ? kern.scan8
                                                                       : nullptr;
  const size_t lut_size = static_cast<size_t>(cb.M) * cb.K;
  const int nthreads = get_num_threads();
  std::vector<float> luts(nq * lut_size);
  std::vector<QuantizedLut> qluts(kernel ? nq : 0);
  parallel_for((nq + kLutTaskQueries - 1) / kLutTaskQueries, [&](size_t t) {
    for (size_t qi = t * kLutTaskQueries; qi < std::min(nq, (t + 1) * kLutTaskQueries); qi++) {
      compute_lut(cb, metric, q + qi * cb.dim(), luts.data() + qi * lut_size);
      if (kernel) quantize_lut(luts.data() + qi * lut_size, cb.M, cb.nbits, &qluts[qi]);
    }
  });
  const QuantizedLut* ql = kernel ? qluts.data() : nullptr;
  // With ascending ids the heaps hold rows (same order), mapped to ids once at the end.
  const int64_t* heap_ids = src.ids_ascending ? nullptr : src.ids;
  auto write = [&](TopK& heap, size_t qi) {
    heap.write_sorted(D + qi * k, I + qi * k, negate);
    if (heap_ids || !src.ids) return;
    for (size_t j = 0; j < k; j++)
      if (I[qi * k + j] >= 0) I[qi * k + j] = src.ids[I[qi * k + j]];
  };
  const size_t nblocks = CodeLayout::nblocks(src.n);
  const size_t min_blocks = kMinRowsPerTask / kBlockRows;
  if (nq >= static_cast<size_t>(nthreads) || nblocks < 2 * min_blocks) {
    // Parallel over query ranges; each range scans the database chunk by chunk.
    const size_t ntasks = std::min(nq, static_cast<size_t>(nthreads) * 2);
    const size_t per = (nq + ntasks - 1) / ntasks;
    parallel_for(ntasks, [&](size_t t) {
      const size_t q0 = t * per, q1 = std::min(nq, q0 + per);
      if (q0 >= q1) return;
      std::vector<TopK> heaps(q1 - q0, TopK(k));
      scan_topk(kernel, layout, src.blocks, src.n, heap_ids, luts.data() + q0 * lut_size,
                ql ? ql + q0 : nullptr, q1 - q0, 0, nblocks, heaps.data(), nullptr, src.allow);
      for (size_t qi = q0; qi < q1; qi++) write(heaps[qi - q0], qi);
    });
    return;
  }
  // Few queries: every query is split over database blocks so every core helps.
  const size_t ntasks = std::min(nblocks / min_blocks, 4 * static_cast<size_t>(nthreads));
  const size_t per = (nblocks + ntasks - 1) / ntasks;
  std::vector<std::vector<TopK>> partial(ntasks, std::vector<TopK>(nq, TopK(k)));
  std::unique_ptr<std::atomic<float>[]> shared(new std::atomic<float>[nq]);
  for (size_t qi = 0; qi < nq; qi++) shared[qi].store(std::numeric_limits<float>::infinity());
  parallel_for(ntasks, [&](size_t t) {
    const size_t b0 = t * per, b1 = std::min(nblocks, b0 + per);
    if (b0 < b1)
      scan_topk(kernel, layout, src.blocks, src.n, heap_ids, luts.data(), ql, nq, b0, b1,
                partial[t].data(), shared.get(), src.allow);
  });
  for (size_t qi = 0; qi < nq; qi++) {
    for (size_t t = 1; t < ntasks; t++) partial[0][qi].merge(partial[t][qi]);
    write(partial[0][qi], qi);
  }
}

}  // namespace spqindex
