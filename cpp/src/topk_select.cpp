#include "spqindex/topk_select.h"

#include <algorithm>

#include "spqindex/error.h"

namespace spqindex {
namespace {

constexpr size_t kBuckets = 2048;

// Largest quantized sum the table allows (Σ_m max_k q[m, k]); layouts of QuantizedLut.
uint32_t max_sum(const QuantizedLut& qlut, int M, int nbits) {
  uint32_t total = 0;
  const uint8_t* t = qlut.table.data();
  for (int m = 0; m < M; m++) {
    const uint8_t* row = nbits == 8 ? t + static_cast<size_t>(m) * 256 : t + static_cast<size_t>(m / 2) * 64 + (m % 2) * 32;
    uint8_t mx = 0;
    for (int k = 0; k < (1 << nbits); k++) mx = row[k] > mx ? row[k] : mx;
    total += mx;
  }
  return total;
}

// Exact score of row j of a packed block: the float32 sum over m in order (scan.h's arithmetic),
// reading the fastscan.h block layouts.
float row_score(const float* lut, const uint8_t* blk, size_t j, int M, int nbits) {
  float d = 0.f;
  if (nbits == 4) {
    const size_t i = j % 32, pos = (j / 32) * 32 + (i < 16 ? 2 * i : 2 * (i - 16) + 1);
    for (int m = 0; m < M; m++) {
      const uint8_t byte = blk[static_cast<size_t>(m >> 1) * 64 + pos];
      d += lut[m * 16 + ((m & 1) ? (byte >> 4) : (byte & 15))];
    }
  } else {
    const size_t pos = j < 32 ? 2 * j : 2 * (j - 32) + 1;
    for (int m = 0; m < M; m++) d += lut[m * 256 + blk[static_cast<size_t>(m) * 64 + pos]];
  }
  return d;
}

}  // namespace

void select_topk(SumsKernel sums, const PackedCodes& packed, const int64_t* ids, size_t n,
                 const float* lut, const QuantizedLut& qlut, TopK* heap, SelectScratch* scratch) {
  SPQ_CHECK(qlut.ok && fastscan_layout_exists(packed.nbits) && n <= packed.n);
  const size_t nblocks = (n + kFastScanBlock - 1) / kFastScanBlock;
  if (nblocks == 0) return;
  const int M = packed.M, nbits = packed.nbits;
  std::vector<uint16_t>& q = scratch->sums;
  q.resize(nblocks * kFastScanBlock);
  sums(packed.data.data(), packed.block_bytes, M, 0, nblocks, qlut.table.data(), q.data());
  auto score = [&](size_t row) {
    return row_score(lut, packed.block(row / kFastScanBlock), row % kFastScanBlock, M, nbits);
  };
  auto id_of = [&](size_t row) { return ids ? ids[row] : static_cast<int64_t>(row); };
  const size_t k = heap->k();
  if (k >= n) {  // every row is in the result
    for (size_t r = 0; r < n; r++) heap->push(score(r), id_of(r));
    return;
  }
  // Q*: the upper edge of the first bucket where the cumulative count reaches k. Buckets of
  // 2^shift sums, shift as small as the table's largest sum allows (often 0: exact counts).
  int shift = 0;
  while ((max_sum(qlut, M, nbits) >> shift) >= kBuckets) shift++;
  std::vector<uint32_t>& hist = scratch->hist;
  // Four partial histograms: runs of equal sums would otherwise serialise on one counter.
  hist.assign(4 * kBuckets, 0);
  const uint16_t* qs = q.data();
  uint32_t* h = hist.data();
  size_t r4 = 0;
  for (; r4 + 4 <= n; r4 += 4) {
    h[qs[r4] >> shift]++;
    h[kBuckets + (qs[r4 + 1] >> shift)]++;
    h[2 * kBuckets + (qs[r4 + 2] >> shift)]++;
    h[3 * kBuckets + (qs[r4 + 3] >> shift)]++;
  }
  for (; r4 < n; r4++) h[qs[r4] >> shift]++;
  for (size_t b = 0; b < kBuckets; b++) h[b] += h[kBuckets + b] + h[2 * kBuckets + b] + h[3 * kBuckets + b];
  size_t cum = 0, bucket = 0;
  while (cum + h[bucket] < k) cum += h[bucket++];
  const uint32_t qstar = static_cast<uint32_t>(((bucket + 1) << shift) - 1);
  std::vector<Candidate>& cand = scratch->cand;
  cand.clear();
  for (size_t r = 0; r < n; r++)
    if (qs[r] <= qstar) cand.push_back({score(r), id_of(r)});
  auto by_contract = [](const Candidate& a, const Candidate& b) { return better(a.dis, a.id, b.dis, b.id); };
  // cand.size() >= k: its k-th best score is >= the true k-th score.
  std::nth_element(cand.begin(), cand.begin() + (k - 1), cand.end(), by_contract);
  const int32_t bound = qlut.bound(cand[k - 1].dis);
  if (bound > static_cast<int32_t>(qstar))
    for (size_t r = 0; r < n; r++)
      if (qs[r] > qstar && static_cast<int32_t>(qs[r]) <= bound) cand.push_back({score(r), id_of(r)});
  std::nth_element(cand.begin(), cand.begin() + (k - 1), cand.end(), by_contract);
  for (size_t i = 0; i < k; i++) heap->push(cand[i].dis, cand[i].id);
}

}  // namespace spqindex
