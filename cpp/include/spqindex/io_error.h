#pragma once
#include <stdexcept>
#include <string>

namespace spqindex {

/// An operating-system error on a file (Python OSError with errno and filename).
struct IoError : std::runtime_error {
  IoError(int err, const std::string& what, const std::string& path)
      : std::runtime_error(what + " " + path), err(err), path(path) {}
  int err;
  std::string path;
};

}  // namespace spqindex
