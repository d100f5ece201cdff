// Save and load of the index file format described in io.h.
#include "spqindex/io.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <system_error>
#include <thread>
#include <unordered_set>
#include <vector>

#include "spqindex/checksum.h"
#include "spqindex/codes.h"
#include "spqindex/error.h"
#include "spqindex/grouped_scan.h"
#include "spqindex/index.h"
#include "spqindex/io_error.h"

namespace spqindex {
namespace {

bool add_overflows(size_t a, size_t b, size_t* out) { return __builtin_add_overflow(a, b, out); }
bool mul_overflows(size_t a, size_t b, size_t* out) { return __builtin_mul_overflow(a, b, out); }
size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

/// Header fields (v1 has no flags, block rows, block bytes).
struct Header {
  uint32_t version, dim, M, nbits, metric, id_mode;
  uint64_t ntotal, next_id;
  uint32_t flags;
  bool ids_stored() const { return version == 1 || (flags & kFlagIdsStored); }
  bool grouped() const { return version != 1 && (flags & kFlagCodesGrouped); }
};

void put_u32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
void put_u64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
uint32_t get_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
uint64_t get_u64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

/// Sequential writer that hashes everything it writes.
class Writer {
 public:
  Writer(int fd, const std::string& path) : fd_(fd), path_(path) {}
  void write(const void* data, size_t len) {
    hash_.update(data, len);
    raw(data, len);
  }
  void zeros(size_t len) {
    static const uint8_t z[64] = {};
    while (len) {
      size_t n = std::min(len, sizeof z);
      write(z, n);
      len -= n;
    }
  }
  void finish() {
    uint64_t h = hash_.digest();
    raw(&h, 8);
  }
  size_t offset() const { return offset_; }

 private:
  void raw(const void* data, size_t len) {
    const uint8_t* p = static_cast<const uint8_t*>(data);
    offset_ += len;
    while (len) {
      ssize_t w = ::write(fd_, p, std::min<size_t>(len, 1 << 24));
      if (w < 0) {
        if (errno == EINTR) continue;
        throw IoError(errno, "cannot write index file", path_);
      }
      p += w;
      len -= static_cast<size_t>(w);
    }
  }
  int fd_;
  std::string path_;
  XXH64 hash_;
  size_t offset_ = 0;
};

/// Sequential reader over a file descriptor that hashes everything it reads.
class Reader {
 public:
  Reader(int fd, const std::string& path, bool hash = true)
      : fd_(fd), path_(path), hash_on_(hash) {}
  void read(void* dst, size_t len) {
    uint8_t* p = static_cast<uint8_t*>(dst);
    size_t left = len;
    while (left) {
      ssize_t r = ::read(fd_, p, std::min<size_t>(left, 1 << 24));
      if (r < 0) {
        if (errno == EINTR) continue;
        throw IoError(errno, "cannot read index file", path_);
      }
      if (r == 0)
        throw std::invalid_argument("index file " + path_ +
                                    ": truncated (file changed while reading?)");
      p += r;
      left -= static_cast<size_t>(r);
    }
    if (hash_on_) hash_.update(dst, len);
  }
  void skip(size_t len) {
    uint8_t buf[64];
    while (len) {
      size_t n = std::min(len, sizeof buf);
      read(buf, n);
      len -= n;
    }
  }
  uint64_t digest() const { return hash_.digest(); }

 private:
  int fd_;
  std::string path_;
  bool hash_on_;
  XXH64 hash_;
};

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

[[noreturn]] void bad_file(const std::string& path, const std::string& what) {
  throw std::invalid_argument("index file " + path + ": " + what);
}

/// Parses and checks the fixed part of a file; `prefix` holds its first min(64, size) bytes.
Header parse_header(const uint8_t* prefix, size_t prefix_len, size_t file_bytes,
                    const std::string& path, FileLayout* layout) {
  if (std::memcmp(prefix, kMagic, 8) != 0) bad_file(path, "not an spqindex file (bad magic)");
  Header hd{};
  hd.version = get_u32(prefix + 8);
  if (hd.version != 1 && hd.version != kFormatVersion)
    bad_file(path, "unsupported format version " + std::to_string(hd.version) +
                       " (this build reads 1 and " + std::to_string(kFormatVersion) + ")");
  const uint32_t header_bytes = hd.version == 1 ? kHeaderBytesV1 : kHeaderBytes;
  if (get_u32(prefix + 12) != header_bytes) bad_file(path, "bad header length");
  if (prefix_len < kHeaderOffset + header_bytes) bad_file(path, "too short to be an index file");
  const uint8_t* h = prefix + kHeaderOffset;
  hd.dim = get_u32(h);
  hd.M = get_u32(h + 4);
  hd.nbits = get_u32(h + 8);
  hd.metric = get_u32(h + 12);
  hd.id_mode = get_u32(h + 16);
  hd.ntotal = get_u64(h + 20);
  hd.next_id = get_u64(h + 28);
  if (hd.M < 1 || hd.M > (1u << 16)) bad_file(path, "bad M " + std::to_string(hd.M));
  if (hd.dim < 1 || hd.dim > (1u << 24) || hd.dim % hd.M)
    bad_file(path, "bad dim " + std::to_string(hd.dim) + " for M " + std::to_string(hd.M));
  if (hd.nbits < 1 || hd.nbits > 8) bad_file(path, "bad nbits " + std::to_string(hd.nbits));
  if (hd.metric > 2) bad_file(path, "unknown metric id " + std::to_string(hd.metric));
  if (hd.id_mode > 2) bad_file(path, "unknown flags (id mode " + std::to_string(hd.id_mode) + ")");
  if (hd.next_id > static_cast<uint64_t>(INT64_MAX)) bad_file(path, "bad next id");
  if (hd.version != 1) {
    hd.flags = get_u32(h + 36);
    if (hd.flags & ~(kFlagIdsStored | kFlagIdsAscending | kFlagCodesGrouped))
      bad_file(path, "unknown flags " + std::to_string(hd.flags));
    if (hd.grouped() && hd.nbits != 8)
      bad_file(path, "codes grouped flag with nbits " + std::to_string(hd.nbits));
    if (get_u32(h + 40) != kBlockRows) bad_file(path, "bad block rows");
    if (get_u32(h + 44) != CodeLayout(hd.M, hd.nbits).block_bytes())
      bad_file(path, "bad block bytes");
    // Implicit ids are the rows 0..n-1, which only assigned ids can be.
    if (!(hd.flags & kFlagIdsStored) && (hd.id_mode == 2 || hd.next_id != hd.ntotal))
      bad_file(path, "ids missing (flags say none are stored)");
  }
  if (hd.ntotal > 0 && hd.id_mode == 0) bad_file(path, "unknown flags (id mode unset with rows)");
  try {
    *layout =
        file_layout(hd.version, hd.dim, hd.M, hd.nbits, hd.ntotal, hd.ids_stored(), hd.grouped());
  } catch (const std::invalid_argument&) {
    bad_file(path, "impossible ntotal " + std::to_string(hd.ntotal));
  }
  if (layout->file_bytes != file_bytes)
    bad_file(path, "size " + std::to_string(file_bytes) + " bytes does not match its header (" +
                       std::to_string(layout->file_bytes) + " expected): truncated or corrupted");
  return hd;
}

/// Semantic checks of the ids once the checksum has passed; returns whether they ascend.
bool check_ids(const int64_t* ids, size_t n, uint64_t next_id, const std::string& path) {
  bool increasing = true;
  for (size_t i = 0; i < n; i++) {
    if (ids[i] < 0 || static_cast<uint64_t>(ids[i]) >= next_id) bad_file(path, "id out of range");
    if (i && ids[i] <= ids[i - 1]) increasing = false;
  }
  if (!increasing) {
    std::unordered_set<int64_t> seen(ids, ids + n);
    if (seen.size() != n) bad_file(path, "duplicate ids");
  }
  return increasing;
}

void check_codebooks(const std::vector<float>& centroids, const std::string& path) {
  for (float v : centroids)
    if (!std::isfinite(v)) bad_file(path, "codebooks contain NaN or Inf");
}

/// Writes a file through `body` to a temporary next to `path`, fsyncs it, renames it onto
/// `path` and fsyncs the directory: readers see the old file or the new one, never a part.
void atomic_write(const std::string& path, const std::function<void(Writer&)>& body) {
  std::string tmp = path + ".tmp-XXXXXX";
  Fd f;
  f.fd = ::mkstemp(&tmp[0]);
  if (f.fd < 0) throw IoError(errno, "cannot create temporary file next to", path);
  try {
    Writer w(f.fd, tmp);
    body(w);
    w.finish();
    if (::fchmod(f.fd, 0644) != 0) throw IoError(errno, "cannot set permissions of", tmp);
    if (::fsync(f.fd) != 0) throw IoError(errno, "cannot fsync", tmp);
    int fd = f.fd;
    f.fd = -1;
    if (::close(fd) != 0) throw IoError(errno, "cannot close", tmp);
    if (::rename(tmp.c_str(), path.c_str()) != 0) throw IoError(errno, "cannot rename onto", path);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  // Make the rename itself durable.
  std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
  if (dir.empty()) dir = "/";
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

/// Writes the v2 prefix (magic, version, header), the codebooks and, for a grouped layout, its
/// codeword order, padded to the codes. flags: the id bits (the grouped bit comes from cl).
void write_head(Writer& w, const Codebooks& cb, Metric metric, IdMode mode, uint64_t ntotal,
                uint64_t next_id, uint32_t flags, const CodeLayout& cl, const FileLayout& layout) {
  const CodeGroups* groups = cl.groups();
  if (groups) flags |= kFlagCodesGrouped;
  SPQ_CHECK(layout.order_bytes == (groups ? groups->to_internal.size() : 0));
  uint8_t prefix[kCodebooksOffset] = {};
  std::memcpy(prefix, kMagic, 8);
  put_u32(prefix + 8, kFormatVersion);
  put_u32(prefix + 12, kHeaderBytes);
  uint8_t* h = prefix + kHeaderOffset;
  put_u32(h, cb.dim());
  put_u32(h + 4, cb.M);
  put_u32(h + 8, cb.nbits);
  put_u32(h + 12, static_cast<uint32_t>(metric));
  put_u32(h + 16, static_cast<uint32_t>(mode));
  put_u64(h + 20, ntotal);
  put_u64(h + 28, next_id);
  put_u32(h + 36, flags);
  put_u32(h + 40, kBlockRows);
  put_u32(h + 44, static_cast<uint32_t>(CodeLayout(cb.M, cb.nbits).block_bytes()));
  w.write(prefix, sizeof prefix);
  w.write(cb.centroids.data(), layout.codebooks_bytes);
  if (groups) w.write(groups->to_internal.data(), layout.order_bytes);
  w.zeros(layout.codes_offset - w.offset());
}

/// Opens a file for reading: its size and first bytes.
struct OpenFile {
  Fd f;
  size_t bytes = 0;
  uint8_t prefix[kCodebooksOffset] = {};
  size_t prefix_len = 0;
};

void open_file(const std::string& path, OpenFile* of) {
  of->f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (of->f.fd < 0) throw IoError(errno, "cannot open index file", path);
  struct stat st;
  if (::fstat(of->f.fd, &st) != 0) throw IoError(errno, "cannot stat index file", path);
  if (!S_ISREG(st.st_mode)) throw IoError(EISDIR, "not a regular file", path);
  of->bytes = static_cast<size_t>(st.st_size);
}

void populate(const std::shared_ptr<FileMapping>& m, size_t offset, size_t len) {
  // Maps the pages into the page table ahead of the first search (page faults otherwise land on
  // that search). The cost depends on how the pages sit in the page cache (measured for 80 MB:
  // 0.5 ms in 2 MiB folios, as a file written by save usually is, 5 ms in 4 KiB pages; 160 MB in
  // 4 KiB pages 12-21 ms), so the opening thread does it for at most kSyncBudget, chunk by chunk,
  // and a background thread does the rest: opening stays bounded whatever the file size. A search
  // that runs beside that thread pays for it twice (it shares the cores and faults the pages the
  // thread has not reached), hence a budget that covers 150-250 MB even in 4 KiB pages. On a
  // cold page cache this is also the read-ahead. Kernels before 5.14 lack the advice: no-op.
#ifdef __linux__
  constexpr int kPopulateRead = 22;  // MADV_POPULATE_READ
  constexpr auto kSyncBudget = std::chrono::milliseconds(20);
  constexpr size_t kChunk = size_t{2} << 20;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  size_t begin = offset / page * page;
  if (begin >= m->size() || len == 0) return;
  const size_t end = std::min(m->size(), offset + len);
  uint8_t* base = const_cast<uint8_t*>(m->data());
  const auto t0 = std::chrono::steady_clock::now();
  while (begin < end && std::chrono::steady_clock::now() - t0 < kSyncBudget) {
    const size_t n = std::min(kChunk, end - begin);
    if (::madvise(base + begin, n, kPopulateRead) != 0) return;  // unsupported: faults do it
    begin += n;
  }
  if (begin >= end) return;
  try {
    std::thread([keep = m, p = base + begin, n = end - begin] {
      ::madvise(p, n, kPopulateRead);
    }).detach();
  } catch (const std::system_error&) {  // no thread available: the search faults pages in
  }
#else
  (void)m;
  (void)offset;
  (void)len;
#endif
}

}  // namespace

FileLayout file_layout(uint32_t version, uint32_t dim, uint32_t M, uint32_t nbits, uint64_t ntotal,
                       bool ids_stored, bool grouped) {
  FileLayout l{};
  const size_t K = size_t{1} << nbits;
  l.codebooks_bytes = 4 * K * dim;  // M * K * dsub floats; dim <= 2^24 so no overflow
  const size_t cb_offset = version == 1 ? kCodebooksOffsetV1 : kCodebooksOffset;
  l.order_offset = cb_offset + l.codebooks_bytes;
  l.order_bytes = grouped ? size_t{256} * M : 0;  // M <= 2^16
  l.codes_offset = align_up(l.order_offset + l.order_bytes, 64);
  size_t end;
  if (ntotal > (uint64_t{1} << 56)) throw std::invalid_argument("ntotal: too large");
  const CodeLayout cl(static_cast<int>(M), static_cast<int>(nbits));
  if (version == 1) {
    if (mul_overflows(ntotal, cl.code_size(), &l.codes_bytes))
      throw std::invalid_argument("ntotal: too large");
  } else {
    l.codes_bytes = cl.bytes_for(ntotal);
  }
  if (add_overflows(l.codes_offset, l.codes_bytes, &end) ||
      mul_overflows(ntotal, ids_stored ? 8 : 0, &l.ids_bytes))
    throw std::invalid_argument("ntotal: too large");
  l.ids_offset = version == 1 ? align_up(end, 8) : end;
  if (add_overflows(l.ids_offset, l.ids_bytes, &end) || add_overflows(end, 8, &l.file_bytes))
    throw std::invalid_argument("ntotal: too large");
  return l;
}

FileMapping::FileMapping(const std::string& path) {
  Fd f;
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0) throw IoError(errno, "cannot open index file", path);
  struct stat st;
  if (::fstat(f.fd, &st) != 0) throw IoError(errno, "cannot stat index file", path);
  if (!S_ISREG(st.st_mode)) throw IoError(EISDIR, "not a regular file", path);
  size_ = static_cast<size_t>(st.st_size);
  if (size_ == 0) bad_file(path, "empty file");
  void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, f.fd, 0);
  if (p == MAP_FAILED) throw IoError(errno, "cannot map index file", path);
  data_ = static_cast<const uint8_t*>(p);
}

FileMapping::~FileMapping() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

/// Index internals for the file code (friend of Index).
struct IndexFile {
  static const uint8_t* blocks(const Index& x) { return x.blocks_ptr(); }
  static int64_t id_at(const Index& x, size_t row) { return x.id_at(row); }
  static bool ids_stored(const Index& x) { return x.ids_stored_; }
  static bool ids_ascending(const Index& x) { return x.ids_ascending_; }
  static uint64_t next_id(const Index& x) { return static_cast<uint64_t>(x.next_id_); }
  static IdMode id_mode(const Index& x) { return x.id_mode_; }
  static const CodeLayout& layout(const Index& x) { return x.layout_; }
};

void Index::save(const std::string& path) const {
  std::shared_lock<WriterPreferringMutex> lock(mu_);
  const FileLayout layout = file_layout(kFormatVersion, dim(), cb_.M, cb_.nbits, ntotal_,
                                        ids_stored_, layout_.groups() != nullptr);
  const uint32_t flags =
      (ids_stored_ ? kFlagIdsStored : 0) | (ids_ascending_ ? kFlagIdsAscending : 0);
  atomic_write(path, [&](Writer& w) {
    write_head(w, cb_, metric_, id_mode_, ntotal_, static_cast<uint64_t>(next_id_), flags, layout_,
               layout);
    w.write(blocks_ptr(), layout.codes_bytes);  // the stored blocks as they are
    if (ids_stored_) w.write(ids_ptr(), layout.ids_bytes);
    SPQ_CHECK(w.offset() + 8 == layout.file_bytes);
  });
}

std::unique_ptr<Index> Index::load(const std::string& path, bool mmap, bool verify) {
  std::shared_ptr<FileMapping> mapping;
  OpenFile of;
  std::unique_ptr<Reader> reader;
  if (mmap) {
    mapping = std::make_shared<FileMapping>(path);
    of.bytes = mapping->size();
    of.prefix_len = std::min(of.bytes, kCodebooksOffset);
    std::memcpy(of.prefix, mapping->data(), of.prefix_len);
  } else {
    open_file(path, &of);
    reader = std::make_unique<Reader>(of.f.fd, path, verify);
    of.prefix_len = std::min(of.bytes, kCodebooksOffset);
    if (of.bytes < kCodebooksOffsetV1 + 8) bad_file(path, "too short to be an index file");
    reader->read(of.prefix, of.prefix_len);
  }
  if (of.bytes < kCodebooksOffsetV1 + 8) bad_file(path, "too short to be an index file");
  FileLayout layout;
  const Header hd = parse_header(of.prefix, of.prefix_len, of.bytes, path, &layout);
  if (hd.version == 1 && mmap)
    bad_file(path,
             "format version 1 cannot be memory-mapped (its codes are not in the search "
             "layout); load it with mmap=False, or convert it once with "
             "`spqindex upgrade OLD NEW`");
  const size_t ntotal = hd.ntotal;
  const size_t cb_offset = hd.version == 1 ? kCodebooksOffsetV1 : kCodebooksOffset;

  // The file length matched the header, so every allocation below is backed by file bytes.
  std::vector<float> centroids(layout.codebooks_bytes / 4);
  std::vector<uint8_t> order(layout.order_bytes);  // grouped files: their codeword order
  std::vector<uint8_t> codes;                      // v2: stored blocks; v1: FAISS rows
  std::vector<int64_t> ids;
  const uint8_t* codes_p;
  const int64_t* ids_p = nullptr;
  if (mapping) {
    const uint8_t* base = mapping->data();
    std::memcpy(centroids.data(), base + cb_offset, layout.codebooks_bytes);
    if (layout.order_bytes)
      std::memcpy(order.data(), base + layout.order_offset, layout.order_bytes);
    if (verify && xxh64(base, of.bytes - 8) != get_u64(base + of.bytes - 8))
      bad_file(path, "checksum mismatch (corrupted)");
    codes_p = base + layout.codes_offset;
    if (hd.ids_stored()) ids_p = reinterpret_cast<const int64_t*>(base + layout.ids_offset);
    if (!verify) populate(mapping, layout.codes_offset, layout.codes_bytes + layout.ids_bytes);
  } else {
    // The prefix read may already hold the first codebook bytes (v1: header is 12 bytes shorter).
    const size_t cb_end = cb_offset + layout.codebooks_bytes;
    const size_t have = of.prefix_len > cb_offset ? std::min(of.prefix_len, cb_end) - cb_offset : 0;
    std::memcpy(centroids.data(), of.prefix + cb_offset, have);
    reader->read(reinterpret_cast<uint8_t*>(centroids.data()) + have,
                 layout.codebooks_bytes - have);
    if (layout.order_bytes) reader->read(order.data(), layout.order_bytes);  // after the prefix
    reader->skip(layout.codes_offset - std::max(of.prefix_len, cb_end) - layout.order_bytes);
    codes.resize(layout.codes_bytes);
    reader->read(codes.data(), layout.codes_bytes);
    reader->skip(layout.ids_offset - layout.codes_offset - layout.codes_bytes);
    if (hd.ids_stored()) {
      ids.resize(ntotal);
      reader->read(ids.data(), layout.ids_bytes);
      ids_p = ids.data();
    }
    const uint64_t computed = reader->digest();
    uint64_t stored;
    Reader tail(of.f.fd, path);
    tail.read(&stored, 8);
    if (verify && computed != stored) bad_file(path, "checksum mismatch (corrupted)");
    codes_p = codes.data();
  }
  check_codebooks(centroids, path);
  // The stored numbering: the file's codeword order for grouped files, else FAISS codes.
  std::shared_ptr<CodeGroups> groups;
  if (hd.grouped()) {
    groups = std::make_shared<CodeGroups>();
    if (!groups_from_order(order.data(), static_cast<int>(hd.M), groups.get()))
      bad_file(path, "codeword order is not a permutation");
  }
  const CodeLayout cl(static_cast<int>(hd.M), static_cast<int>(hd.nbits), groups);
  bool ascending = hd.version == 1 || (hd.flags & kFlagIdsAscending);
  if (verify || hd.version == 1) {
    const bool valid = hd.version == 1 ? codes_valid(codes_p, ntotal, hd.M, hd.nbits)
                                       : cl.canonical(codes_p, ntotal);
    if (!valid) bad_file(path, "codes have nonzero padding bits");
    if (ids_p) {
      const bool asc = check_ids(ids_p, ntotal, hd.next_id, path);
      if (hd.version != 1 && asc != ((hd.flags & kFlagIdsAscending) != 0))
        bad_file(path, "ids ascending flag does not match the ids");
      ascending = asc;
    }
  }

  Codebooks cb(static_cast<int>(hd.M), 1 << hd.nbits, static_cast<int>(hd.dim / hd.M),
               centroids.data());
  // Blocks are used in the file's numbering when mapped (read-only) or grouped; the other
  // in-memory loads (v1, ungrouped 8-bit v2) are converted to this build's grouping.
  const bool as_stored = mapping || hd.grouped();
  std::unique_ptr<Index> index(as_stored
                                   ? new Index(std::move(cb), static_cast<Metric>(hd.metric), cl)
                                   : new Index(std::move(cb), static_cast<Metric>(hd.metric)));
  if (hd.version == 1) {  // converted in memory: blocks, and ids only if they carry information
    bool implicit = hd.id_mode != 2 && hd.next_id == ntotal;
    for (size_t i = 0; i < ntotal && implicit; i++) implicit = ids[i] == static_cast<int64_t>(i);
    index->append(codes.data(), nullptr, nullptr, 0, ntotal, implicit ? nullptr : ids.data());
  } else if (mapping) {
    index->mapping_ = std::move(mapping);
    index->mapped_blocks_ = codes_p;
    index->mapped_ids_ = ids_p;
    index->ids_stored_ = ids_p != nullptr;
    index->ids_ascending_ = ids_p == nullptr || ascending;
    index->ntotal_ = ntotal;
  } else {
    if (!hd.grouped()) index->layout_.renumber(codes.data(), CodeLayout::nblocks(ntotal), true);
    index->blocks_ = std::move(codes);
    index->ids_ = std::move(ids);
    index->ids_stored_ = ids_p != nullptr;
    index->ids_ascending_ = ids_p == nullptr || ascending;
    index->ntotal_ = ntotal;
  }
  index->next_id_ = static_cast<int64_t>(hd.next_id);
  index->id_mode_ = static_cast<IdMode>(hd.id_mode);
  return index;
}

FileSummary verify_file(const std::string& path) {
  OpenFile of;
  open_file(path, &of);
  uint8_t prefix[kCodebooksOffset] = {};
  const size_t len = std::min(of.bytes, kCodebooksOffset);
  Reader r(of.f.fd, path, false);
  if (of.bytes < kCodebooksOffsetV1 + 8) bad_file(path, "too short to be an index file");
  r.read(prefix, len);
  FileLayout layout;
  const Header hd = parse_header(prefix, len, of.bytes, path, &layout);
  auto index = Index::load(path, hd.version != 1, true);
  return FileSummary{hd.version, hd.dim,     hd.M,
                     hd.nbits,   hd.metric,  hd.id_mode,
                     hd.ntotal,  hd.next_id, IndexFile::ids_stored(*index)};
}

void merge_files(const std::string& out, const std::vector<std::string>& inputs, bool shift_ids) {
  SPQ_CHECK_ARG(!inputs.empty(), "inputs: at least one file is needed");
  // Pass 1: check every input (mapped, so nothing grows with n but the id set below) and
  // work out the output header as a chain of Index::merge_from calls would.
  struct Part {
    uint64_t n, shift;
  };
  std::vector<Part> parts;
  std::unique_ptr<Index> first;
  uint64_t ntotal = 0, next_id = 0;
  bool stored = false, ascending = true;
  int64_t last_id = -1;
  IdMode mode = IdMode::Unset;
  std::unordered_set<int64_t> seen;  // only without shift_ids: ids must not collide
  for (const std::string& in : inputs) {
    auto x = Index::load(in, true, true);
    if (!first) first = Index::load(in, true, false);
    SPQ_CHECK_ARG(x->codebooks().centroids == first->codebooks().centroids &&
                      x->codebooks().M == first->codebooks().M &&
                      x->codebooks().K == first->codebooks().K,
                  "inputs: " + in + " has other codebooks than " + inputs[0]);
    SPQ_CHECK_ARG(x->metric() == first->metric(), "inputs: " + in + " has another metric");
    const uint64_t n = x->ntotal();
    const uint64_t shift = shift_ids ? next_id : 0;
    parts.push_back({n, shift});
    if (n == 0) continue;
    const IdMode m = IndexFile::id_mode(*x);
    SPQ_CHECK_ARG(mode == IdMode::Unset || m == mode,
                  "inputs: " + in + " mixes user-given and assigned ids with the earlier files");
    SPQ_CHECK_ARG(IndexFile::next_id(*x) <= static_cast<uint64_t>(INT64_MAX) - 1 - shift,
                  "shift_ids: id space exhausted");
    const bool continues = !stored && !IndexFile::ids_stored(*x) && shift == ntotal;
    if (!continues) stored = true;
    for (uint64_t r = 0; r < n; r++) {
      const int64_t id = IndexFile::id_at(*x, r) + static_cast<int64_t>(shift);
      if (id <= last_id) ascending = false;
      last_id = id;
      if (!shift_ids)
        SPQ_CHECK_ARG(seen.insert(id).second,
                      "inputs: id " + std::to_string(id) + " is in more than one file");
    }
    next_id = std::max(next_id, IndexFile::next_id(*x) + shift);
    ntotal += n;
    mode = m;
  }
  seen = {};
  // The output keeps the first input's numbering; inputs in another one are converted row by row.
  const CodeLayout& cl = IndexFile::layout(*first);
  const FileLayout layout = file_layout(kFormatVersion, first->dim(), cl.M(), cl.nbits(), ntotal,
                                        stored, cl.groups() != nullptr);
  const uint32_t flags =
      (stored ? kFlagIdsStored : 0) | (stored && !ascending ? 0 : kFlagIdsAscending);
  // Pass 2: stream. Codes go through a chunk of whole output blocks.
  atomic_write(out, [&](Writer& w) {
    write_head(w, first->codebooks(), first->metric(), mode, ntotal, next_id, flags, cl, layout);
    const size_t chunk_blocks = std::max<size_t>(1, (4u << 20) / cl.block_bytes());
    std::vector<uint8_t> chunk(chunk_blocks * cl.block_bytes(), 0);
    const size_t chunk_rows = chunk_blocks * kBlockRows;
    size_t chunk_row0 = 0, out_row = 0;
    for (size_t i = 0; i < inputs.size(); i++) {
      if (parts[i].n == 0) continue;
      auto x = Index::load(inputs[i], true, false);
      size_t r = 0;
      while (r < parts[i].n) {
        const size_t take = std::min<size_t>(parts[i].n - r, chunk_row0 + chunk_rows - out_row);
        cl.copy_rows_from(IndexFile::layout(*x), IndexFile::blocks(*x), r, chunk.data(),
                          out_row - chunk_row0, take);
        r += take;
        out_row += take;
        if (out_row == chunk_row0 + chunk_rows) {
          w.write(chunk.data(), chunk.size());
          std::fill(chunk.begin(), chunk.end(), 0);
          chunk_row0 = out_row;
        }
      }
    }
    if (out_row > chunk_row0) {
      cl.clear_tail(chunk.data(), out_row - chunk_row0);
      w.write(chunk.data(), CodeLayout::nblocks(out_row - chunk_row0) * cl.block_bytes());
    }
    if (stored) {
      std::vector<int64_t> buf;
      for (size_t i = 0; i < inputs.size(); i++) {
        if (parts[i].n == 0) continue;
        auto x = Index::load(inputs[i], true, false);
        for (uint64_t r0 = 0; r0 < parts[i].n; r0 += 1 << 16) {
          const uint64_t r1 = std::min<uint64_t>(parts[i].n, r0 + (1 << 16));
          buf.resize(r1 - r0);
          for (uint64_t r = r0; r < r1; r++)
            buf[r - r0] = IndexFile::id_at(*x, r) + static_cast<int64_t>(parts[i].shift);
          w.write(buf.data(), buf.size() * 8);
        }
      }
    }
    SPQ_CHECK(w.offset() + 8 == layout.file_bytes);
  });
}

}  // namespace spqindex
