// Index file format, version 1 (little-endian):
//
//   offset  size            field
//   0       8               magic "SPQIDX\0\0"
//   8       4               u32 format version (1)
//   12      4               u32 header length (36)
//   16      36              header: u32 dim, M, nbits, metric id, flags (id mode 0..2); u64 ntotal; u64 next id
//   52      4*M*K*dsub      codebooks f32, layout (M, K, dsub)
//   ...     pad to 64       zeros
//   c       ntotal*cs       codes u8, layout (ntotal, code_size)   (c % 64 == 0, so it can be mapped)
//   ...     pad to 8        zeros
//   i       8*ntotal        ids i64
//   end-8   8               u64 XXH64 (seed 0) of every byte before it
//
// Readers check every size against the file length before allocating anything.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace spqindex {

constexpr char kMagic[8] = {'S', 'P', 'Q', 'I', 'D', 'X', '\0', '\0'};
constexpr uint32_t kFormatVersion = 1;
constexpr uint32_t kHeaderBytes = 36;
constexpr size_t kHeaderOffset = 16;
constexpr size_t kCodebooksOffset = kHeaderOffset + kHeaderBytes;

/// Where each section of a file lies, derived from the header fields.
struct FileLayout {
  size_t codebooks_bytes, codes_offset, codes_bytes, ids_offset, file_bytes;
};
/// Throws std::invalid_argument if the sizes overflow.
FileLayout file_layout(uint32_t dim, uint32_t M, uint32_t nbits, uint64_t ntotal);

/// A read-only mapping of a whole file (POSIX mmap).
class FileMapping {
 public:
  explicit FileMapping(const std::string& path);
  ~FileMapping();
  FileMapping(const FileMapping&) = delete;
  FileMapping& operator=(const FileMapping&) = delete;
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace spqindex
