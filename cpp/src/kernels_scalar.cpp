// Portable reference kernels. Inner loops run over k so the compiler can vectorise them with the
// baseline ISA while keeping the per-k summation order over d (and so bit-exact results).
#include "spqindex/simd.h"

namespace spqindex {
namespace {

void subspace_l2(const float* x, const float* ct, int K, int dsub, float* dist) {
  for (int k = 0; k < K; k++) dist[k] = 0.f;
  for (int d = 0; d < dsub; d++) {
    const float xd = x[d];
    const float* row = ct + static_cast<size_t>(d) * K;
    for (int k = 0; k < K; k++) {
      const float diff = xd - row[k];
      dist[k] += diff * diff;
    }
  }
}

void subspace_ip(const float* x, const float* ct, int K, int dsub, float* dot) {
  for (int k = 0; k < K; k++) dot[k] = 0.f;
  for (int d = 0; d < dsub; d++) {
    const float xd = x[d];
    const float* row = ct + static_cast<size_t>(d) * K;
    for (int k = 0; k < K; k++) dot[k] += xd * row[k];
  }
}


int nearest(const float* x, const float* ct, const float*, const float*, double, int K, int dsub) {
  float dist[256];
  subspace_l2(x, ct, K, dsub, dist);
  int best = 0;
  for (int k = 1; k < K; k++)
    if (dist[k] < dist[best]) best = k;  // strict: ties keep the smaller index
  return best;
}

}  // namespace

Kernels scalar_kernels() { return Kernels{SimdLevel::Scalar, subspace_l2, subspace_ip, nearest}; }

}  // namespace spqindex
