// Streaming XXH64 (seed 0), written from the published algorithm description; used as the
// index file checksum. Tests compare it with the reference `xxhash` package.
#pragma once
#include <cstddef>
#include <cstdint>

namespace spqindex {

class XXH64 {
 public:
  XXH64();
  void update(const void* data, size_t len);
  uint64_t digest() const;

 private:
  uint64_t v_[4];
  uint8_t buf_[32];
  size_t buffered_ = 0;
  uint64_t total_ = 0;
};

inline uint64_t xxh64(const void* data, size_t len) {
  XXH64 h;
  h.update(data, len);
  return h.digest();
}

}  // namespace spqindex
