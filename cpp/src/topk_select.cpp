#include "spqindex/topk_select.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

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

// Scores as uint32 keys in the order of the floats (no NaN reaches here; -0 counts as +0, as
// float compares do).
uint32_t ordered(float f) {
  uint32_t u;
  f += 0.0f;  // -0 -> +0
  std::memcpy(&u, &f, sizeof u);
  return u & 0x80000000u ? ~u : u | 0x80000000u;
}

float from_ordered(uint32_t u) {
  u = u & 0x80000000u ? u & 0x7FFFFFFFu : ~u;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Steps 3-4 of topk_select.h over candidates of type Key ordered by `less` (the contract's
// order): the first `count` rows of `rows` (Q <= qstar) are scored, their k-th best gives the
// bound, rows with qstar < Q <= bound are added, and the k best are pushed worst first (each
// push then leaves the heap as it is: write_sorted finds them in order).
template <class Key, class Collect, class Make, class Less, class Push, class Score>
void finish_topk(size_t count, uint32_t qstar, const QuantizedLut& qlut, Collect collect,
                 const uint32_t* rows, size_t k, std::vector<Key>* keys, Make make, Less less,
                 Push push, Score dis) {
  std::vector<Key>& cand = *keys;
  cand.clear();
  for (size_t i = 0; i < count; i++) cand.push_back(make(rows[i]));
  // cand.size() >= k: its k-th best score is >= the true k-th score.
  std::nth_element(cand.begin(), cand.begin() + (k - 1), cand.end(), less);
  const int32_t bound = qlut.bound(dis(cand[k - 1]));
  if (bound > static_cast<int32_t>(qstar)) {
    const size_t more = collect(qstar + 1, static_cast<uint32_t>(bound));
    for (size_t i = 0; i < more; i++) cand.push_back(make(rows[i]));
    std::nth_element(cand.begin(), cand.begin() + (k - 1), cand.end(), less);
  }
  std::sort(cand.begin(), cand.begin() + k, less);
  for (size_t i = k; i-- > 0;) push(cand[i]);
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
  // Four histograms taken in turn (repeated buckets would chain their increments), summed
  // bucket by bucket while walking up.
  auto pick_qstar = [&](size_t stride, size_t need) {
    std::vector<uint32_t>& hist = scratch->hist;
    hist.assign(4 * kBuckets, 0);
    uint32_t* h = hist.data();
    size_t i = 0;
    for (size_t r = 0; r < n; r += stride, i++) h[(i & 3) * kBuckets + (qs[r] >> shift)]++;
    auto count = [&](size_t b) {
      return h[b] + h[kBuckets + b] + h[2 * kBuckets + b] + h[3 * kBuckets + b];
    };
    size_t cum = 0, bucket = 0;
    while (bucket + 1 < kBuckets && cum + count(bucket) < need) cum += count(bucket++);
    return static_cast<uint32_t>(((bucket + 1) << shift) - 1);
  };
  // Compaction of the rows with lo <= q <= hi into rows[0..count), branch-free per row. Most
  // rows fail q <= hi: 8 sums at a time are tested in two 64-bit words first (4 lanes each;
  // with L = hi + 1 <= 2^15 no lane borrows, and a lane's top bit of ((x | H) - L) & H is clear
  // when x < L, or for x >= 2^15, which the per-row test then rejects).
  auto collect = [&](uint32_t lo, uint32_t hi) {
    size_t c = 0, r = 0;
    auto take = [&](size_t j) {
      rows[c] = static_cast<uint32_t>(j);
      c += static_cast<uint32_t>(qs[j] - lo) <= hi - lo;
    };
    if (hi < 0x8000) {
      const uint64_t H = 0x8000800080008000ull, L = (hi + 1) * 0x0001000100010001ull;
      for (; r + 8 <= n; r += 8) {
        uint64_t a, b;
        std::memcpy(&a, qs + r, sizeof a);
        std::memcpy(&b, qs + r + 4, sizeof b);
        if ((((a | H) - L) & ((b | H) - L) & H) == H) continue;
        for (size_t j = r; j < r + 8; j++) take(j);
      }
    }
    for (; r < n; r++) take(r);
    return c;
  };
  const size_t stride = std::min<size_t>(16, std::max<size_t>(1, n / (16 * k)));
  uint32_t qstar = pick_qstar(stride, (k + k / 4) / stride + 8);
  size_t count = collect(0, qstar);
  if (count < k) {
    qstar = pick_qstar(1, k);
    count = collect(0, qstar);
  }
  if (!ids && n <= UINT32_MAX) {
    finish_topk(
        count, qstar, qlut, collect, rows.data(), k, &scratch->keys,
        [&](uint32_t r) { return (uint64_t{ordered(score(r))} << 32) | r; },
        [](uint64_t a, uint64_t b) { return a < b; },
        [&](uint64_t key) {
          heap->push(from_ordered(static_cast<uint32_t>(key >> 32)), id_of(key & UINT32_MAX));
        },
        [](uint64_t key) { return from_ordered(static_cast<uint32_t>(key >> 32)); });
  } else {
    finish_topk(
        count, qstar, qlut, collect, rows.data(), k, &scratch->cand,
        [&](uint32_t r) { return Candidate{score(r), id_of(r)}; },
        [](const Candidate& a, const Candidate& b) { return better(a.dis, a.id, b.dis, b.id); },
        [&](const Candidate& c) { heap->push(c.dis, c.id); },
        [](const Candidate& c) { return c.dis; });
  }
}

}  // namespace spqindex
