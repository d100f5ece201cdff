#pragma once
#include <cstddef>
#include <cstdint>

#include "spqindex/code_layout.h"
#include "spqindex/topk.h"

namespace spqindex {

/// ADC score of one packed code row: Σ_m lut[m, code_m], summed in order m = 0..M-1.
/// This sequential float32 sum is the reference every faster path must reproduce.
float adc_score(const float* lut, const uint8_t* code, int M, int nbits);

/// The lowest score any code can have: the sequential float32 sum of each sub-space's smallest
/// LUT entry (rounded addition is monotone in each operand, so no code's adc_score is below it).
/// lut layout (M, K).
float floor_score(const float* lut, int M, int K);

/// Scans rows [begin, end) of a packed code array (row stride code_size) against one LUT
/// (layout (M, K)) and offers (score, ids[row]) to `topk`.
void scan_codes(const float* lut, const uint8_t* codes, const int64_t* ids, size_t begin,
                size_t end, int M, int nbits, TopK& topk);

/// Scores of the kBlockRows rows of one stored block (code_layout.h), same arithmetic as
/// adc_score: the float scanner. out: kBlockRows floats.
void block_scores(const float* lut, const CodeLayout& layout, const uint8_t* block, float* out);

/// Score of row j of one stored block (same arithmetic): rescoring of fast-scan candidates.
inline float block_row_score(const float* lut, const CodeLayout& layout, const uint8_t* block,
                             size_t j) {
  const int M = layout.M();
  float d = 0.f;
  switch (layout.kind()) {
    case CodeLayout::Kind::Fast4: {
      const size_t pos = CodeLayout::pos4(j);
      for (int m = 0; m < M; m++) {
        const uint8_t byte = block[static_cast<size_t>(m >> 1) * 64 + pos];
        d += lut[m * 16 + ((m & 1) ? (byte >> 4) : (byte & 15))];
      }
      return d;
    }
    case CodeLayout::Kind::Fast8: {
      const size_t pos = CodeLayout::pos8(j);
      for (int m = 0; m < M; m++) d += lut[m * 256 + block[static_cast<size_t>(m) * 64 + pos]];
      return d;
    }
    default:
      return adc_score(lut, block + j * layout.code_size(), M, layout.nbits());
  }
}

}  // namespace spqindex
