#include "spqindex/encode.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "spqindex/codes.h"
#include "spqindex/simd.h"
#include "spqindex/threads.h"

namespace spqindex {
namespace {

constexpr size_t kEncodeBlock = 256;  // vectors per task

void encode_range(const Codebooks& cb, const float* x, size_t begin, size_t end,
                  uint8_t* codes) {
  const Kernels& kern = kernels();
  const size_t cs = cb.code_size();
  const size_t D = cb.dim();
  std::vector<float> dist(cb.K);
  for (size_t i = begin; i < end; i++) {
    uint8_t* row = codes + i * cs;
    std::memset(row, 0, cs);
    CodeWriter writer(row, cb.nbits);
    for (int m = 0; m < cb.M; m++) {
      kern.subspace_l2(x + i * D + static_cast<size_t>(m) * cb.dsub, cb.transposed(m), cb.K,
                       cb.dsub, dist.data());
      int best = 0;
      for (int k = 1; k < cb.K; k++)
        if (dist[k] < dist[best]) best = k;  // strict: ties keep the smaller index
      writer.put(static_cast<uint32_t>(best));
    }
    writer.finish();
  }
}

}  // namespace

void encode(const Codebooks& cb, const float* x, size_t n, uint8_t* codes) {
  const size_t ntasks = (n + kEncodeBlock - 1) / kEncodeBlock;
  parallel_for(ntasks, [&](size_t t) {
    encode_range(cb, x, t * kEncodeBlock, std::min(n, (t + 1) * kEncodeBlock), codes);
  });
}

void decode(const Codebooks& cb, const uint8_t* codes, size_t n, float* x) {
  const size_t cs = cb.code_size();
  const size_t D = cb.dim();
  for (size_t i = 0; i < n; i++) {
    CodeReader reader(codes + i * cs, cb.nbits);
    for (int m = 0; m < cb.M; m++) {
      const float* c = cb.codeword(m, static_cast<int>(reader.next()));
      std::memcpy(x + i * D + static_cast<size_t>(m) * cb.dsub, c, sizeof(float) * cb.dsub);
    }
  }
}

}  // namespace spqindex
