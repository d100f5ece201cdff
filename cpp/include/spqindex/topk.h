// k-best selection under the exact contract: order by (distance, id), smaller first.
// Distances are always "smaller is better" inside the core (the IP LUT is negated).
#pragma once
#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace spqindex {

struct Candidate {
  float dis;
  int64_t id;
};

inline bool better(float da, int64_t ia, float db, int64_t ib) {
  return da < db || (da == db && ia < ib);
}

/// Bounded max-heap keeping the k best (dis, id) pairs. The root is the worst kept pair,
/// so `threshold()` is what a new candidate must beat once the heap is full.
class TopK {
 public:
  // The heap grows as candidates arrive: a huge k over a small database must not reserve k slots.
  explicit TopK(size_t k) : k_(k) { heap_.reserve(std::min<size_t>(k, 1024)); }

  size_t k() const { return k_; }
  size_t size() const { return heap_.size(); }
  bool full() const { return heap_.size() == k_; }
  /// Worst kept distance, +inf while not full.
  float threshold() const {
    return full() ? heap_.front().dis : std::numeric_limits<float>::infinity();
  }

  /// Offers a candidate; cheap rejection first (the common case in a scan).
  void push(float dis, int64_t id) {
    if (heap_.size() < k_) {
      heap_.push_back({dis, id});
      std::push_heap(heap_.begin(), heap_.end(), worse_first);
      return;
    }
    const Candidate& w = heap_.front();
    if (!better(dis, id, w.dis, w.id)) return;
    std::pop_heap(heap_.begin(), heap_.end(), worse_first);
    heap_.back() = {dis, id};
    std::push_heap(heap_.begin(), heap_.end(), worse_first);
  }

  void merge(const TopK& other) {
    for (const Candidate& c : other.heap_) push(c.dis, c.id);
  }

  /// Writes the kept pairs best first, padding with (+inf, -1) up to k.
  /// `negate` flips distances back for similarity metrics (padding becomes -inf).
  /// Pushing worst first (select_topk) leaves the heap sorted worst first: reversed, not sorted.
  void write_sorted(float* dis, int64_t* ids, bool negate) {
    if (std::is_sorted(heap_.rbegin(), heap_.rend(), worse_first))
      std::reverse(heap_.begin(), heap_.end());
    else
      std::sort(heap_.begin(), heap_.end(), worse_first);
    const float inf = std::numeric_limits<float>::infinity();
    for (size_t i = 0; i < k_; i++) {
      if (i < heap_.size()) {
        dis[i] = negate ? -heap_[i].dis : heap_[i].dis;
        ids[i] = heap_[i].id;
      } else {
        dis[i] = negate ? -inf : inf;
        ids[i] = -1;
      }
    }
  }

 private:
  static bool worse_first(const Candidate& a, const Candidate& b) {
    return better(a.dis, a.id, b.dis, b.id);  // max-heap on (dis, id)
  }
  size_t k_;
  std::vector<Candidate> heap_;
};

}  // namespace spqindex
