// Bit packing of PQ codes, byte-compatible with FAISS ProductQuantizer:
// code m occupies bits [m*nbits, (m+1)*nbits) of the row, least significant bit first.
#pragma once
#include <cstddef>
#include <cstdint>

namespace spqindex {

/// Reads M codes of nbits each from a packed row.
struct CodeReader {
  const uint8_t* p;
  int nbits;
  uint32_t mask;
  uint64_t acc = 0;
  int avail = 0;
  CodeReader(const uint8_t* row, int nbits) : p(row), nbits(nbits), mask((1u << nbits) - 1) {}
  uint32_t next() {
    if (avail < nbits) {
      acc |= static_cast<uint64_t>(*p++) << avail;
      avail += 8;
    }
    uint32_t c = static_cast<uint32_t>(acc) & mask;
    acc >>= nbits;
    avail -= nbits;
    return c;
  }
};

/// Writes codes into a zero-initialised packed row.
struct CodeWriter {
  uint8_t* p;
  int nbits;
  uint64_t acc = 0;
  int used = 0;
  CodeWriter(uint8_t* row, int nbits) : p(row), nbits(nbits) {}
  void put(uint32_t c) {
    acc |= static_cast<uint64_t>(c) << used;
    used += nbits;
    while (used >= 8) {
      *p++ = static_cast<uint8_t>(acc);
      acc >>= 8;
      used -= 8;
    }
  }
  /// Flushes the last partial byte (must be called once after M puts).
  void finish() {
    if (used > 0) *p = static_cast<uint8_t>(acc);
  }
};

/// True when every code in `n` rows is < 2^nbits (only padding bits of the last byte can be
/// invalid: they must be zero, as FAISS writes them). Used to validate add_codes input.
bool codes_valid(const uint8_t* codes, size_t n, int M, int nbits);

}  // namespace spqindex
