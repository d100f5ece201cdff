// The scanner (search.h): query grouping, cache blocking, the float scan and the exact
// rescoring of fast-scan candidates. The ISA kernels only compute quantized sums and report rows
// within the bound.
#include <algorithm>
#include <limits>
#include <type_traits>
#include <vector>

#include "spqindex/scan.h"
#include "spqindex/search.h"
#include "spqindex/topk.h"

namespace spqindex {
namespace {

constexpr size_t kChunkBytes = 256 * 1024;  // code blocks kept in L2 across the queries
// A query's LUT is quantized again with a cap (fastscan.h quantize_lut) once its threshold is
// within kRefineRatio of the current range above base: every entry of a top-k code lies within
// (threshold - base) of its sub-space minimum, so that is the span worth resolving. Caps below
// kMinCap of the full range are not taken (the float-sum term of the slack dominates there).
constexpr double kRefineRatio = 0.5;
constexpr double kMinCap = 1.0 / 4096;
// A query whose kernel bound passed more than kFallbackShare of the rows of the last chunk (a full
// one, after the short first chunk, so the threshold has settled; at least kFallbackRows rows)
// continues with the float scan: rescoring most rows after the kernel costs more than scoring
// every row once (8-bit grouped minima on unclustered data).
constexpr double kFallbackShare = 0.5;
constexpr size_t kFallbackRows = 4096;

template <class Heap>
struct Rescore {
  const uint8_t* blocks;  ///< the stored blocks: the block just scanned is still in L1
  const CodeLayout* layout;
  const int64_t* ids;
  size_t n;
  const uint64_t* allow;  ///< per-block row masks, or nullptr
  const float* luts;
  size_t lut_size;
  const QuantizedLut* const* qlut_of;  ///< per query: its current quantized LUT
  Heap* heaps;
  const size_t* query_of;  ///< kernel query slot -> query index
  ScanQuery* slots;
  SharedPruning* shared;  ///< per query, or nullptr
  struct Shared {         ///< this task's view of `shared`, per query
    float seen;           ///< last threshold read (stale is safe: it only prunes less)
    float published;      ///< last threshold this task offered
    uint32_t calls;
  }* views;
  float* bound_thr;    ///< per query: the threshold the slot's current bound was computed from
  const float* floor;  ///< per query: floor_score, or nullptr (no stopping at the floor)
  uint64_t* offered;   ///< per query: rows the kernel reported (rescored), for the fallback
};

// Lowers shared to v (compare-and-swap loop); returns the new value.
template <class T>
T lower_shared(std::atomic<T>& shared, T v) {
  T cur = shared.load(std::memory_order_relaxed);
  while (v < cur && !shared.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
  return std::min(cur, v);
}

// Whether a heap's query is finished: k rows at the floor score (no code scores lower), all
// scanned before the rows still to come, which could only tie them with a larger row number.
template <class Heap>
bool at_floor(const Heap& heap, float floor) {
  if constexpr (std::is_same_v<Heap, TopK>)
    return heap.full() && heap.threshold() <= floor;
  else
    return false;  // range search: the threshold is fixed
}

template <class Heap>
void offer(void* vctx, int slot, size_t block, uint64_t mask) {
  Rescore<Heap>& r = *static_cast<Rescore<Heap>*>(vctx);
  const size_t q = r.query_of[slot];
  const float* lut = r.luts + q * r.lut_size;
  Heap& heap = r.heaps[q];
  float thr = heap.threshold();
  // The shared line is written by other cores: read it every 16th call only, write it only
  // when this task improved on what it published (each access may be a cross-core miss).
  typename Rescore<Heap>::Shared* view = r.shared ? &r.views[q] : nullptr;
  if (view) {
    if ((view->calls++ & 15) == 0) {
      view->seen = r.shared[q].thr.load(std::memory_order_relaxed);
      if (r.floor && block >= r.shared[q].stop.load(std::memory_order_relaxed)) {
        r.slots[slot].bound = -1;  // another task holds k rows at the floor before this block
        return;
      }
    }
    thr = std::min(thr, view->seen);
  }
  const size_t row0 = block * kBlockRows;
  const uint8_t* blk = r.blocks + block * r.layout->block_bytes();
  if (r.allow) mask &= r.allow[block];
  r.offered[q] += static_cast<uint64_t>(__builtin_popcountll(mask));
  while (mask) {
    const size_t j = static_cast<size_t>(__builtin_ctzll(mask));
    const size_t row = row0 + j;
    mask &= mask - 1;
    if (row >= r.n) break;  // padding of the last block
    const float d = block_row_score(lut, *r.layout, blk, j);
    if (d <= thr) {
      heap.push(d, r.ids ? r.ids[row] : static_cast<int64_t>(row));
      thr = std::min(thr, heap.threshold());
    }
  }
  if (r.floor && at_floor(heap, r.floor[q])) {
    if (r.shared) lower_shared(r.shared[q].stop, block + 1);
    r.slots[slot].bound = -1;  // done: see at_floor
    return;
  }
  if (view && heap.full() && heap.threshold() < view->published) {
    view->published = heap.threshold();
    view->seen = lower_shared(r.shared[q].thr, view->published);
    thr = std::min(thr, view->seen);
  }
  if (thr != r.bound_thr[q]) {  // most calls push nothing: keep the bound
    r.bound_thr[q] = thr;
    r.slots[slot].bound = r.qlut_of[q]->bound(thr);
  }
}

// The float scanner: every row of blocks [c0, c1) scored, offered when within the threshold.
template <class Heap>
void float_scan(const float* lut, const CodeLayout& layout, const uint8_t* blocks, size_t n,
                const int64_t* ids, const uint64_t* allow, size_t c0, size_t c1, Heap& heap) {
  float scores[kBlockRows];
  float thr = heap.threshold();
  for (size_t b = c0; b < c1; b++) {
    const uint64_t admitted = allow ? allow[b] : ~uint64_t{0};
    if (!admitted) continue;
    block_scores(lut, layout, blocks + b * layout.block_bytes(), scores);
    const size_t row0 = b * kBlockRows, rows = std::min(kBlockRows, n - row0);
    for (size_t j = 0; j < rows; j++) {
      if (scores[j] <= thr && (admitted >> j & 1)) {
        heap.push(scores[j], ids ? ids[row0 + j] : static_cast<int64_t>(row0 + j));
        thr = heap.threshold();
      }
    }
  }
}

template <class Heap>
void scan(ScanKernel kernel, const CodeLayout& layout, const uint8_t* blocks, size_t n,
          const int64_t* ids, const float* luts, const QuantizedLut* qluts, size_t nq, size_t b0,
          size_t b1, Heap* heaps, SharedPruning* shared, const uint64_t* allow) {
  b1 = std::min(b1, CodeLayout::nblocks(n));
  if (b0 >= b1) return;
  const size_t lut_size = static_cast<size_t>(layout.M()) << layout.nbits();
  // Stopping at the floor needs rows in ascending order in the heaps (ids nullptr).
  const bool floor_stop = !ids && std::is_same_v<Heap, TopK>;
  std::vector<size_t> fast, slow;
  for (size_t q = 0; q < nq; q++) (kernel && qluts && qluts[q].ok ? fast : slow).push_back(q);
  // fast[i] is the query of kernel slot i; queries whose bound drops below 0 (done) leave
  // between chunks, so the kernel's query groups stay full.
  std::vector<ScanQuery> slots(fast.size());
  std::vector<float> bound_thr(nq), floor(floor_stop ? nq : 0);
  for (size_t i = 0; i < fast.size(); i++) {
    const size_t q = fast[i];
    float thr = heaps[q].threshold();
    if (shared) thr = std::min(thr, shared[q].thr.load(std::memory_order_relaxed));
    const QuantizedLut& ql = qluts[q];
    slots[i] = {ql.kernel_table(), ql.bound(thr), ql.grouped.empty() ? nullptr : ql.table.data()};
    bound_thr[q] = thr;
    if (floor_stop) floor[q] = floor_score(luts + q * lut_size, layout.M(), 1 << layout.nbits());
  }
  // Finer steps once a threshold is known (refine()); 4-bit tables only (the grouped 8-bit
  // table derives from the plain one).
  std::vector<const QuantizedLut*> qlut_of(nq, nullptr);
  for (size_t q : fast) qlut_of[q] = &qluts[q];
  std::vector<QuantizedLut> refined;
  auto refine = [&](size_t i) {
    const size_t q = fast[i];
    const QuantizedLut& cur = *qlut_of[q];
    const double cap = static_cast<double>(bound_thr[q]) - cur.base;
    if (!(cap < kRefineRatio * cur.range) || !(cap > kMinCap * qluts[q].range)) return;
    if (refined.empty()) refined.resize(nq);
    QuantizedLut& next = refined[q];
    quantize_lut(luts + q * lut_size, layout.M(), layout.nbits(), &next, cap);
    if (!next.ok) return;
    qlut_of[q] = &next;
    slots[i] = {next.table.data(), next.bound(bound_thr[q])};
  };
  const bool refining = layout.kind() == CodeLayout::Kind::Fast4;
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<typename Rescore<Heap>::Shared> views(nq,
                                                    typename Rescore<Heap>::Shared{inf, inf, 0});
  std::vector<uint64_t> offered(nq, 0), offered_before(nq, 0);  // total, and at the last chunk
  Rescore<Heap> ctx{blocks,
                    &layout,
                    ids,
                    n,
                    allow,
                    luts,
                    lut_size,
                    qlut_of.data(),
                    heaps,
                    nullptr,
                    nullptr,
                    shared,
                    views.data(),
                    bound_thr.data(),
                    floor_stop ? floor.data() : nullptr,
                    offered.data()};
  // The first chunk is short so that refine() sees a threshold early.
  const size_t chunk = std::max<size_t>(1, kChunkBytes / layout.block_bytes());
  size_t last_rows = 0;  // rows of the last chunk when it was a full one, else 0
  for (size_t c0 = b0, c1; c0 < b1; c0 = c1) {
    c1 = std::min(b1, c0 + (c0 == b0 ? std::max<size_t>(1, chunk / 8) : chunk));
    size_t live = 0;
    for (size_t i = 0; i < fast.size(); i++) {
      const bool stopped =
          floor_stop && shared && c0 >= shared[fast[i]].stop.load(std::memory_order_relaxed);
      if (slots[i].bound < 0 || stopped) continue;
      const size_t q = fast[i];
      const uint64_t recent = offered[q] - offered_before[q];
      offered_before[q] = offered[q];
      if (last_rows >= kFallbackRows && recent > kFallbackShare * last_rows) {
        slow.push_back(q);  // from this chunk on: the float scan (same heap, exact)
        continue;
      }
      if (refining && c0 != b0) refine(i);
      fast[live] = fast[i];
      slots[live++] = slots[i];
    }
    fast.resize(live);
    slots.resize(live);
    for (size_t g = 0; g < fast.size(); g += kMaxScanQueries) {
      const int ng = static_cast<int>(std::min<size_t>(kMaxScanQueries, fast.size() - g));
      ctx.query_of = fast.data() + g;
      ctx.slots = slots.data() + g;
      kernel(ScanArgs{blocks, layout.block_bytes(), layout.M(), c0, c1, ng, slots.data() + g,
                      offer<Heap>, &ctx});
    }
    for (size_t q : slow)
      float_scan(luts + q * lut_size, layout, blocks, n, ids, allow, c0, c1, heaps[q]);
    last_rows = c0 == b0 ? 0 : (c1 - c0) * kBlockRows;
  }
}

}  // namespace

void scan_topk(ScanKernel kernel, const CodeLayout& layout, const uint8_t* blocks, size_t n,
               const int64_t* ids, const float* luts, const QuantizedLut* qluts, size_t nq,
               size_t b0, size_t b1, TopK* heaps, SharedPruning* shared, const uint64_t* allow) {
  scan(kernel, layout, blocks, n, ids, luts, qluts, nq, b0, b1, heaps, shared, allow);
}

void scan_range(ScanKernel kernel, const CodeLayout& layout, const uint8_t* blocks, size_t n,
                const int64_t* ids, const float* luts, const QuantizedLut* qluts, size_t nq,
                size_t b0, size_t b1, RangeHits* hits, const uint64_t* allow) {
  scan(kernel, layout, blocks, n, ids, luts, qluts, nq, b0, b1, hits, nullptr, allow);
}

}  // namespace spqindex
