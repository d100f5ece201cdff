// Index file formats (little-endian). docs/format.md describes them byte by byte.
//
// Version 2 (written by save; its code section is the stored block layout, so a mapping of the
// file is searched in place):
//   offset  size            field
//   0       8               magic "SPQIDX\0\0"
//   8       4               u32 format version (2)
//   12      4               u32 header length (48)
//   16      48              header: u32 dim, M, nbits, metric id, id mode (0..2); u64 ntotal;
//                           u64 next id; u32 flags (bit 0: ids stored, bit 1: ids ascending,
//                           bit 2: codes grouped, nbits 8 only); u32 block rows (64); u32 block
//                           bytes
//   64      4*M*K*dsub      codebooks f32, layout (M, K, dsub)
//   o       M*256           codeword order u8, only with flag bit 2: FAISS code -> stored code,
//                           layout (M, 256), a permutation per sub-space (grouped_scan.h)
//   ...     pad to 64       zeros
//   c       nb*block bytes  codes: nb = ceil(ntotal / 64) blocks of code_layout.h (c % 64 == 0)
//   i       8*ntotal        ids i64, only with flag bit 0 (i = c + codes bytes, i % 64 == 0)
//   end-8   8               u64 XXH64 (seed 0) of every byte before it
//
// Version 1 (read only; converted in memory, cannot be mapped):
//   0       8               magic
//   8       4               u32 format version (1)
//   12      4               u32 header length (36)
//   16      36              header: u32 dim, M, nbits, metric id, flags (id mode 0..2); u64 ntotal;
//   u64 next id 52      4*M*K*dsub      codebooks f32, layout (M, K, dsub)
//   ...     pad to 64       zeros
//   c       ntotal*cs       codes u8, FAISS rows (ntotal, code_size)   (c % 64 == 0)
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
#include <vector>

namespace spqindex {

constexpr char kMagic[8] = {'S', 'P', 'Q', 'I', 'D', 'X', '\0', '\0'};
constexpr uint32_t kFormatVersion = 2;
constexpr uint32_t kHeaderBytes = 48;
constexpr uint32_t kHeaderBytesV1 = 36;
constexpr size_t kHeaderOffset = 16;
constexpr size_t kCodebooksOffset = kHeaderOffset + kHeaderBytes;  // 64
constexpr size_t kCodebooksOffsetV1 = kHeaderOffset + kHeaderBytesV1;
constexpr uint32_t kFlagIdsStored = 1, kFlagIdsAscending = 2, kFlagCodesGrouped = 4;

/// Where each section of a file lies, derived from the header fields.
struct FileLayout {
  size_t codebooks_bytes, order_offset, order_bytes, codes_offset, codes_bytes, ids_offset,
      ids_bytes, file_bytes;
};
/// Throws std::invalid_argument if the sizes overflow. v1: ids always stored, never grouped.
FileLayout file_layout(uint32_t version, uint32_t dim, uint32_t M, uint32_t nbits, uint64_t ntotal,
                       bool ids_stored, bool grouped = false);

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

/// What `spqindex verify` reports about a file that passed every check.
struct FileSummary {
  uint32_t version, dim, M, nbits, metric, id_mode;
  uint64_t ntotal, next_id;
  bool ids_stored;
};
/// Checks a file completely (checksum, header, codebooks, codes, ids) without loading it into
/// memory (v2 files are mapped; v1 files are read). Throws std::invalid_argument naming the fault.
FileSummary verify_file(const std::string& path);

/// Streams index files into one file (what Index::merge_from would give, applied in order),
/// holding one block chunk in memory; atomic like Index::save. Inputs must be version 2.
void merge_files(const std::string& out, const std::vector<std::string>& inputs, bool shift_ids);

}  // namespace spqindex
