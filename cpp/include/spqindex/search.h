// The search planner and the scanner it drives.
//
// Planner (search_blocks): computes the LUTs, then either splits the queries over the threads
// (many queries or a small database) or splits the database blocks of every query over them
// (few queries, large database), and merges per-task heaps. Index only locks and delegates.
// Large k (topk_select.h prefer_select_topk) without a filter: each task takes the selection
// over its rows instead of the heap scan (same results, bit for bit).
//
// Scanner (scan_topk): the exact top-k of one range of stored blocks for a group of queries, on
// one thread. Queries with a usable quantized LUT and a kernel take the fast scan (candidates
// from the SIMD kernel, rescored with the float LUT); the others take the float scan
// (block_scores). Both give the scan.h contract bit for bit. A per-block row mask (filters) or
// a fixed threshold (range search) fit in at the two places rows are offered to a heap.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "spqindex/code_layout.h"
#include "spqindex/codebooks.h"
#include "spqindex/fastscan.h"
#include "spqindex/metric.h"
#include "spqindex/topk.h"

namespace spqindex {

/// What a search reads: n rows in stored blocks and their ids.
struct BlockSource {
  const CodeLayout* layout;
  const uint8_t* blocks;
  size_t n;
  const int64_t* ids;  ///< nullptr: the id of a row is its number
  bool ids_ascending;  ///< ids increase with rows (always true for nullptr ids)
  /// Filtered search: bit j of allow[b] admits row b * 64 + j (one word per block); nullptr:
  /// every row. The top-k is then the exact top-k among the admitted rows.
  const uint64_t* allow = nullptr;
};

/// Exact top-k of nq queries (layout (nq, dim)); writes D, I of layout (nq, k), best first.
void search_blocks(const Codebooks& cb, Metric metric, const BlockSource& src, const float* q,
                   size_t nq, size_t k, float* D, int64_t* I);

/// What tasks splitting the same queries over the database share, per query.
struct SharedPruning {
  /// The lowest k-th score of a full task heap. Each is >= the global k-th score, so it prunes
  /// every task (rows with a score <= it are still offered: ties by id stay exact).
  std::atomic<float> thr{std::numeric_limits<float>::infinity()};
  /// Rows of blocks >= stop cannot enter the top-k: a task held k rows at the floor score
  /// (scan.h floor_score) before that block, and later rows can only tie them with a larger
  /// id. Used only when heaps receive rows (ids nullptr).
  std::atomic<size_t> stop{std::numeric_limits<size_t>::max()};
};

/// Exact top-k of the rows in blocks [b0, b1) (rows < n) for nq queries, on this thread.
/// luts: float LUTs (nq, M, K); qluts: their quantized forms or nullptr; kernel: nullptr takes
/// the float scan for all. heaps (nq) receive ids[row], or rows when ids is nullptr.
/// allow: per-block row masks (BlockSource::allow) or nullptr.
/// shared (nq, or nullptr): pruning shared by tasks splitting the same queries over the database.
/// With ids nullptr (rows scanned in ascending order) a query stops once its heap holds k rows at
/// the floor score: no later row can enter.
void scan_topk(ScanKernel kernel, const CodeLayout& layout, const uint8_t* blocks, size_t n,
               const int64_t* ids, const float* luts, const QuantizedLut* qluts, size_t nq,
               size_t b0, size_t b1, TopK* heaps, SharedPruning* shared = nullptr,
               const uint64_t* allow = nullptr);

/// Range search collector: every row scoring below a fixed threshold (same interface as TopK
/// for the scanner; the threshold never moves).
struct RangeHits {
  float thr;  ///< offer d <= thr; the planner passes the largest float below the radius
  std::vector<Candidate> hits;
  explicit RangeHits(float thr) : thr(thr) {}
  float threshold() const { return thr; }
  bool full() const { return true; }
  void push(float d, int64_t id) {
    if (d <= thr) hits.push_back({d, id});
  }
};

/// scan_topk with a fixed threshold: appends every hit of blocks [b0, b1) to hits (nq).
void scan_range(ScanKernel kernel, const CodeLayout& layout, const uint8_t* blocks, size_t n,
                const int64_t* ids, const float* luts, const QuantizedLut* qluts, size_t nq,
                size_t b0, size_t b1, RangeHits* hits, const uint64_t* allow = nullptr);

/// Range search in the FAISS convention: for "l2"/"spq" every row with distance < radius, for
/// "ip" every row with inner product > radius. lims (nq + 1): hits of query i are
/// [lims[i], lims[i+1]) of D and I, ordered by (distance, id) best first.
void range_search_blocks(const Codebooks& cb, Metric metric, const BlockSource& src, const float* q,
                         size_t nq, float radius, std::vector<int64_t>* lims, std::vector<float>* D,
                         std::vector<int64_t>* I);

}  // namespace spqindex
