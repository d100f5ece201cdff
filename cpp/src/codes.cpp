#include "spqindex/codes.h"

namespace spqindex {

bool codes_valid(const uint8_t* codes, size_t n, int M, int nbits) {
  const size_t bits = static_cast<size_t>(M) * nbits;
  if (bits % 8 == 0) return true;  // every bit pattern is a valid code
  const size_t code_size = (bits + 7) / 8;
  const uint8_t pad_mask = static_cast<uint8_t>(0xFF << (bits % 8));
  for (size_t i = 0; i < n; i++)
    if (codes[i * code_size + code_size - 1] & pad_mask) return false;
  return true;
}

}  // namespace spqindex
