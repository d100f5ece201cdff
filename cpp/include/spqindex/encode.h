#pragma once
#include <cstddef>
#include <cstdint>

#include "spqindex/codebooks.h"

namespace spqindex {

/// Hard assignment: for each of the n vectors (layout (n, M*dsub)) and each sub-space m, the
/// codeword with the smallest squared L2 distance (sum of squared differences over dsub, in
/// order), ties to the smaller index. Writes n packed rows of cb.code_size() bytes.
/// Threaded over vectors.
void encode(const Codebooks& cb, const float* x, size_t n, uint8_t* codes);

/// Inverse of encode: codes -> concatenated codewords, layout (n, M*dsub).
void decode(const Codebooks& cb, const uint8_t* codes, size_t n, float* x);

}  // namespace spqindex
