// Exception policy of the core (one for the whole library; never `assert`, which release builds and
// `python -O` remove):
//   bad shapes / values from the caller -> std::invalid_argument (Python ValueError)
//   broken internal invariants           -> std::runtime_error with file:line (Python RuntimeError)
#pragma once
#include <stdexcept>
#include <string>

namespace spqindex {

[[noreturn]] inline void throw_internal(const char* what, const char* file, int line) {
  throw std::runtime_error(std::string("spqindex internal error: ") + what + " at " + file + ":" +
                           std::to_string(line));
}

}  // namespace spqindex

/// Caller error: the message should name the offending argument.
#define SPQ_CHECK_ARG(cond, msg)                     \
  do {                                               \
    if (!(cond)) throw std::invalid_argument((msg)); \
  } while (0)

/// Internal invariant.
#define SPQ_CHECK(cond)                                                 \
  do {                                                                  \
    if (!(cond)) ::spqindex::throw_internal(#cond, __FILE__, __LINE__); \
  } while (0)
