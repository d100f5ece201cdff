#pragma once
#include <cstdint>
#include <string>

namespace spqindex {

/// How a query sub-vector is scored against a codeword. The id is stored in index files.
enum class Metric : uint32_t {
  L2 = 0,   ///< Σ_m ‖q_m − c_m‖²      smaller is better (FAISS IndexPQ ADC)
  SPQ = 1,  ///< Σ_m ‖q_m − c_m‖       smaller is better (SPQ reference retrieval)
  IP = 2,   ///< Σ_m ⟨q_m, c_m⟩        larger is better
};

Metric metric_from_string(const std::string& name);
const char* metric_name(Metric metric);
inline bool metric_is_similarity(Metric metric) { return metric == Metric::IP; }

}  // namespace spqindex
