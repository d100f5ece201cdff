#include "spqindex/codebooks.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "spqindex/error.h"

namespace spqindex {

Codebooks::Codebooks(int M_, int K_, int dsub_, const float* data) : M(M_), K(K_), dsub(dsub_) {
  SPQ_CHECK_ARG(M >= 1, "codebooks: M must be >= 1");
  SPQ_CHECK_ARG(dsub >= 1, "codebooks: dsub must be >= 1");
  SPQ_CHECK_ARG(
      K >= 2 && K <= 256 && (K & (K - 1)) == 0,
      "codebooks: K must be a power of two in 2..256 (nbits 1..8), got " + std::to_string(K));
  nbits = 0;
  while ((1 << nbits) < K) nbits++;
  const size_t count = static_cast<size_t>(M) * K * dsub;
  centroids.assign(data, data + count);
  for (size_t i = 0; i < count; i++)
    SPQ_CHECK_ARG(std::isfinite(centroids[i]), "codebooks: contains NaN or Inf");
  centroids_t.resize(count);
  for (int m = 0; m < M; m++)
    for (int k = 0; k < K; k++)
      for (int d = 0; d < dsub; d++)
        centroids_t[(static_cast<size_t>(m) * dsub + d) * K + k] = *(codeword(m, k) + d);
  norms.resize(static_cast<size_t>(M) * K);
  max_norm.assign(M, 0.0);
  for (int m = 0; m < M; m++)
    for (int k = 0; k < K; k++) {
      const float* c = codeword(m, k);
      float nf = 0.f;
      double nd = 0.0;
      for (int d = 0; d < dsub; d++) {
        nf += c[d] * c[d];
        nd += static_cast<double>(c[d]) * c[d];
      }
      norms[static_cast<size_t>(m) * K + k] = nf;
      max_norm[m] = std::max(max_norm[m], std::sqrt(nd));
    }
}

}  // namespace spqindex
