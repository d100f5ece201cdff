// The PQ index: codebooks, the codes in their stored block layout (code_layout.h; the only copy)
// and ids, which are stored only once they carry information: while the ids are 0..n-1 in
// storage order (ids assigned by the index, nothing removed) there is no id array.
// Thread safety: any number of concurrent searches; add/remove take the writer lock.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "spqindex/code_layout.h"
#include "spqindex/codebooks.h"
#include "spqindex/metric.h"
#include "spqindex/rwlock.h"

namespace spqindex {

class FileMapping;
class IdFilter;

/// A requested id is not in the index (Python KeyError).
struct IdNotFound : std::out_of_range {
  explicit IdNotFound(int64_t id)
      : std::out_of_range("id " + std::to_string(id) + " is not in the index"), id(id) {}
  int64_t id;
};

/// Mutation of an index whose codes are memory-mapped read-only (Python RuntimeError).
struct ReadOnlyIndex : std::runtime_error {
  ReadOnlyIndex()
      : std::runtime_error(
            "index is read-only: it was loaded with mmap=True; load it with mmap=False to modify "
            "it") {}
};

/// Whether ids are assigned by the index or given by the user; fixed by the first add and
/// never mixed afterwards (stored in the file flags).
enum class IdMode : uint32_t { Unset = 0, Sequential = 1, Explicit = 2 };

class Index {
 public:
  Index(Codebooks codebooks, Metric metric);
  ~Index();
  Index(const Index&) = delete;
  Index& operator=(const Index&) = delete;

  const Codebooks& codebooks() const { return cb_; }
  Metric metric() const { return metric_; }
  int dim() const { return cb_.dim(); }
  size_t code_size() const { return cb_.code_size(); }
  size_t ntotal() const;
  int64_t next_id() const;
  bool read_only() const { return mapping_ != nullptr; }
  IdMode id_mode() const;

  /// Encodes and appends n vectors (layout (n, dim)). ids: n unique non-negative ids not yet in
  /// the index, or nullptr for next_id() onwards. All-or-nothing.
  void add(const float* x, size_t n, const int64_t* ids);
  /// Appends n packed codes (layout (n, code_size)); same id rules as add.
  void add_codes(const uint8_t* codes, size_t n, const int64_t* ids);
  /// The rule for k (the one check of it): 1 <= k, and (nq, k) results addressable (12 bytes a
  /// slot, under 2^62 bytes). Throws std::invalid_argument naming k. The binding calls it before
  /// allocating the results; search calls it again (cheap).
  static void check_k(size_t nq, int64_t k);
  /// Exact top-k for nq queries (layout (nq, dim)). Writes D, I of layout (nq, k), best first.
  /// allow (n_allow ids, or nullptr): only these ids are candidates (unknown ids are ignored).
  void search(const float* q, size_t nq, size_t k, float* D, int64_t* I,
              const int64_t* allow = nullptr, size_t n_allow = 0) const;
  /// The same with a reusable filter: its block masks are built once per index state (any
  /// add, remove or merge starts a new one) and shared by the searches that follow.
  void search(const float* q, size_t nq, size_t k, float* D, int64_t* I,
              const IdFilter& filter) const;
  /// Every stored vector within radius of each query (FAISS convention: distance < radius for
  /// l2/spq, inner product > radius for ip); lims (nq + 1) delimit each query's hits in D, I,
  /// ordered best first, ties by id. radius must be finite.
  void range_search(const float* q, size_t nq, float radius, std::vector<int64_t>* lims,
                    std::vector<float>* D, std::vector<int64_t>* I) const;
  /// Removes the given ids (unknown ids are ignored); keeps the order of the rest.
  size_t remove(const int64_t* ids, size_t n);
  /// Decoded vectors of the given ids (layout (n, dim)); throws IdNotFound.
  void reconstruct(const int64_t* ids, size_t n, float* out) const;
  /// A consistent copy of the packed codes (FAISS layout (ntotal, code_size)) and ids (ntotal,).
  void snapshot(std::vector<uint8_t>* codes, std::vector<int64_t>* ids) const;
  /// Appends every vector of `other` (same codebooks and metric). shift_ids: other's ids are
  /// offset by next_id(); otherwise an id present in both is an error. All-or-nothing.
  void merge_from(const Index& other, bool shift_ids);
  /// True once an id array is stored (explicit ids, or ids after a remove).
  bool ids_stored() const;

  /// Atomic save (temp file, fsync, rename) in the format of io.h.
  void save(const std::string& path) const;
  /// verify: checksum and content checks (O(file)); false: header and sizes only (O(1)).
  static std::unique_ptr<Index> load(const std::string& path, bool mmap, bool verify = true);

 private:
  friend struct IndexFile;
  /// With the stored layout given (load: a mapped file keeps the FAISS numbering, so no
  /// codeword grouping is computed for it).
  Index(Codebooks codebooks, Metric metric, CodeLayout layout);
  // Callers of the helpers below hold the lock.
  const uint8_t* blocks_ptr() const { return mapping_ ? mapped_blocks_ : blocks_.data(); }
  const int64_t* ids_ptr() const;  ///< nullptr while ids are implicit (id = row)
  int64_t id_at(size_t row) const;
  bool find_row(int64_t id, size_t* row) const;
  void check_new_ids(const int64_t* ids, size_t n) const;
  void check_id_mode(const int64_t* ids, size_t n) const;
  /// Appends n rows given as FAISS rows (codes) or as stored blocks starting at row src_row
  /// (blocks); ids: explicit ids, or nullptr for next_id() onwards (shift applied by caller).
  /// (blocks of src_layout: that layout's numbering, converted when it differs from layout_).
  void append(const uint8_t* codes, const uint8_t* blocks, const CodeLayout* src_layout,
              size_t src_row, size_t n, const int64_t* ids);
  void materialise_ids();  ///< stores ids 0..n-1 (the implicit ones)
  const std::unordered_map<int64_t, size_t>& row_of() const;  // lazily built id -> row
  /// The allow masks of search (one word per block; the lock is held).
  std::vector<uint64_t> allow_masks(const int64_t* ids, size_t n) const;
  void search_locked(const float* q, size_t nq, size_t k, float* D, int64_t* I,
                     const uint64_t* allow) const;

  Codebooks cb_;
  Metric metric_;
  CodeLayout layout_;
  std::vector<uint8_t> blocks_;  ///< Layout: (nblocks(ntotal), block_bytes), code_layout.h
  std::vector<int64_t> ids_;     ///< Layout: (ntotal,) once ids_stored_, else empty
  bool ids_stored_ = false;
  bool ids_ascending_ = true;  ///< ids increase with rows (true while implicit)
  size_t ntotal_ = 0;
  int64_t next_id_ = 0;  ///< 1 + largest id ever added (ids continue from here)
  IdMode id_mode_ = IdMode::Unset;
  const uint64_t serial_;    ///< unique per Index in the process (IdFilter caches are keyed by it)
  uint64_t generation_ = 0;  ///< bumped by every change of rows (add, remove, merge)
  std::shared_ptr<FileMapping> mapping_;  ///< set when codes/ids live in a read-only mapping
  const uint8_t* mapped_blocks_ = nullptr;
  const int64_t* mapped_ids_ = nullptr;
  mutable std::unordered_map<int64_t, size_t> row_of_;
  mutable bool row_of_valid_ = false;
  mutable std::mutex row_of_mu_;
  mutable WriterPreferringMutex mu_;  ///< searches share it; add/remove take it alone
};

}  // namespace spqindex
