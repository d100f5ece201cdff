// The portable half of the fast scan: query grouping, cache blocking and the exact rescoring of
// candidates. The ISA kernels only compute quantized sums and report rows within the bound.
#include <algorithm>
#include <limits>
#include <vector>

#include "spqindex/fastscan.h"
#include "spqindex/scan.h"
#include "spqindex/topk.h"

namespace spqindex {
namespace {

constexpr size_t kChunkBytes = 256 * 1024;  // code blocks kept in L2 across the queries

struct Rescore {
  const uint8_t* blocks;  ///< PackedCodes::data: the block just scanned is still in L1
  size_t block_bytes;
  const int64_t* ids;
  size_t n;
  int M;
  int nbits;
  const float* luts;
  size_t lut_size;
  const QuantizedLut* qluts;
  TopK* heaps;
  const size_t* query_of;  ///< kernel query slot -> query index
  ScanQuery* slots;
  std::atomic<float>* shared;  ///< per query, or nullptr
  struct Shared {             ///< this task's view of `shared`, per query
    float seen;               ///< last value read (stale is safe: it only prunes less)
    float published;          ///< last value this task offered
    uint32_t calls;
  }* views;
  float* bound_thr;  ///< per query: the threshold the slot's current bound was computed from
};

// Lowers shared to v (float compare-and-swap loop).
inline float share_threshold(std::atomic<float>& shared, float v) {
  float cur = shared.load(std::memory_order_relaxed);
  while (v < cur && !shared.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
  return std::min(cur, v);
}

// Same arithmetic as scan_codes (float32 sum over m = 0..M-1 in order), reading the codes of
// row j of a packed block (fastscan.h layouts) instead of the FAISS rows, which would miss cache.
inline float score4(const float* lut, const uint8_t* blk, size_t j, int M) {
  const size_t pos = (j / 32) * 32 + ((j % 32) < 16 ? 2 * (j % 32) : 2 * (j % 32 - 16) + 1);
  float d = 0.f;
  for (int m = 0; m < M; m++) {
    const uint8_t byte = blk[static_cast<size_t>(m >> 1) * 64 + pos];
    d += lut[m * 16 + ((m & 1) ? (byte >> 4) : (byte & 15))];
  }
  return d;
}
inline float score8(const float* lut, const uint8_t* blk, size_t j, int M) {
  const size_t pos = j < 32 ? 2 * j : 2 * (j - 32) + 1;
  float d = 0.f;
  for (int m = 0; m < M; m++) d += lut[m * 256 + blk[static_cast<size_t>(m) * 64 + pos]];
  return d;
}

void offer(void* vctx, int slot, size_t block, uint64_t mask) {
  Rescore& r = *static_cast<Rescore*>(vctx);
  const size_t q = r.query_of[slot];
  const float* lut = r.luts + q * r.lut_size;
  TopK& heap = r.heaps[q];
  float thr = heap.threshold();
  // The shared line is written by other cores: read it every 16th call only, write it only
  // when this task improved on what it published (each access may be a cross-core miss).
  Rescore::Shared* view = r.shared ? &r.views[q] : nullptr;
  if (view) {
    if ((view->calls++ & 15) == 0) view->seen = r.shared[q].load(std::memory_order_relaxed);
    thr = std::min(thr, view->seen);
  }
  const size_t row0 = block * kFastScanBlock;
  const uint8_t* blk = r.blocks + block * r.block_bytes;
  while (mask) {
    const size_t j = static_cast<size_t>(__builtin_ctzll(mask));
    const size_t row = row0 + j;
    mask &= mask - 1;
    if (row >= r.n) break;  // padding of the last block
    const float d = r.nbits == 4 ? score4(lut, blk, j, r.M) : score8(lut, blk, j, r.M);
    if (d <= thr) {
      heap.push(d, r.ids ? r.ids[row] : static_cast<int64_t>(row));
      thr = std::min(thr, heap.threshold());
    }
  }
  if (view && heap.full() && heap.threshold() < view->published) {
    view->published = heap.threshold();
    view->seen = share_threshold(r.shared[q], view->published);
    thr = std::min(thr, view->seen);
  }
  if (thr != r.bound_thr[q]) {  // most calls push nothing: keep the bound
    r.bound_thr[q] = thr;
    r.slots[slot].bound = r.qluts[q].bound(thr);
  }
}

}  // namespace

void fastscan_topk(ScanKernel kernel, const PackedCodes& packed, const uint8_t* codes,
                   const int64_t* ids, size_t n, const float* luts, const QuantizedLut* qluts,
                   size_t nq, size_t b0, size_t b1, TopK* heaps, std::atomic<float>* shared) {
  const int M = packed.M, nbits = packed.nbits;
  const size_t lut_size = static_cast<size_t>(M) << nbits;
  const size_t row1 = std::min(n, b1 * kFastScanBlock);
  std::vector<size_t> fast;
  const size_t code_size = (static_cast<size_t>(M) * nbits + 7) / 8;
  for (size_t q = 0; q < nq; q++) {
    if (qluts[q].ok) {
      fast.push_back(q);
    } else if (ids) {
      scan_codes(luts + q * lut_size, codes, ids, b0 * kFastScanBlock, row1, M, nbits, heaps[q]);
    } else {
      for (size_t row = b0 * kFastScanBlock; row < row1; row++)
        heaps[q].push(adc_score(luts + q * lut_size, codes + row * code_size, M, nbits),
                      static_cast<int64_t>(row));
    }
  }
  if (fast.empty() || b0 >= b1) return;
  std::vector<ScanQuery> slots(fast.size());
  std::vector<float> bound_thr(nq);
  for (size_t i = 0; i < fast.size(); i++) {
    float thr = heaps[fast[i]].threshold();
    if (shared) thr = std::min(thr, shared[fast[i]].load(std::memory_order_relaxed));
    slots[i] = {qluts[fast[i]].table.data(), qluts[fast[i]].bound(thr)};
    bound_thr[fast[i]] = thr;
  }
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<Rescore::Shared> views(nq, Rescore::Shared{inf, inf, 0});
  Rescore ctx{packed.data.data(), packed.block_bytes, ids, n, M, nbits, luts, lut_size,
              qluts, heaps, nullptr, nullptr, shared, views.data(), bound_thr.data()};
  const size_t chunk = std::max<size_t>(1, kChunkBytes / packed.block_bytes);
  for (size_t c0 = b0; c0 < b1; c0 += chunk) {
    const size_t c1 = std::min(b1, c0 + chunk);
    for (size_t g = 0; g < fast.size(); g += kMaxScanQueries) {
      const int ng = static_cast<int>(std::min<size_t>(kMaxScanQueries, fast.size() - g));
      ctx.query_of = fast.data() + g;
      ctx.slots = slots.data() + g;
      kernel(ScanArgs{packed.data.data(), packed.block_bytes, M, c0, c1, ng, slots.data() + g, offer, &ctx});
    }
  }
}

}  // namespace spqindex
