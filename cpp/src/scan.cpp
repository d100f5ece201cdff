#include "spqindex/scan.h"

#include "spqindex/code_layout.h"
#include "spqindex/codes.h"

namespace spqindex {
namespace {

// Offers rows [begin, end) scored by `score(row_ptr)`; the threshold is cached so that the
// common case (a candidate worse than the k-th) costs one compare.
template <typename Score>
void scan_rows(const uint8_t* codes, size_t code_size, const int64_t* ids, size_t begin,
               size_t end, TopK& topk, Score score) {
  float thr = topk.threshold();
  for (size_t i = begin; i < end; i++) {
    const float d = score(codes + i * code_size);
    if (d <= thr) {
      topk.push(d, ids[i]);
      thr = topk.threshold();
    }
  }
}

}  // namespace

float adc_score(const float* lut, const uint8_t* code, int M, int nbits) {
  const int K = 1 << nbits;
  CodeReader reader(code, nbits);
  float d = 0.f;
  for (int m = 0; m < M; m++) d += lut[static_cast<size_t>(m) * K + reader.next()];
  return d;
}

void scan_codes(const float* lut, const uint8_t* codes, const int64_t* ids, size_t begin,
                size_t end, int M, int nbits, TopK& topk) {
  const size_t cs = (static_cast<size_t>(M) * nbits + 7) / 8;
  if (nbits == 8) {
    scan_rows(codes, cs, ids, begin, end, topk, [&](const uint8_t* c) {
      float d = 0.f;
      for (int m = 0; m < M; m++) d += lut[m * 256 + c[m]];
      return d;
    });
  } else if (nbits == 4) {
    scan_rows(codes, cs, ids, begin, end, topk, [&](const uint8_t* c) {
      float d = 0.f;
      for (int m = 0; m < M; m++) {
        const uint8_t byte = c[m >> 1];
        d += lut[m * 16 + ((m & 1) ? (byte >> 4) : (byte & 15))];
      }
      return d;
    });
  } else {
    scan_rows(codes, cs, ids, begin, end, topk,
              [&](const uint8_t* c) { return adc_score(lut, c, M, nbits); });
  }
}

void block_scores(const float* lut, const CodeLayout& layout, const uint8_t* block, float* out) {
  const int M = layout.M();
  for (size_t j = 0; j < kBlockRows; j++) out[j] = 0.f;
  switch (layout.kind()) {
    case CodeLayout::Kind::Fast4:
      // m outer, rows inner: each row's sum still runs over m in order (bit-identical).
      for (int m = 0; m < M; m++) {
        const uint8_t* rec = block + static_cast<size_t>(m >> 1) * 64;
        const float* l = lut + m * 16;
        const int shift = (m & 1) * 4;
        for (size_t j = 0; j < kBlockRows; j++)
          out[j] += l[(rec[CodeLayout::pos4(j)] >> shift) & 15];
      }
      break;
    case CodeLayout::Kind::Fast8:
      for (int m = 0; m < M; m++) {
        const uint8_t* rec = block + static_cast<size_t>(m) * 64;
        const float* l = lut + m * 256;
        for (size_t j = 0; j < kBlockRows; j++) out[j] += l[rec[CodeLayout::pos8(j)]];
      }
      break;
    default:
      for (size_t j = 0; j < kBlockRows; j++)
        out[j] = adc_score(lut, block + j * layout.code_size(), M, layout.nbits());
  }
}

}  // namespace spqindex
