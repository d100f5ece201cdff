// Portable half of the grouped 8-bit scan (grouped_scan.h): the codeword grouping, the
// group-minimum table and the reference kernel.
#include "spqindex/grouped_scan.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "spqindex/error.h"

namespace spqindex {
namespace {

constexpr int kGroupSize = 16;

// Principal axis of the codewords in idx (power iteration from a fixed start: deterministic).
std::vector<double> principal_axis(const float* rows, int dsub, const std::vector<int>& idx) {
  std::vector<double> mean(dsub, 0.0), v(dsub, 1.0), w(dsub);
  for (int k : idx)
    for (int d = 0; d < dsub; d++) mean[d] += rows[static_cast<size_t>(k) * dsub + d];
  for (double& m : mean) m /= static_cast<double>(idx.size());
  for (int it = 0; it < 30; it++) {
    std::fill(w.begin(), w.end(), 0.0);
    for (int k : idx) {
      double p = 0;
      for (int d = 0; d < dsub; d++)
        p += (rows[static_cast<size_t>(k) * dsub + d] - mean[d]) * v[d];
      for (int d = 0; d < dsub; d++)
        w[d] += p * (rows[static_cast<size_t>(k) * dsub + d] - mean[d]);
    }
    double norm = 0;
    for (double x : w) norm += x * x;
    norm = std::sqrt(norm);
    if (!(norm > 0)) break;  // all codewords equal along every direction tried
    for (int d = 0; d < dsub; d++) v[d] = w[d] / norm;
  }
  return v;
}

// Splits idx in halves along its principal axis until the parts have kGroupSize codewords.
void split(const float* rows, int dsub, std::vector<int> idx,
           std::vector<std::vector<int>>* groups) {
  if (idx.size() <= static_cast<size_t>(kGroupSize)) {
    std::sort(idx.begin(), idx.end());
    groups->push_back(std::move(idx));
    return;
  }
  const std::vector<double> axis = principal_axis(rows, dsub, idx);
  std::vector<std::pair<double, int>> proj;
  proj.reserve(idx.size());
  for (int k : idx) {
    double p = 0;
    for (int d = 0; d < dsub; d++) p += rows[static_cast<size_t>(k) * dsub + d] * axis[d];
    proj.emplace_back(p, k);
  }
  std::sort(proj.begin(), proj.end());  // ties by index
  const size_t half = proj.size() / 2;
  std::vector<int> a, b;
  for (size_t i = 0; i < proj.size(); i++) (i < half ? a : b).push_back(proj[i].second);
  split(rows, dsub, std::move(a), groups);
  split(rows, dsub, std::move(b), groups);
}

void scan8_grouped_ref(const ScanArgs& a) {
  for (size_t b = a.b0; b < a.b1; b++) {
    const uint8_t* blk = a.blocks + b * a.block_bytes;
    for (int qi = 0; qi < a.nq; qi++) {
      const int32_t bound = a.queries[qi].bound;
      if (bound < 0) continue;
      uint64_t mask = 0;
      for (int j = 0; j < 64; j++) {
        const size_t pos = j < 32 ? 2 * j : 2 * (j - 32) + 1;
        uint32_t sum = 0;
        for (int m = 0; m < a.M; m++)
          sum += a.queries[qi].qlut[m * 32 + (blk[static_cast<size_t>(m) * 64 + pos] >> 4)];
        if (static_cast<int32_t>(sum & 0xFFFF) <= bound) mask |= uint64_t{1} << j;
      }
      const uint8_t* exact = a.queries[qi].exact;
      if (exact && __builtin_popcountll(mask) >= kRefineRows) {
        for (int j = 0; j < 64; j++) {
          const size_t pos = j < 32 ? 2 * j : 2 * (j - 32) + 1;
          uint32_t sum = 0;
          for (int m = 0; m < a.M; m++)
            sum += exact[static_cast<size_t>(m) * 256 + blk[static_cast<size_t>(m) * 64 + pos]];
          if (static_cast<int32_t>(sum & 0xFFFF) > bound) mask &= ~(uint64_t{1} << j);
        }
      }
      if (mask) a.sink(a.ctx, qi, b, mask);
    }
  }
}

}  // namespace

CodeGroups group_codewords(const Codebooks& cb) {
  SPQ_CHECK_ARG(cb.nbits == 8,
                "codebooks: grouped 8-bit scan needs nbits 8, got " + std::to_string(cb.nbits));
  CodeGroups g;
  g.M = cb.M;
  g.to_internal.resize(static_cast<size_t>(cb.M) * 256);
  g.to_original.resize(static_cast<size_t>(cb.M) * 256);
  for (int m = 0; m < cb.M; m++) {
    std::vector<int> all(256);
    std::iota(all.begin(), all.end(), 0);
    std::vector<std::vector<int>> groups;
    split(cb.codeword(m, 0), cb.dsub, std::move(all), &groups);
    SPQ_CHECK(groups.size() == 16);
    for (int gi = 0; gi < 16; gi++) {
      SPQ_CHECK(groups[gi].size() == static_cast<size_t>(kGroupSize));
      for (int r = 0; r < kGroupSize; r++) {
        const int internal = gi * kGroupSize + r, original = groups[gi][r];
        g.to_internal[static_cast<size_t>(m) * 256 + original] = static_cast<uint8_t>(internal);
        g.to_original[static_cast<size_t>(m) * 256 + internal] = static_cast<uint8_t>(original);
      }
    }
  }
  return g;
}

bool groups_from_order(const uint8_t* to_internal, int M, CodeGroups* out) {
  const size_t n = static_cast<size_t>(M) * 256;
  out->M = M;
  out->to_internal.assign(to_internal, to_internal + n);
  out->to_original.assign(n, 0);
  for (int m = 0; m < M; m++) {
    bool seen[256] = {};
    for (int c = 0; c < 256; c++) {
      const uint8_t internal = to_internal[static_cast<size_t>(m) * 256 + c];
      if (seen[internal]) return false;
      seen[internal] = true;
      out->to_original[static_cast<size_t>(m) * 256 + internal] = static_cast<uint8_t>(c);
    }
  }
  return true;
}

void grouped_lut(const QuantizedLut& q, int M, GroupedLut* out) {
  SPQ_CHECK(q.ok && q.table.size() == static_cast<size_t>(M) * 256);
  out->table.assign(static_cast<size_t>(M) * 32, 0);
  for (int m = 0; m < M; m++)
    for (int gi = 0; gi < 16; gi++) {
      const uint8_t* col = q.table.data() + static_cast<size_t>(m) * 256 + gi * kGroupSize;
      const uint8_t mn = *std::min_element(col, col + kGroupSize);
      out->table[static_cast<size_t>(m) * 32 + gi] = mn;
      out->table[static_cast<size_t>(m) * 32 + 16 + gi] = mn;
    }
}

ScanKernel scan8_grouped_scalar() { return scan8_grouped_ref; }

}  // namespace spqindex
