#include "spqindex/index.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <numeric>
#include <unordered_set>

#include "spqindex/codes.h"
#include "spqindex/encode.h"
#include "spqindex/error.h"
#include "spqindex/grouped_scan.h"
#include "spqindex/id_filter.h"
#include "spqindex/io.h"
#include "spqindex/search.h"

namespace spqindex {
namespace {

/// Grows a vector's capacity geometrically so that repeated appends stay amortised O(1) (the
/// capacity past the size is never touched, so it is address space, not resident memory).
template <typename T>
void reserve_for(std::vector<T>& v, size_t n) {
  if (n > v.capacity()) v.reserve(std::max(n, v.capacity() + v.capacity() / 2));
}

/// 8-bit codes are stored in the grouped internal order (grouped_scan.h) that every 8-bit kernel
/// reads; CodeLayout converts at put_row / get_row.
CodeLayout stored_layout(const Codebooks& cb) {
  return CodeLayout(
      cb.M, cb.nbits,
      cb.nbits == 8 ? std::make_shared<const CodeGroups>(group_codewords(cb)) : nullptr);
}

uint64_t new_serial() {
  static std::atomic<uint64_t> last{0};
  return ++last;
}

}  // namespace

Index::Index(Codebooks codebooks, Metric metric)
    : cb_(std::move(codebooks)),
      metric_(metric),
      layout_(stored_layout(cb_)),
      serial_(new_serial()) {}
Index::Index(Codebooks codebooks, Metric metric, CodeLayout layout)
    : cb_(std::move(codebooks)),
      metric_(metric),
      layout_(std::move(layout)),
      serial_(new_serial()) {}
Index::~Index() = default;

size_t Index::ntotal() const {
  std::shared_lock<WriterPreferringMutex> lock(mu_);
  return ntotal_;
}

int64_t Index::next_id() const {
  std::shared_lock<WriterPreferringMutex> lock(mu_);
  return next_id_;
}

bool Index::ids_stored() const {
  std::shared_lock<WriterPreferringMutex> lock(mu_);
  return ids_stored_;
}

const int64_t* Index::ids_ptr() const {
  if (!ids_stored_) return nullptr;
  return mapping_ ? mapped_ids_ : ids_.data();
}

int64_t Index::id_at(size_t row) const {
  const int64_t* ids = ids_ptr();
  return ids ? ids[row] : static_cast<int64_t>(row);
}

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

bool Index::find_row(int64_t id, size_t* row) const {
  if (!ids_stored_) {
    if (id < 0 || static_cast<uint64_t>(id) >= ntotal_) return false;
    *row = static_cast<size_t>(id);
    return true;
  }
  const auto& rows = row_of();
  auto it = rows.find(id);
  if (it == rows.end()) return false;
  *row = it->second;
  return true;
}

IdMode Index::id_mode() const {
  std::shared_lock<WriterPreferringMutex> lock(mu_);
  return id_mode_;
}

void Index::check_id_mode(const int64_t* ids, size_t n) const {
  if (ids) {
    SPQ_CHECK_ARG(
        id_mode_ != IdMode::Sequential,
        "ids: this index assigns ids itself (earlier adds gave none); call add without ids");
    check_new_ids(ids, n);
  } else {
    SPQ_CHECK_ARG(
        id_mode_ != IdMode::Explicit,
        "ids: this index holds user-given ids (earlier adds gave them); pass ids= here too");
    SPQ_CHECK_ARG(next_id_ <= INT64_MAX - 1 - static_cast<int64_t>(n), "ids: id space exhausted");
  }
}

void Index::check_new_ids(const int64_t* ids, size_t n) const {
  std::unordered_set<int64_t> seen;
  seen.reserve(n);
  size_t row;
  for (size_t i = 0; i < n; i++) {
    SPQ_CHECK_ARG(ids[i] >= 0 && ids[i] < INT64_MAX,
                  "ids: must be in 0..2^63-2, got " + std::to_string(ids[i]));
    SPQ_CHECK_ARG(seen.insert(ids[i]).second,
                  "ids: duplicate id " + std::to_string(ids[i]) + " in the batch");
    SPQ_CHECK_ARG(!find_row(ids[i], &row),
                  "ids: id " + std::to_string(ids[i]) + " is already in the index");
  }
}

void Index::materialise_ids() {
  if (ids_stored_) return;
  ids_.resize(ntotal_);
  std::iota(ids_.begin(), ids_.end(), int64_t{0});
  ids_stored_ = true;
  ids_ascending_ = true;
}

void Index::append(const uint8_t* codes, const uint8_t* blocks, const CodeLayout* src_layout,
                   size_t src_row, size_t n, const int64_t* ids) {
  if (n == 0) return;
  generation_++;  // before any change: a filter's cached masks never match a half-done append
  const size_t total = ntotal_ + n;
  // Reserve first: if memory runs out nothing has changed yet.
  reserve_for(blocks_, layout_.bytes_for(total));
  const bool store_ids = ids || ids_stored_;
  if (store_ids) reserve_for(ids_, total);
  if (row_of_valid_ && store_ids) row_of_.reserve(total);
  if (ids) materialise_ids();  // within the reserved capacity: cannot throw
  blocks_.resize(layout_.bytes_for(total));
  if (codes) {
    const size_t cs = layout_.code_size();
    for (size_t i = 0; i < n; i++) layout_.put_row(blocks_.data(), ntotal_ + i, codes + i * cs);
  } else {
    layout_.copy_rows_from(*src_layout, blocks, src_row, blocks_.data(), ntotal_, n);
  }
  layout_.clear_tail(blocks_.data(), total);
  int64_t next = next_id_;
  if (ids_stored_) {
    for (size_t i = 0; i < n; i++) {
      const int64_t id = ids ? ids[i] : next_id_ + static_cast<int64_t>(i);
      if (!ids_.empty() && ids_.back() >= id) ids_ascending_ = false;
      ids_.push_back(id);
      next = std::max(next, id + 1);
      if (row_of_valid_) {
        // A map node allocation can fail after the reserves above; the id -> row map is a
        // cache, so drop it (it is rebuilt on demand) rather than leave the rows half appended.
        try {
          row_of_.emplace(id, ntotal_ + i);
        } catch (...) {
          row_of_valid_ = false;
          row_of_.clear();
        }
      }
    }
  } else {
    next = next_id_ + static_cast<int64_t>(n);  // implicit ids: next_id_ == ntotal_
  }
  ntotal_ = total;
  next_id_ = next;
}

void Index::add(const float* x, size_t n, const int64_t* ids) {
  if (mapping_) throw ReadOnlyIndex();
  // Encoding needs no lock: it reads only the immutable codebooks.
  std::vector<uint8_t> codes(n * code_size());
  encode(cb_, x, n, codes.data());
  std::unique_lock<WriterPreferringMutex> lock(mu_);
  check_id_mode(ids, n);
  append(codes.data(), nullptr, nullptr, 0, n, ids);
  if (n) id_mode_ = ids ? IdMode::Explicit : IdMode::Sequential;
}

void Index::add_codes(const uint8_t* codes, size_t n, const int64_t* ids) {
  if (mapping_) throw ReadOnlyIndex();
  SPQ_CHECK_ARG(codes_valid(codes, n, cb_.M, cb_.nbits),
                "codes: padding bits beyond M*nbits in the last byte of a row must be zero");
  std::unique_lock<WriterPreferringMutex> lock(mu_);
  check_id_mode(ids, n);
  append(codes, nullptr, nullptr, 0, n, ids);
  if (n) id_mode_ = ids ? IdMode::Explicit : IdMode::Sequential;
}

void Index::merge_from(const Index& other, bool shift_ids) {
  if (mapping_) throw ReadOnlyIndex();
  SPQ_CHECK_ARG(&other != this, "other: cannot merge an index into itself");
  SPQ_CHECK_ARG(other.cb_.M == cb_.M && other.cb_.K == cb_.K && other.cb_.dsub == cb_.dsub &&
                    other.cb_.centroids == cb_.centroids,
                "other: codebooks differ (merging needs the same codebooks)");
  SPQ_CHECK_ARG(other.metric_ == metric_, "other: metric differs");
  // Lock in address order so that a.merge_from(b) and b.merge_from(a) cannot deadlock.
  std::unique_lock<WriterPreferringMutex> mine(mu_, std::defer_lock);
  std::shared_lock<WriterPreferringMutex> theirs(other.mu_, std::defer_lock);
  if (this < &other) {
    mine.lock();
    theirs.lock();
  } else {
    theirs.lock();
    mine.lock();
  }
  const size_t n = other.ntotal_;
  if (n == 0) return;
  SPQ_CHECK_ARG(id_mode_ == IdMode::Unset || other.id_mode_ == id_mode_,
                "other: its ids are " +
                    std::string(other.id_mode_ == IdMode::Explicit ? "user-given" : "assigned") +
                    ", this index's are not");
  const int64_t shift = shift_ids ? next_id_ : 0;
  SPQ_CHECK_ARG(other.next_id_ <= INT64_MAX - 1 - shift, "shift_ids: id space exhausted");
  const bool continues =
      !ids_stored_ && !other.ids_stored_ && shift == static_cast<int64_t>(ntotal_);
  std::vector<int64_t> ids;
  if (!continues) {
    ids.resize(n);
    for (size_t i = 0; i < n; i++) ids[i] = other.id_at(i) + shift;
    size_t row;
    for (size_t i = 0; i < n && !shift_ids; i++)
      SPQ_CHECK_ARG(!find_row(ids[i], &row),
                    "other: id " + std::to_string(ids[i]) +
                        " is in both indexes (pass shift_ids=True to renumber other's ids)");
  }
  append(nullptr, other.blocks_ptr(), &other.layout_, 0, n, continues ? nullptr : ids.data());
  next_id_ = std::max(next_id_, other.next_id_ + shift);
  id_mode_ = other.id_mode_;
}

void Index::check_k(size_t nq, int64_t k) {
  SPQ_CHECK_ARG(k >= 1, "k: must be >= 1, got " + std::to_string(k));
  constexpr uint64_t kMaxResultBytes = uint64_t{1} << 62;  // beyond any address space
  SPQ_CHECK_ARG(static_cast<uint64_t>(k) <= kMaxResultBytes / 12 / std::max<uint64_t>(nq, 1),
                "k: " + std::to_string(k) + " is too large: results of shape (" +
                    std::to_string(nq) + ", " + std::to_string(k) + ") cannot be addressed");
}

std::vector<uint64_t> Index::allow_masks(const int64_t* ids, size_t n) const {
  std::vector<uint64_t> masks(CodeLayout::nblocks(ntotal_), 0);
  size_t row;
  for (size_t i = 0; i < n; i++)
    if (find_row(ids[i], &row)) masks[row / kBlockRows] |= uint64_t{1} << (row % kBlockRows);
  return masks;
}

void Index::search_locked(const float* q, size_t nq, size_t k, float* D, int64_t* I,
                          const uint64_t* allow) const {
  BlockSource src{&layout_, blocks_ptr(), ntotal_, ids_ptr(), ids_ascending_};
  src.allow = allow;
  search_blocks(cb_, metric_, src, q, nq, k, D, I);
}

void Index::search(const float* q, size_t nq, size_t k, float* D, int64_t* I, const int64_t* allow,
                   size_t n_allow) const {
  check_k(nq, static_cast<int64_t>(k));
  std::shared_lock<WriterPreferringMutex> lock(mu_);
  if (!allow) return search_locked(q, nq, k, D, I, nullptr);
  const std::vector<uint64_t> masks = allow_masks(allow, n_allow);
  search_locked(q, nq, k, D, I, masks.data());
}

void Index::search(const float* q, size_t nq, size_t k, float* D, int64_t* I,
                   const IdFilter& filter) const {
  check_k(nq, static_cast<int64_t>(k));
  std::shared_lock<WriterPreferringMutex> lock(mu_);
  std::shared_ptr<const std::vector<uint64_t>> masks;
  {
    std::lock_guard<std::mutex> cache(filter.mu_);
    if (filter.serial_ == serial_ && filter.generation_ == generation_) masks = filter.masks_;
  }
  if (!masks) {  // built outside the filter's lock: searches of other indexes are not held up
    masks = std::make_shared<const std::vector<uint64_t>>(
        allow_masks(filter.ids_.data(), filter.ids_.size()));
    std::lock_guard<std::mutex> cache(filter.mu_);
    filter.serial_ = serial_;
    filter.generation_ = generation_;
    filter.masks_ = masks;
  }
  search_locked(q, nq, k, D, I, masks->data());
}

void Index::range_search(const float* q, size_t nq, float radius, std::vector<int64_t>* lims,
                         std::vector<float>* D, std::vector<int64_t>* I) const {
  SPQ_CHECK_ARG(std::isfinite(radius), "radius: must be finite");
  std::shared_lock<WriterPreferringMutex> lock(mu_);
  const BlockSource src{&layout_, blocks_ptr(), ntotal_, ids_ptr(), ids_ascending_};
  range_search_blocks(cb_, metric_, src, q, nq, radius, lims, D, I);
}

size_t Index::remove(const int64_t* ids, size_t n) {
  if (mapping_) throw ReadOnlyIndex();
  std::unique_lock<WriterPreferringMutex> lock(mu_);
  std::unordered_set<int64_t> doomed;
  size_t row;
  for (size_t i = 0; i < n; i++)
    if (find_row(ids[i], &row)) doomed.insert(ids[i]);
  if (doomed.empty()) return 0;
  generation_++;
  materialise_ids();  // ids stop being the row numbers
  // Compact in place: kept rows move down over the removed ones, order preserved.
  size_t kept = 0;
  for (size_t i = 0; i < ntotal_; i++) {
    if (doomed.count(ids_[i])) continue;
    if (kept != i) {
      layout_.move_row(blocks_.data(), kept, i);
      ids_[kept] = ids_[i];
    }
    kept++;
  }
  const size_t removed = ntotal_ - kept;
  layout_.clear_tail(blocks_.data(), kept);
  blocks_.resize(layout_.bytes_for(kept));
  ids_.resize(kept);
  ntotal_ = kept;
  ids_ascending_ = std::is_sorted(ids_.begin(), ids_.end()) &&
                   std::adjacent_find(ids_.begin(), ids_.end()) == ids_.end();
  std::lock_guard<std::mutex> map_lock(row_of_mu_);
  row_of_valid_ = false;
  row_of_.clear();
  return removed;
}

void Index::reconstruct(const int64_t* ids, size_t n, float* out) const {
  std::shared_lock<WriterPreferringMutex> lock(mu_);
  std::vector<size_t> where(n);
  for (size_t i = 0; i < n; i++)
    if (!find_row(ids[i], &where[i])) throw IdNotFound(ids[i]);
  std::vector<uint8_t> row(code_size());
  for (size_t i = 0; i < n; i++) {
    layout_.get_row(blocks_ptr(), where[i], row.data());
    decode(cb_, row.data(), 1, out + i * dim());
  }
}

void Index::snapshot(std::vector<uint8_t>* codes, std::vector<int64_t>* ids) const {
  std::shared_lock<WriterPreferringMutex> lock(mu_);
  if (codes) {
    const size_t cs = code_size();
    codes->resize(ntotal_ * cs);
    for (size_t i = 0; i < ntotal_; i++) layout_.get_row(blocks_ptr(), i, codes->data() + i * cs);
  }
  if (ids) {
    ids->resize(ntotal_);
    for (size_t i = 0; i < ntotal_; i++) (*ids)[i] = id_at(i);
  }
}

}  // namespace spqindex
