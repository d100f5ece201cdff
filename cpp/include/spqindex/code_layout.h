// The stored form of PQ codes: blocks of 64 rows. This is the one place that knows code_size and
// where row r's codes lie; everything else (scan, search, file format, merge) asks it.
//
// Block layouts (kBlockRows rows each; rows past n are zero codes; block_bytes % 64 == 0):
//   Fast4 (nbits 4): per pair p of sub-quantizers (m = 2p, 2p+1; M padded to even), 64 bytes: two
//     halves of 32 rows (rows 0..31, 32..63 of the block); in a half, byte 2i holds row i and
//     byte 2i+1 row 16+i, each byte = c[2p] | c[2p+1] << 4.            Layout: (ceil(M/2), 64)
//   Fast8 (nbits 8): per m, 64 bytes: byte 2i holds row i, byte 2i+1 row 32+i.   Layout: (M, 64)
//   Rows (other nbits): the FAISS rows (codes.h) one after another.       Layout: (64, code_size)
// An inverted-file partition is a list of such blocks, each list with its own row count.
//
// The FAISS ProductQuantizer row (codes.h) is the exchange format: put_row/get_row convert at
// that boundary and nowhere else, together with the codeword renumbering of 8-bit layouts:
// given CodeGroups (grouped_scan.h), Fast8 blocks hold internal codes (to_internal[m * 256 + c]
// for FAISS code c of sub-space m) and get_row maps them back (to_original). Every API keeps
// FAISS numbering; files store the blocks as they are, with the order (io.h).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

namespace spqindex {

struct CodeGroups;

/// Rows per stored block.
constexpr size_t kBlockRows = 64;

class CodeLayout {
 public:
  enum class Kind { Fast4, Fast8, Rows };

  /// groups: nbits 8 only, the internal codeword order of the stored bytes; nullptr: FAISS codes.
  CodeLayout(int M, int nbits, std::shared_ptr<const CodeGroups> groups = nullptr);

  int M() const { return M_; }
  int nbits() const { return nbits_; }
  Kind kind() const { return kind_; }
  /// Bytes of one FAISS row: ceil(M * nbits / 8).
  size_t code_size() const { return code_size_; }
  size_t block_bytes() const { return block_bytes_; }
  /// The internal codeword order of the stored bytes, or nullptr (FAISS numbering).
  const CodeGroups* groups() const { return groups_.get(); }
  /// Whether stored bytes mean the same codes in both layouts (blocks may be copied as bytes).
  bool same_numbering(const CodeLayout& other) const;
  /// Converts whole blocks in place between FAISS numbering and this layout's internal one
  /// (to_internal true: FAISS -> internal). No-op without groups.
  void renumber(uint8_t* blocks, size_t nblocks, bool to_internal) const;
  static size_t nblocks(size_t n) { return (n + kBlockRows - 1) / kBlockRows; }
  /// Bytes holding n rows (whole blocks). Throws std::invalid_argument on overflow.
  size_t bytes_for(size_t n) const;

  /// Writes FAISS row `src` as row `row` of the block array (the slot must be zero codes, or a
  /// row of the same layout that is overwritten: put_row clears its bits first).
  void put_row(uint8_t* blocks, size_t row, const uint8_t* src) const;
  /// Reads row `row` back into FAISS layout (code_size bytes).
  void get_row(const uint8_t* blocks, size_t row, uint8_t* dst) const;
  /// Moves row `src` onto row `dst` (dst < src; used by remove's in-place compaction).
  void move_row(uint8_t* blocks, size_t dst, size_t src) const;
  /// Sets rows [from, nblocks(from) * 64) to zero codes (the padding of the last block).
  void clear_tail(uint8_t* blocks, size_t from) const;
  /// Copies rows [src_row, src_row + n) of `src` to rows [dst_row, ...) of `dst` (whole blocks
  /// with memcpy when both start on a block boundary).
  void copy_rows(const uint8_t* src, size_t src_row, uint8_t* dst, size_t dst_row, size_t n) const;
  /// copy_rows from blocks of another layout of the same M, nbits (row by row through FAISS rows
  /// when the numbering differs).
  void copy_rows_from(const CodeLayout& src_layout, const uint8_t* src, size_t src_row,
                      uint8_t* dst, size_t dst_row, size_t n) const;
  /// True when every stored row's padding bits (and every row past n in the last block) are zero,
  /// the canonical form save writes.
  bool canonical(const uint8_t* blocks, size_t n) const;

  /// Byte offset of row j (0..63) inside one 64-byte record (Fast4 / Fast8).
  static size_t pos4(size_t j) {
    return (j / 32) * 32 + ((j % 32) < 16 ? 2 * (j % 32) : 2 * (j % 32 - 16) + 1);
  }
  static size_t pos8(size_t j) { return j < 32 ? 2 * j : 2 * (j - 32) + 1; }
  /// The row (0..63) whose code lies at byte o of a record (inverse of pos4 / pos8).
  static size_t row_at(Kind kind, size_t o) {
    if (kind == Kind::Fast8) return o % 2 ? 32 + o / 2 : o / 2;
    const size_t w = o % 32;
    return (o / 32) * 32 + (w % 2 ? 16 + w / 2 : w / 2);
  }

 private:
  int M_, nbits_;
  Kind kind_;
  size_t code_size_, block_bytes_;
  std::shared_ptr<const CodeGroups> groups_;
};

}  // namespace spqindex
