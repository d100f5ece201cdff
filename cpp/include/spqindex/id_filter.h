// A reusable filter for Index::search: the admitted ids, and the per-block row masks of the last
// index state it was applied to, so that repeated filtered searches skip the O(len) mask build.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace spqindex {

class IdFilter {
 public:
  /// ids: any int64 values (ids not in an index are ignored by its search); duplicates kept.
  IdFilter(const int64_t* ids, size_t n) : ids_(ids, ids + n) {}
  const std::vector<int64_t>& ids() const { return ids_; }

 private:
  friend class Index;
  std::vector<int64_t> ids_;
  /// The cache: masks (one word per block, bit j admits row b * 64 + j) for the index with
  /// this serial at this generation (Index::serial_, generation_; serial 0: none yet).
  mutable std::mutex mu_;
  mutable uint64_t serial_ = 0, generation_ = 0;
  mutable std::shared_ptr<const std::vector<uint64_t>> masks_;
};

}  // namespace spqindex
