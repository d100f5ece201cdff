#pragma once
#include <cstddef>
#include <cstdint>

#include "spqindex/topk.h"

namespace spqindex {

/// ADC score of one packed code row: Σ_m lut[m, code_m], summed in order m = 0..M-1.
/// This sequential float32 sum is the reference every faster path must reproduce.
float adc_score(const float* lut, const uint8_t* code, int M, int nbits);

/// Scans rows [begin, end) of a packed code array (row stride code_size) against one LUT
/// (layout (M, K)) and offers (score, ids[row]) to `topk`.
void scan_codes(const float* lut, const uint8_t* codes, const int64_t* ids, size_t begin,
                size_t end, int M, int nbits, TopK& topk);

}  // namespace spqindex
