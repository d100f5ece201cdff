#include "spqindex/index.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <unordered_set>

#include "spqindex/codes.h"
#include "spqindex/encode.h"
#include "spqindex/error.h"
#include "spqindex/io.h"
#include "spqindex/lut.h"
#include "spqindex/scan.h"
#include "spqindex/simd.h"
#include "spqindex/threads.h"
#include "spqindex/topk.h"

namespace spqindex {
namespace {

constexpr size_t kQueryBlock = 8;        // queries sharing one pass over a code block
constexpr size_t kCodeBlockBytes = 32768;  // code block kept in L1/L2 across those queries
constexpr size_t kMinRowsPerTask = 16384;  // below this, splitting one query is not worth it
constexpr size_t kLutTaskQueries = 16;     // queries per LUT task

}  // namespace

Index::Index(Codebooks codebooks, Metric metric) : cb_(std::move(codebooks)), metric_(metric) {}
Index::~Index() = default;

size_t Index::ntotal() const {
  std::shared_lock<WriterPreferringMutex> lock(mu_);
  return ntotal_;
}

int64_t Index::next_id() const {
  std::shared_lock<WriterPreferringMutex> lock(mu_);
  return next_id_;
}

const uint8_t* Index::codes_ptr() const { return mapping_ ? mapped_codes_ : codes_.data(); }
const int64_t* Index::ids_ptr() const { return mapping_ ? mapped_ids_ : ids_.data(); }

const std::unordered_map<int64_t, size_t>& Index::row_of() const {
  std::lock_guard<std::mutex> lock(row_of_mu_);
  if (!row_of_valid_) {
    row_of_.clear();
    row_of_.reserve(ntotal_);
    const int64_t* ids = ids_ptr();
    for (size_t i = 0; i < ntotal_; i++) row_of_.emplace(ids[i], i);
    row_of_valid_ = true;
  }
  return row_of_;
}

IdMode Index::id_mode() const {
  std::shared_lock<WriterPreferringMutex> lock(mu_);
  return id_mode_;
}

void Index::check_id_mode(const int64_t* ids, size_t n) const {
  if (ids) {
    SPQ_CHECK_ARG(id_mode_ != IdMode::Sequential,
                  "ids: this index assigns ids itself (earlier adds gave none); call add without ids");
    check_new_ids(ids, n);
  } else {
    SPQ_CHECK_ARG(id_mode_ != IdMode::Explicit,
                  "ids: this index holds user-given ids (earlier adds gave them); pass ids= here too");
    SPQ_CHECK_ARG(next_id_ <= INT64_MAX - 1 - static_cast<int64_t>(n), "ids: id space exhausted");
  }
}

void Index::check_new_ids(const int64_t* ids, size_t n) const {
  std::unordered_set<int64_t> seen;
  seen.reserve(n);
  const auto& existing = row_of();
  for (size_t i = 0; i < n; i++) {
    SPQ_CHECK_ARG(ids[i] >= 0 && ids[i] < INT64_MAX,
                  "ids: must be in 0..2^63-2, got " + std::to_string(ids[i]));
    SPQ_CHECK_ARG(seen.insert(ids[i]).second,
                  "ids: duplicate id " + std::to_string(ids[i]) + " in the batch");
    SPQ_CHECK_ARG(!existing.count(ids[i]),
                  "ids: id " + std::to_string(ids[i]) + " is already in the index");
  }
}

void Index::append(const uint8_t* codes, size_t n, const int64_t* ids) {
  const size_t cs = code_size();
  // Reserve first: if memory runs out nothing has changed yet.
  codes_.reserve(codes_.size() + n * cs);
  ids_.reserve(ids_.size() + n);
  if (row_of_valid_) row_of_.reserve(ntotal_ + n);
  codes_.insert(codes_.end(), codes, codes + n * cs);
  for (size_t i = 0; i < n; i++) {
    const int64_t id = ids ? ids[i] : next_id_ + static_cast<int64_t>(i);
    ids_.push_back(id);
    if (row_of_valid_) {
      // A map node allocation can fail after the reserves above; the id -> row map is a cache,
      // so drop it (it is rebuilt on demand) rather than leave codes_/ids_ half appended.
      try {
        row_of_.emplace(id, ntotal_ + i);
      } catch (...) {
        row_of_valid_ = false;
        row_of_.clear();
      }
    }
  }
  int64_t next = next_id_;
  for (size_t i = ntotal_; i < ntotal_ + n; i++) next = std::max(next, ids_[i] + 1);
  ntotal_ += n;
  next_id_ = next;
  if (n) id_mode_ = ids ? IdMode::Explicit : IdMode::Sequential;
}

void Index::add(const float* x, size_t n, const int64_t* ids) {
  if (mapping_) throw ReadOnlyIndex();
  // Encoding needs no lock: it reads only the immutable codebooks.
  std::vector<uint8_t> codes(n * code_size());
  encode(cb_, x, n, codes.data());
  std::unique_lock<WriterPreferringMutex> lock(mu_);
  check_id_mode(ids, n);
  append(codes.data(), n, ids);
}

void Index::add_codes(const uint8_t* codes, size_t n, const int64_t* ids) {
  if (mapping_) throw ReadOnlyIndex();
  SPQ_CHECK_ARG(codes_valid(codes, n, cb_.M, cb_.nbits),
                "codes: padding bits beyond M*nbits in the last byte of a row must be zero");
  std::unique_lock<WriterPreferringMutex> lock(mu_);
  check_id_mode(ids, n);
  append(codes, n, ids);
}

const PackedCodes& Index::packed() const {
  std::lock_guard<std::mutex> lock(packed_mu_);
  if (packed_.n != ntotal_ || packed_.M != cb_.M || packed_.nbits != cb_.nbits) {
    const size_t first = packed_.M == cb_.M && packed_.nbits == cb_.nbits ? packed_.n : 0;
    if (first == 0) packed_.ids_ascending = true;
    const int64_t* ids = ids_ptr();
    for (size_t i = std::max<size_t>(first, 1); i < ntotal_ && packed_.ids_ascending; i++)
      packed_.ids_ascending = ids[i - 1] < ids[i];
    pack_codes(codes_ptr(), ntotal_, cb_.M, cb_.nbits, &packed_);
  }
  return packed_;
}

void Index::search_fast(ScanKernel kernel, const float* q, size_t nq, size_t k, float* D,
                        int64_t* I) const {
  const PackedCodes& pc = packed();
  const size_t n = ntotal_;
  const size_t lut_size = static_cast<size_t>(cb_.M) * cb_.K;
  const bool negate = metric_is_similarity(metric_);
  const int nthreads = get_num_threads();
  std::vector<float> luts(nq * lut_size);
  std::vector<QuantizedLut> qluts(nq);
  parallel_for((nq + kLutTaskQueries - 1) / kLutTaskQueries, [&](size_t t) {
    for (size_t qi = t * kLutTaskQueries; qi < std::min(nq, (t + 1) * kLutTaskQueries); qi++) {
      compute_lut(cb_, metric_, q + qi * dim(), luts.data() + qi * lut_size);
      quantize_lut(luts.data() + qi * lut_size, cb_.M, cb_.nbits, &qluts[qi]);
    }
  });
  // With ascending ids the heaps hold rows (same order), mapped to ids once at the end.
  const int64_t* heap_ids = pc.ids_ascending ? nullptr : ids_ptr();
  auto rows_to_ids = [&](int64_t* out) {
    if (heap_ids) return;
    for (size_t j = 0; j < k; j++)
      if (out[j] >= 0) out[j] = ids_ptr()[out[j]];
  };
  const size_t nblocks = pc.nblocks();
  const size_t min_blocks = kMinRowsPerTask / kFastScanBlock;
  if (nq >= static_cast<size_t>(nthreads) || nblocks < 2 * min_blocks) {
    // Parallel over query ranges; each range scans the database chunk by chunk (fastscan_topk).
    const size_t ntasks = std::min(nq, static_cast<size_t>(nthreads) * 2);
    const size_t per = (nq + ntasks - 1) / ntasks;
    parallel_for(ntasks, [&](size_t t) {
      const size_t q0 = t * per, q1 = std::min(nq, q0 + per);
      if (q0 >= q1) return;
      std::vector<TopK> heaps(q1 - q0, TopK(k));
      fastscan_topk(kernel, pc, codes_ptr(), heap_ids, n, luts.data() + q0 * lut_size,
                    qluts.data() + q0, q1 - q0, 0, nblocks, heaps.data());
      for (size_t qi = q0; qi < q1; qi++) {
        heaps[qi - q0].write_sorted(D + qi * k, I + qi * k, negate);
        rows_to_ids(I + qi * k);
      }
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
      fastscan_topk(kernel, pc, codes_ptr(), heap_ids, n, luts.data(), qluts.data(), nq, b0, b1,
                    partial[t].data(), shared.get());
  });
  for (size_t qi = 0; qi < nq; qi++) {
    for (size_t t = 1; t < ntasks; t++) partial[0][qi].merge(partial[t][qi]);
    partial[0][qi].write_sorted(D + qi * k, I + qi * k, negate);
    rows_to_ids(I + qi * k);
  }
}

void Index::search(const float* q, size_t nq, size_t k, float* D, int64_t* I) const {
  SPQ_CHECK_ARG(k >= 1, "k: must be >= 1");
  std::shared_lock<WriterPreferringMutex> lock(mu_);
  const Kernels& kern = kernels();
  const ScanKernel fast = cb_.nbits == 4 ? kern.scan4 : cb_.nbits == 8 ? kern.scan8 : nullptr;
  if (fast && ntotal_ > 0 && nq > 0) return search_fast(fast, q, nq, k, D, I);
  const size_t n = ntotal_;
  const uint8_t* codes = codes_ptr();
  const int64_t* ids = ids_ptr();
  const size_t cs = code_size();
  const size_t D_ = dim();
  const size_t lut_size = static_cast<size_t>(cb_.M) * cb_.K;
  const bool negate = metric_is_similarity(metric_);
  const int M = cb_.M, nbits = cb_.nbits;
  const int nthreads = get_num_threads();

  if (nq >= static_cast<size_t>(nthreads) || n < 2 * kMinRowsPerTask) {
    // Parallel over query blocks; inside a block, every query scans one code block before
    // moving on, so the codes are read from memory once per block of queries.
    const size_t qblock = std::max<size_t>(1, std::min(kQueryBlock, nq / nthreads));
    const size_t rows_per_block = std::max<size_t>(32, kCodeBlockBytes / cs);
    const size_t ntasks = (nq + qblock - 1) / qblock;
    parallel_for(ntasks, [&](size_t t) {
      const size_t q0 = t * qblock, q1 = std::min(nq, q0 + qblock);
      std::vector<float> luts((q1 - q0) * lut_size);
      std::vector<TopK> heaps;
      heaps.reserve(q1 - q0);
      for (size_t qi = q0; qi < q1; qi++) {
        compute_lut(cb_, metric_, q + qi * D_, luts.data() + (qi - q0) * lut_size);
        heaps.emplace_back(k);
      }
      for (size_t r0 = 0; r0 < n; r0 += rows_per_block) {
        const size_t r1 = std::min(n, r0 + rows_per_block);
        for (size_t qi = q0; qi < q1; qi++)
          scan_codes(luts.data() + (qi - q0) * lut_size, codes, ids, r0, r1, M, nbits,
                     heaps[qi - q0]);
      }
      for (size_t qi = q0; qi < q1; qi++)
        heaps[qi - q0].write_sorted(D + qi * k, I + qi * k, negate);
    });
    return;
  }
  // Few queries, large database: each query is split over the database so every core helps.
  const size_t ntasks = std::min<size_t>(n / kMinRowsPerTask, 4 * static_cast<size_t>(nthreads));
  const size_t rows_per_task = (n + ntasks - 1) / ntasks;
  std::vector<float> lut(lut_size);
  for (size_t qi = 0; qi < nq; qi++) {
    compute_lut(cb_, metric_, q + qi * D_, lut.data());
    std::vector<TopK> partial(ntasks, TopK(k));
    parallel_for(ntasks, [&](size_t t) {
      const size_t r0 = t * rows_per_task, r1 = std::min(n, r0 + rows_per_task);
      if (r0 < r1) scan_codes(lut.data(), codes, ids, r0, r1, M, nbits, partial[t]);
    });
    for (size_t t = 1; t < ntasks; t++) partial[0].merge(partial[t]);
    partial[0].write_sorted(D + qi * k, I + qi * k, negate);
  }
}

size_t Index::remove(const int64_t* ids, size_t n) {
  if (mapping_) throw ReadOnlyIndex();
  std::unique_lock<WriterPreferringMutex> lock(mu_);
  std::unordered_set<int64_t> doomed(ids, ids + n);
  const size_t cs = code_size();
  size_t kept = 0;
  for (size_t i = 0; i < ntotal_; i++) {
    if (doomed.count(ids_[i])) continue;
    if (kept != i) {
      std::memmove(codes_.data() + kept * cs, codes_.data() + i * cs, cs);
      ids_[kept] = ids_[i];
    }
    kept++;
  }
  const size_t removed = ntotal_ - kept;
  if (removed) {
    codes_.resize(kept * cs);
    ids_.resize(kept);
    ntotal_ = kept;
    {
      std::lock_guard<std::mutex> packed_lock(packed_mu_);
      packed_.reset();
    }
    std::lock_guard<std::mutex> map_lock(row_of_mu_);
    row_of_valid_ = false;
    row_of_.clear();
  }
  return removed;
}

void Index::reconstruct(const int64_t* ids, size_t n, float* out) const {
  std::shared_lock<WriterPreferringMutex> lock(mu_);
  const auto& rows = row_of();
  const uint8_t* codes = codes_ptr();
  std::vector<size_t> where(n);
  for (size_t i = 0; i < n; i++) {
    auto it = rows.find(ids[i]);
    if (it == rows.end()) throw IdNotFound(ids[i]);
    where[i] = it->second;
  }
  for (size_t i = 0; i < n; i++)
    decode(cb_, codes + where[i] * code_size(), 1, out + i * dim());
}

void Index::snapshot(std::vector<uint8_t>* codes, std::vector<int64_t>* ids) const {
  std::shared_lock<WriterPreferringMutex> lock(mu_);
  if (codes) codes->assign(codes_ptr(), codes_ptr() + ntotal_ * code_size());
  if (ids) ids->assign(ids_ptr(), ids_ptr() + ntotal_);
}

}  // namespace spqindex
