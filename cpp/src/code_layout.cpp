#include "spqindex/code_layout.h"

#include <cstring>
#include <stdexcept>
#include <vector>

#include "spqindex/codes.h"
#include "spqindex/error.h"
#include "spqindex/grouped_scan.h"

namespace spqindex {

CodeLayout::CodeLayout(int M, int nbits, std::shared_ptr<const CodeGroups> groups)
    : M_(M),
      nbits_(nbits),
      kind_(nbits == 4   ? Kind::Fast4
            : nbits == 8 ? Kind::Fast8
                         : Kind::Rows),
      code_size_((static_cast<size_t>(M) * nbits + 7) / 8),
      groups_(kind_ == Kind::Fast8 ? std::move(groups) : nullptr) {
  if (groups_)
    SPQ_CHECK(groups_->M == M && groups_->to_internal.size() == static_cast<size_t>(M) * 256);
  switch (kind_) {
    case Kind::Fast4:
      block_bytes_ = static_cast<size_t>((M + 1) / 2) * 64;
      break;
    case Kind::Fast8:
      block_bytes_ = static_cast<size_t>(M) * 64;
      break;
    default:
      block_bytes_ = kBlockRows * code_size_;
      break;
  }
}

size_t CodeLayout::bytes_for(size_t n) const {
  size_t out;
  if (__builtin_mul_overflow(nblocks(n), block_bytes_, &out))
    throw std::invalid_argument("ntotal: too large");
  return out;
}

void CodeLayout::put_row(uint8_t* blocks, size_t row, const uint8_t* src) const {
  uint8_t* blk = blocks + row / kBlockRows * block_bytes_;
  const size_t j = row % kBlockRows;
  switch (kind_) {
    case Kind::Fast4: {
      // A FAISS 4-bit row already holds c[2p] | c[2p+1] << 4 in byte p (padding nibble zero).
      const size_t pos = pos4(j);
      for (size_t p = 0; p < code_size_; p++) blk[p * 64 + pos] = src[p];
      break;
    }
    case Kind::Fast8: {
      const size_t pos = pos8(j);
      const uint8_t* map = groups_ ? groups_->to_internal.data() : nullptr;
      for (int m = 0; m < M_; m++)
        blk[static_cast<size_t>(m) * 64 + pos] = map ? map[m * 256 + src[m]] : src[m];
      break;
    }
    default:
      std::memcpy(blk + j * code_size_, src, code_size_);
  }
}

void CodeLayout::get_row(const uint8_t* blocks, size_t row, uint8_t* dst) const {
  const uint8_t* blk = blocks + row / kBlockRows * block_bytes_;
  const size_t j = row % kBlockRows;
  switch (kind_) {
    case Kind::Fast4: {
      const size_t pos = pos4(j);
      for (size_t p = 0; p < code_size_; p++) dst[p] = blk[p * 64 + pos];
      break;
    }
    case Kind::Fast8: {
      const size_t pos = pos8(j);
      const uint8_t* map = groups_ ? groups_->to_original.data() : nullptr;
      for (int m = 0; m < M_; m++) {
        const uint8_t c = blk[static_cast<size_t>(m) * 64 + pos];
        dst[m] = map ? map[m * 256 + c] : c;
      }
      break;
    }
    default:
      std::memcpy(dst, blk + j * code_size_, code_size_);
  }
}

bool CodeLayout::same_numbering(const CodeLayout& other) const {
  if (!groups_ || !other.groups_) return !groups_ && !other.groups_;
  return groups_ == other.groups_ || groups_->to_internal == other.groups_->to_internal;
}

void CodeLayout::renumber(uint8_t* blocks, size_t nblocks, bool to_internal) const {
  if (!groups_) return;
  const uint8_t* map = (to_internal ? groups_->to_internal : groups_->to_original).data();
  for (size_t b = 0; b < nblocks; b++)
    for (int m = 0; m < M_; m++) {  // Fast8: record m holds sub-space m's bytes only
      uint8_t* rec = blocks + b * block_bytes_ + static_cast<size_t>(m) * 64;
      const uint8_t* t = map + m * 256;
      for (size_t i = 0; i < 64; i++) rec[i] = t[rec[i]];
    }
}

void CodeLayout::copy_rows_from(const CodeLayout& src_layout, const uint8_t* src, size_t src_row,
                                uint8_t* dst, size_t dst_row, size_t n) const {
  if (same_numbering(src_layout)) {
    copy_rows(src, src_row, dst, dst_row, n);
    return;
  }
  std::vector<uint8_t> row(code_size_);
  for (size_t i = 0; i < n; i++) {
    src_layout.get_row(src, src_row + i, row.data());
    put_row(dst, dst_row + i, row.data());
  }
}

void CodeLayout::move_row(uint8_t* blocks, size_t dst, size_t src) const {
  uint8_t row[512];
  std::vector<uint8_t> big;
  uint8_t* tmp = row;
  if (code_size_ > sizeof row) {
    big.resize(code_size_);
    tmp = big.data();
  }
  get_row(blocks, src, tmp);
  put_row(blocks, dst, tmp);
}

void CodeLayout::clear_tail(uint8_t* blocks, size_t from) const {
  const size_t end = nblocks(from) * kBlockRows;
  if (from == end) return;
  if (kind_ == Kind::Rows) {
    std::memset(blocks + from / kBlockRows * block_bytes_ + from % kBlockRows * code_size_, 0,
                (end - from) * code_size_);
    return;
  }
  std::vector<uint8_t> zero(code_size_, 0);
  for (size_t r = from; r < end; r++) put_row(blocks, r, zero.data());
}

void CodeLayout::copy_rows(const uint8_t* src, size_t src_row, uint8_t* dst, size_t dst_row,
                           size_t n) const {
  if (n == 0) return;
  if (src_row % kBlockRows == 0 && dst_row % kBlockRows == 0) {
    // Whole source blocks; the last one may carry zero padding rows, which is what dst wants.
    std::memcpy(dst + dst_row / kBlockRows * block_bytes_,
                src + src_row / kBlockRows * block_bytes_, nblocks(n) * block_bytes_);
    return;
  }
  std::vector<uint8_t> row(code_size_);
  for (size_t i = 0; i < n; i++) {
    get_row(src, src_row + i, row.data());
    put_row(dst, dst_row + i, row.data());
  }
}

bool CodeLayout::canonical(const uint8_t* blocks, size_t n) const {
  std::vector<uint8_t> row(code_size_);
  const size_t end = nblocks(n) * kBlockRows;
  for (size_t r = 0; r < end; r++) {
    get_row(blocks, r, row.data());
    if (r < n) {
      if (!codes_valid(row.data(), 1, M_, nbits_)) return false;
    } else {
      for (uint8_t b : row)
        if (b) return false;
    }
  }
  // Fast4 with odd M: the record of the missing sub-quantizer M must hold zero nibbles, which
  // get_row covers (byte p = ceil(M/2)-1 carries it as its padding nibble).
  return true;
}

}  // namespace spqindex
