#include "spqindex/topk_select.h"

#include <algorithm>

#include "spqindex/error.h"
#include "spqindex/scan.h"

namespace spqindex {
namespace {

constexpr size_t kBuckets = 2048;

// Largest quantized sum the table allows (Σ_m max_k q[m, k]); layouts of QuantizedLut.
uint32_t max_sum(const QuantizedLut& qlut, int M, int nbits) {
  uint32_t total = 0;
  const uint8_t* t = qlut.table.data();
  for (int m = 0; m < M; m++) {
    const uint8_t* row = nbits == 8 ? t + static_cast<size_t>(m) * 256
                                    : t + static_cast<size_t>(m / 2) * 64 + (m % 2) * 32;
    uint8_t mx = 0;
    for (int k = 0; k < (1 << nbits); k++) mx = row[k] > mx ? row[k] : mx;
    total += mx;
  }
  return total;
}

}  // namespace

void select_topk(SumsKernel sums, const CodeLayout& layout, const uint8_t* blocks, size_t n,
                 size_t b0, size_t b1, const int64_t* ids, const float* lut,
                 const QuantizedLut& qlut, TopK* heap, SelectScratch* scratch) {
  SPQ_CHECK(qlut.ok && layout.kind() != CodeLayout::Kind::Rows);
  b1 = std::min(b1, CodeLayout::nblocks(n));
  if (b0 >= b1) return;
  const int M = layout.M(), nbits = layout.nbits();
  const size_t block_bytes = layout.block_bytes();
  // Local row r (0 .. n - row0) is stored row row0 + r.
  const size_t row0 = b0 * kBlockRows;
  const uint8_t* first = blocks + b0 * block_bytes;
  n = std::min(n, b1 * kBlockRows) - row0;
  std::vector<uint16_t>& q = scratch->sums;
  q.resize((b1 - b0) * kBlockRows);
  sums(blocks, block_bytes, M, b0, b1, qlut.table.data(), q.data());
  auto score = [&](size_t r) {
    return block_row_score(lut, layout, first + r / kBlockRows * block_bytes, r % kBlockRows);
  };
  auto id_of = [&](size_t r) { return ids ? ids[row0 + r] : static_cast<int64_t>(row0 + r); };
  const size_t k = heap->k();
  if (k >= n) {  // every row is in the result
    for (size_t r = 0; r < n; r++) heap->push(score(r), id_of(r));
    return;
  }
  // Q*: the upper edge of the first bucket where the cumulative count of a sample of every
  // stride-th row reaches its share of k (with a margin); checked below, the full histogram if
  // too few rows qualify. Buckets of 2^shift sums, shift as small as the table allows.
  int shift = 0;
  while ((max_sum(qlut, M, nbits) >> shift) >= kBuckets) shift++;
  const uint16_t* qs = q.data();
  std::vector<uint32_t>& rows = scratch->rows;
  rows.resize(n);
  auto pick_qstar = [&](size_t stride, size_t need) {
    std::vector<uint32_t>& hist = scratch->hist;
    hist.assign(kBuckets, 0);
    uint32_t* h = hist.data();
    for (size_t r = 0; r < n; r += stride) h[qs[r] >> shift]++;
    size_t cum = 0, bucket = 0;
    while (bucket + 1 < kBuckets && cum + h[bucket] < need) cum += h[bucket++];
    return static_cast<uint32_t>(((bucket + 1) << shift) - 1);
  };
  // Branch-free compaction of the rows with lo <= q <= hi into rows[0..count).
  auto collect = [&](uint32_t lo, uint32_t hi) {
    size_t c = 0;
    for (size_t r = 0; r < n; r++) {
      rows[c] = static_cast<uint32_t>(r);
      c += static_cast<uint32_t>(qs[r] - lo) <= hi - lo;
    }
    return c;
  };
  const size_t stride = std::min<size_t>(16, std::max<size_t>(1, n / (16 * k)));
  uint32_t qstar = pick_qstar(stride, (k + k / 4) / stride + 8);
  size_t count = collect(0, qstar);
  if (count < k) {
    qstar = pick_qstar(1, k);
    count = collect(0, qstar);
  }
  std::vector<Candidate>& cand = scratch->cand;
  cand.clear();
  for (size_t i = 0; i < count; i++) cand.push_back({score(rows[i]), id_of(rows[i])});
  auto by_contract = [](const Candidate& a, const Candidate& b) {
    return better(a.dis, a.id, b.dis, b.id);
  };
  // cand.size() >= k: its k-th best score is >= the true k-th score.
  std::nth_element(cand.begin(), cand.begin() + (k - 1), cand.end(), by_contract);
  const int32_t bound = qlut.bound(cand[k - 1].dis);
  if (bound > static_cast<int32_t>(qstar)) {
    const size_t more = collect(qstar + 1, static_cast<uint32_t>(bound));
    for (size_t i = 0; i < more; i++) cand.push_back({score(rows[i]), id_of(rows[i])});
  }
  std::nth_element(cand.begin(), cand.begin() + (k - 1), cand.end(), by_contract);
  for (size_t i = 0; i < k; i++) heap->push(cand[i].dis, cand[i].id);
}

}  // namespace spqindex
