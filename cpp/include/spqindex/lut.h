#pragma once
#include "spqindex/codebooks.h"
#include "spqindex/metric.h"

namespace spqindex {

/// Fills the asymmetric-distance lookup table of one query.
/// Layout: lut (M, K) float32, "smaller is better" for every metric (IP entries are negated, so
/// the scan and top-k never branch on the metric). Each entry sums over dsub sequentially.
void compute_lut(const Codebooks& cb, Metric metric, const float* query, float* lut);

}  // namespace spqindex
