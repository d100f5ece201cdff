// The search planner (search.h).
#include "spqindex/search.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "spqindex/grouped_scan.h"
#include "spqindex/lut.h"
#include "spqindex/simd.h"
#include "spqindex/threads.h"
#include "spqindex/topk.h"
#include "spqindex/topk_select.h"

namespace spqindex {
namespace {

constexpr size_t kMinRowsPerTask = 16384;  // below this, splitting one query is not worth it
constexpr size_t kLutTaskQueries = 16;     // queries per LUT task

/// The LUTs of nq queries (nq, M, K) and, when the layout has a kernel, their quantized forms.
struct Luts {
  ScanKernel kernel;
  size_t lut_size;
  std::vector<float> luts;
  std::vector<QuantizedLut> qluts;
  const QuantizedLut* quantized(size_t q0) const { return kernel ? qluts.data() + q0 : nullptr; }
};

Luts prepare_luts(const Codebooks& cb, Metric metric, const CodeLayout& layout, const float* q,
                  size_t nq) {
  const Kernels& kern = kernels();
  Luts l;
  // Internal codes (code_layout.h groups): the LUT columns in internal order (the same numbers
  // permuted, so rescoring is unchanged); without a byte-permute kernel, the grouped one.
  const CodeGroups* groups = layout.groups();
  const bool grouped = groups && !kern.scan8 && kern.scan8_grouped;
  l.kernel = layout.kind() == CodeLayout::Kind::Fast4 ? kern.scan4
             : layout.kind() == CodeLayout::Kind::Fast8
                 ? (grouped ? kern.scan8_grouped : kern.scan8)
                 : nullptr;
  l.lut_size = static_cast<size_t>(cb.M) * cb.K;
  l.luts.resize(nq * l.lut_size);
  l.qluts.resize(l.kernel ? nq : 0);
  parallel_for((nq + kLutTaskQueries - 1) / kLutTaskQueries, [&](size_t t) {
    std::vector<float> faiss_order(groups ? l.lut_size : 0);
    GroupedLut gl;
    for (size_t qi = t * kLutTaskQueries; qi < std::min(nq, (t + 1) * kLutTaskQueries); qi++) {
      float* lut = l.luts.data() + qi * l.lut_size;
      if (groups) {
        compute_lut(cb, metric, q + qi * cb.dim(), faiss_order.data());
        for (size_t i = 0; i < l.lut_size; i++)  // i = m * 256 + internal code
          lut[i] = faiss_order[(i & ~size_t{255}) + groups->to_original[i]];
      } else {
        compute_lut(cb, metric, q + qi * cb.dim(), lut);
      }
      if (!l.kernel) continue;
      quantize_lut(lut, cb.M, cb.nbits, &l.qluts[qi]);
      if (grouped && l.qluts[qi].ok) {
        grouped_lut(l.qluts[qi], cb.M, &gl);
        l.qluts[qi].grouped = std::move(gl.table);
      }
    }
  });
  return l;
}

/// The large-k selection (topk_select.h) for the rows of blocks [b0, b1): the sums kernel of the
/// layout when selection beats the heap scan over `rows` rows, else nullptr. Filtered searches
/// keep the heap scan (it applies the allow masks).
SumsKernel select_kernel(const Luts& L, const CodeLayout& layout, const BlockSource& src, size_t k,
                         size_t rows) {
  if (!L.kernel || src.allow || !prefer_select_topk(k, rows)) return nullptr;
  return layout.kind() == CodeLayout::Kind::Fast4 ? kernels().sums4 : kernels().sums8;
}

/// Top-k of blocks [b0, b1) for queries [0, nq) of the given LUTs into heaps: select_topk for
/// the queries with a usable quantized LUT when `sums` is set, scan_topk for the rest.
void scan_blocks(SumsKernel sums, ScanKernel kernel, const CodeLayout& layout,
                 const BlockSource& src, const int64_t* heap_ids, const float* luts,
                 size_t lut_size, const QuantizedLut* ql, size_t nq, size_t b0, size_t b1,
                 TopK* heaps, SharedPruning* shared, SelectScratch* scratch) {
  if (!sums) {
    scan_topk(kernel, layout, src.blocks, src.n, heap_ids, luts, ql, nq, b0, b1, heaps, shared,
              src.allow);
    return;
  }
  for (size_t qi = 0; qi < nq; qi++) {
    if (ql[qi].ok)
      select_topk(sums, layout, src.blocks, src.n, b0, b1, heap_ids, luts + qi * lut_size, ql[qi],
                  &heaps[qi], scratch);
    else  // the float scan
      scan_topk(nullptr, layout, src.blocks, src.n, heap_ids, luts + qi * lut_size, nullptr, 1, b0,
                b1, &heaps[qi], shared ? shared + qi : nullptr, src.allow);
  }
}

/// Whether one task per query range is best (else every query is split over the blocks).
bool split_queries(size_t nq, size_t nblocks) {
  return nq >= static_cast<size_t>(get_num_threads()) ||
         nblocks < 2 * (kMinRowsPerTask / kBlockRows);
}

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
  const int nthreads = get_num_threads();
  const Luts L = prepare_luts(cb, metric, layout, q, nq);
  const ScanKernel kernel = L.kernel;
  const size_t lut_size = L.lut_size;
  const float* luts = L.luts.data();
  const QuantizedLut* ql = L.quantized(0);
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
  if (split_queries(nq, nblocks)) {
    // Parallel over query ranges; each range scans the database chunk by chunk.
    const size_t ntasks = std::min(nq, static_cast<size_t>(nthreads) * 2);
    const size_t per = (nq + ntasks - 1) / ntasks;
    const SumsKernel sums = select_kernel(L, layout, src, k, src.n);
    parallel_for(ntasks, [&](size_t t) {
      const size_t q0 = t * per, q1 = std::min(nq, q0 + per);
      if (q0 >= q1) return;
      // Large k (selection): one query at a time, its heap written before the next one's.
      const size_t group = sums ? 1 : q1 - q0;
      SelectScratch scratch;
      for (size_t g0 = q0; g0 < q1; g0 += group) {
        const size_t g1 = std::min(q1, g0 + group);
        std::vector<TopK> heaps(g1 - g0, TopK(k));
        scan_blocks(sums, kernel, layout, src, heap_ids, luts + g0 * lut_size, lut_size,
                    ql ? ql + g0 : nullptr, g1 - g0, 0, nblocks, heaps.data(), nullptr, &scratch);
        for (size_t qi = g0; qi < g1; qi++) write(heaps[qi - g0], qi);
      }
    });
    return;
  }
  // Few queries: every query is split over database blocks so every core helps.
  const size_t ntasks = std::min(nblocks / min_blocks, 4 * static_cast<size_t>(nthreads));
  const size_t per = (nblocks + ntasks - 1) / ntasks;
  std::vector<std::vector<TopK>> partial(ntasks, std::vector<TopK>(nq, TopK(k)));
  std::unique_ptr<SharedPruning[]> shared(new SharedPruning[nq]);
  const SumsKernel sums = select_kernel(L, layout, src, k, per * kBlockRows);
  parallel_for(ntasks, [&](size_t t) {
    const size_t b0 = t * per, b1 = std::min(nblocks, b0 + per);
    SelectScratch scratch;
    if (b0 < b1)
      scan_blocks(sums, kernel, layout, src, heap_ids, luts, lut_size, ql, nq, b0, b1,
                  partial[t].data(), shared.get(), &scratch);
  });
  for (size_t qi = 0; qi < nq; qi++) {
    for (size_t t = 1; t < ntasks; t++) partial[0][qi].merge(partial[t][qi]);
    write(partial[0][qi], qi);
  }
}

void range_search_blocks(const Codebooks& cb, Metric metric, const BlockSource& src, const float* q,
                         size_t nq, float radius, std::vector<int64_t>* lims, std::vector<float>* D,
                         std::vector<int64_t>* I) {
  const bool negate = metric_is_similarity(metric);
  lims->assign(nq + 1, 0);
  D->clear();
  I->clear();
  if (nq == 0 || src.n == 0) return;
  const CodeLayout& layout = *src.layout;
  const Luts L = prepare_luts(cb, metric, layout, q, nq);
  // Inside the core smaller is better (IP negated): hits are d < r, i.e. d <= the float below r.
  const float r = negate ? -radius : radius;
  const float thr = std::nextafter(r, -std::numeric_limits<float>::infinity());
  const int64_t* heap_ids = src.ids_ascending ? nullptr : src.ids;
  const size_t nblocks = CodeLayout::nblocks(src.n);
  std::vector<RangeHits> hits(nq, RangeHits(thr));
  if (split_queries(nq, nblocks)) {
    const size_t ntasks = std::min(nq, static_cast<size_t>(get_num_threads()) * 2);
    const size_t per = (nq + ntasks - 1) / ntasks;
    parallel_for(ntasks, [&](size_t t) {
      const size_t q0 = t * per, q1 = std::min(nq, q0 + per);
      if (q0 < q1)
        scan_range(L.kernel, layout, src.blocks, src.n, heap_ids, L.luts.data() + q0 * L.lut_size,
                   L.quantized(q0), q1 - q0, 0, nblocks, hits.data() + q0, src.allow);
    });
  } else {
    const size_t min_blocks = kMinRowsPerTask / kBlockRows;
    const size_t ntasks =
        std::min(nblocks / min_blocks, 4 * static_cast<size_t>(get_num_threads()));
    const size_t per = (nblocks + ntasks - 1) / ntasks;
    std::vector<std::vector<RangeHits>> partial(ntasks, std::vector<RangeHits>(nq, RangeHits(thr)));
    parallel_for(ntasks, [&](size_t t) {
      const size_t b0 = t * per, b1 = std::min(nblocks, b0 + per);
      if (b0 < b1)
        scan_range(L.kernel, layout, src.blocks, src.n, heap_ids, L.luts.data(), L.quantized(0), nq,
                   b0, b1, partial[t].data(), src.allow);
    });
    for (size_t qi = 0; qi < nq; qi++)
      for (size_t t = 0; t < ntasks; t++)
        hits[qi].hits.insert(hits[qi].hits.end(), partial[t][qi].hits.begin(),
                             partial[t][qi].hits.end());
  }
  for (size_t qi = 0; qi < nq; qi++) {
    auto& h = hits[qi].hits;
    if (src.ids && !heap_ids)
      for (Candidate& c : h) c.id = src.ids[c.id];
    std::sort(h.begin(), h.end(), [](const Candidate& a, const Candidate& b) {
      return better(a.dis, a.id, b.dis, b.id);
    });
    (*lims)[qi + 1] = (*lims)[qi] + static_cast<int64_t>(h.size());
    for (const Candidate& c : h) {
      D->push_back(negate ? -c.dis : c.dis);
      I->push_back(c.id);
    }
  }
}

}  // namespace spqindex
