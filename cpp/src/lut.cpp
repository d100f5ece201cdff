#include "spqindex/lut.h"

#include <cmath>

#include "spqindex/simd.h"

namespace spqindex {

void compute_lut(const Codebooks& cb, Metric metric, const float* query, float* lut) {
  const Kernels& kern = kernels();
  for (int m = 0; m < cb.M; m++) {
    const float* qm = query + static_cast<size_t>(m) * cb.dsub;
    float* row = lut + static_cast<size_t>(m) * cb.K;
    if (metric == Metric::IP) {
      kern.subspace_ip(qm, cb.transposed(m), cb.K, cb.dsub, row);
      for (int k = 0; k < cb.K; k++) row[k] = -row[k];
    } else {
      kern.subspace_l2(qm, cb.transposed(m), cb.K, cb.dsub, row);
      if (metric == Metric::SPQ)
        for (int k = 0; k < cb.K; k++) row[k] = std::sqrt(row[k]);
    }
  }
}

}  // namespace spqindex
