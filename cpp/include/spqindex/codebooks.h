#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace spqindex {

/// M sub-quantizers of K = 2^nbits codewords of dsub floats each.
struct Codebooks {
  int M = 0;
  int nbits = 0;
  int K = 0;
  int dsub = 0;
  std::vector<float> centroids;    ///< Layout: (M, K, dsub)
  std::vector<float> centroids_t;  ///< Same values, layout (M, dsub, K): kernels vectorise over k
  std::vector<float> norms;        ///< ‖c‖² per codeword (float, summed in order); layout (M, K)
  std::vector<double> max_norm;    ///< max_k ‖c_mk‖ per sub-space (double); layout (M,)

  Codebooks() = default;
  /// Validates the shape (K a power of two, nbits 1..8) and that every value is finite.
  Codebooks(int M, int K, int dsub, const float* data);

  int dim() const { return M * dsub; }
  /// Bytes per encoded vector: ceil(M * nbits / 8).
  size_t code_size() const { return (static_cast<size_t>(M) * nbits + 7) / 8; }
  const float* transposed(int m) const {
    return centroids_t.data() + static_cast<size_t>(m) * dsub * K;
  }
  const float* norms_of(int m) const { return norms.data() + static_cast<size_t>(m) * K; }
  const float* codeword(int m, int k) const {
    return centroids.data() + (static_cast<size_t>(m) * K + k) * dsub;
  }
};

}  // namespace spqindex
