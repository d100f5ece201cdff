#include "spqindex/scan.h"

#include "spqindex/code_layout.h"
#include "spqindex/codes.h"

namespace spqindex {
namespace {

// Offers rows [begin, end) scored by `score(row_ptr)`; the threshold is cached so that the
// common case (a candidate worse than the k-th) costs one compare.
template <typename Score>
void scan_rows(const uint8_t* codes, size_t code_size, const int64_t* ids, size_t begin, size_t end,
               TopK& topk, Score score) {
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

float floor_score(const float* lut, int M, int K) {
  float d = 0.f;
  for (int m = 0; m < M; m++) {
    const float* row = lut + static_cast<size_t>(m) * K;
    float lo = row[0];
    for (int k = 1; k < K; k++) lo = row[k] < lo ? row[k] : lo;
    d += lo;
  }
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
  const CodeLayout::Kind kind = layout.kind();
  if (kind == CodeLayout::Kind::Rows) {
    for (size_t j = 0; j < kBlockRows; j++)
      out[j] = adc_score(lut, block + j * layout.code_size(), M, layout.nbits());
    return;
  }
  // Eight bytes o..o+7 of a 64-byte record belong to eight rows; their sums stay in registers
  // while m runs in order (each row's sum is the sequential one: bit-identical to adc_score).
  for (size_t o = 0; o < 64; o += 8) {
    float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    if (kind == CodeLayout::Kind::Fast8) {
      for (int m = 0; m < M; m++) {
        const uint8_t* b = block + static_cast<size_t>(m) * 64 + o;
        const float* l = lut + m * 256;
        for (int t = 0; t < 8; t++) acc[t] += l[b[t]];
      }
    } else {
      for (int m = 0; m < M; m++) {
        const uint8_t* b = block + static_cast<size_t>(m >> 1) * 64 + o;
        const float* l = lut + m * 16;
        const int shift = (m & 1) * 4;
        for (int t = 0; t < 8; t++) acc[t] += l[(b[t] >> shift) & 15];
      }
    }
    for (size_t t = 0; t < 8; t++) out[CodeLayout::row_at(kind, o + t)] = acc[t];
  }
}

}  // namespace spqindex
