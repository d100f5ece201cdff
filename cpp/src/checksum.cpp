#include "spqindex/checksum.h"

#include <algorithm>
#include <cstring>

namespace spqindex {
namespace {

constexpr uint64_t P1 = 0x9E3779B185EBCA87ULL;
constexpr uint64_t P2 = 0xC2B2AE3D27D4EB4FULL;
constexpr uint64_t P3 = 0x165667B19E3779F9ULL;
constexpr uint64_t P4 = 0x85EBCA77C2B2AE63ULL;
constexpr uint64_t P5 = 0x27D4EB2F165667C5ULL;

inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
inline uint64_t read64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);  // the file format is little-endian, as are supported hosts
  return v;
}
inline uint32_t read32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint64_t round(uint64_t acc, uint64_t lane) { return rotl(acc + lane * P2, 31) * P1; }
inline uint64_t merge(uint64_t h, uint64_t v) { return (h ^ round(0, v)) * P1 + P4; }

}  // namespace

XXH64::XXH64() : v_{P1 + P2, P2, 0, 0 - P1} {}

void XXH64::update(const void* data, size_t len) {
  if (len == 0) return;  // data may be null (an empty index's codes): memcpy(_, nullptr, 0) is UB
  const uint8_t* p = static_cast<const uint8_t*>(data);
  total_ += len;
  if (buffered_) {
    size_t take = std::min(len, 32 - buffered_);
    std::memcpy(buf_ + buffered_, p, take);
    buffered_ += take;
    p += take;
    len -= take;
    if (buffered_ < 32) return;
    for (int i = 0; i < 4; i++) v_[i] = round(v_[i], read64(buf_ + 8 * i));
    buffered_ = 0;
  }
  for (; len >= 32; p += 32, len -= 32)
    for (int i = 0; i < 4; i++) v_[i] = round(v_[i], read64(p + 8 * i));
  std::memcpy(buf_, p, len);
  buffered_ = len;
}

uint64_t XXH64::digest() const {
  uint64_t h;
  if (total_ >= 32) {
    h = rotl(v_[0], 1) + rotl(v_[1], 7) + rotl(v_[2], 12) + rotl(v_[3], 18);
    for (int i = 0; i < 4; i++) h = merge(h, v_[i]);
  } else {
    h = P5;  // seed 0
  }
  h += total_;
  const uint8_t* p = buf_;
  size_t len = buffered_;
  for (; len >= 8; p += 8, len -= 8) h = rotl(h ^ round(0, read64(p)), 27) * P1 + P4;
  if (len >= 4) {
    h = rotl(h ^ (static_cast<uint64_t>(read32(p)) * P1), 23) * P2 + P3;
    p += 4;
    len -= 4;
  }
  for (; len; p++, len--) h = rotl(h ^ (*p * P5), 11) * P1;
  h ^= h >> 33;
  h *= P2;
  h ^= h >> 29;
  h *= P3;
  h ^= h >> 32;
  return h;
}

}  // namespace spqindex
