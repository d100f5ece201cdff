#include "spqindex/metric.h"

#include "spqindex/error.h"

namespace spqindex {

Metric metric_from_string(const std::string& name) {
  if (name == "l2") return Metric::L2;
  if (name == "spq") return Metric::SPQ;
  if (name == "ip") return Metric::IP;
  throw std::invalid_argument("metric: expected \"l2\", \"spq\" or \"ip\", got \"" + name + "\"");
}

const char* metric_name(Metric metric) {
  switch (metric) {
    case Metric::L2:
      return "l2";
    case Metric::SPQ:
      return "spq";
    case Metric::IP:
      return "ip";
  }
  return "?";
}

}  // namespace spqindex
