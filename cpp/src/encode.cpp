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

void encode_range(const Codebooks& cb, const float* x, size_t begin, size_t end, uint8_t* codes) {
  const Kernels& kern = kernels();
  const size_t cs = cb.code_size();
  const size_t D = cb.dim();
  const size_t n = end - begin;
  // Sub-space outer, vectors inner: one sub-space's codewords stay in L1 for the whole block.
  std::vector<uint8_t> assign(n * cb.M);  // Layout: (n, M)
  for (int m = 0; m < cb.M; m++) {
    const float* ct = cb.transposed(m);
    const float* rows = cb.codeword(m, 0);
    const float* norms = cb.norms_of(m);
    const float* xm = x + begin * D + static_cast<size_t>(m) * cb.dsub;
    if (kern.nearest_batch) {
      kern.nearest_batch(xm, n, D, ct, rows, norms, cb.max_norm[m], cb.K, cb.dsub,
                         assign.data() + m, cb.M);
      continue;
    }
    for (size_t i = 0; i < n; i++)
      assign[i * cb.M + m] = static_cast<uint8_t>(
          kern.nearest(xm + i * D, ct, rows, norms, cb.max_norm[m], cb.K, cb.dsub));
  }
  for (size_t i = 0; i < n; i++) {
    uint8_t* row = codes + (begin + i) * cs;
    std::memset(row, 0, cs);
    CodeWriter writer(row, cb.nbits);
    for (int m = 0; m < cb.M; m++) writer.put(assign[i * cb.M + m]);
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
