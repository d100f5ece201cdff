// Save and load of the index file format described in io.h.
#include "spqindex/io.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <string>
#include <unordered_set>
#include <vector>

#include "spqindex/checksum.h"
#include "spqindex/codes.h"
#include "spqindex/error.h"
#include "spqindex/index.h"
#include "spqindex/io_error.h"

namespace spqindex {
namespace {

bool add_overflows(size_t a, size_t b, size_t* out) { return __builtin_add_overflow(a, b, out); }
bool mul_overflows(size_t a, size_t b, size_t* out) { return __builtin_mul_overflow(a, b, out); }
size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

/// Header fields, in file order.
struct Header {
  uint32_t dim, M, nbits, metric, flags;
  uint64_t ntotal, next_id;
};

void put_u32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
void put_u64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
uint32_t get_u32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
uint64_t get_u64(const uint8_t* p) { uint64_t v; std::memcpy(&v, p, 8); return v; }

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
  Reader(int fd, const std::string& path) : fd_(fd), path_(path) {}
  void read(void* dst, size_t len) {
    uint8_t* p = static_cast<uint8_t*>(dst);
    size_t left = len;
    while (left) {
      ssize_t r = ::read(fd_, p, std::min<size_t>(left, 1 << 24));
      if (r < 0) {
        if (errno == EINTR) continue;
        throw IoError(errno, "cannot read index file", path_);
      }
      if (r == 0) throw std::invalid_argument("index file " + path_ + ": truncated (file changed while reading?)");
      p += r;
      left -= static_cast<size_t>(r);
    }
    hash_.update(dst, len);
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

/// Parses and checks the fixed part of a file; `prefix` holds its first kCodebooksOffset bytes.
Header parse_header(const uint8_t* prefix, size_t file_bytes, const std::string& path,
                    FileLayout* layout) {
  if (std::memcmp(prefix, kMagic, 8) != 0) bad_file(path, "not an spqindex file (bad magic)");
  const uint32_t version = get_u32(prefix + 8);
  if (version != kFormatVersion)
    bad_file(path, "unsupported format version " + std::to_string(version) + " (this build reads " +
                       std::to_string(kFormatVersion) + ")");
  if (get_u32(prefix + 12) != kHeaderBytes) bad_file(path, "bad header length");
  const uint8_t* h = prefix + kHeaderOffset;
  Header hd{get_u32(h), get_u32(h + 4), get_u32(h + 8), get_u32(h + 12), get_u32(h + 16),
            get_u64(h + 20), get_u64(h + 28)};
  if (hd.M < 1 || hd.M > (1u << 16)) bad_file(path, "bad M " + std::to_string(hd.M));
  if (hd.dim < 1 || hd.dim > (1u << 24) || hd.dim % hd.M)
    bad_file(path, "bad dim " + std::to_string(hd.dim) + " for M " + std::to_string(hd.M));
  if (hd.nbits < 1 || hd.nbits > 8) bad_file(path, "bad nbits " + std::to_string(hd.nbits));
  if (hd.metric > 2) bad_file(path, "unknown metric id " + std::to_string(hd.metric));
  if (hd.flags > 2) bad_file(path, "unknown flags " + std::to_string(hd.flags));
  if (hd.next_id > static_cast<uint64_t>(INT64_MAX)) bad_file(path, "bad next id");
  try {
    *layout = file_layout(hd.dim, hd.M, hd.nbits, hd.ntotal);
  } catch (const std::invalid_argument&) {
    bad_file(path, "impossible ntotal " + std::to_string(hd.ntotal));
  }
  if (layout->file_bytes != file_bytes)
    bad_file(path, "size " + std::to_string(file_bytes) + " bytes does not match its header (" +
                       std::to_string(layout->file_bytes) + " expected): truncated or corrupted");
  return hd;
}

/// Semantic checks of the ids once the checksum has passed.
void check_ids(const int64_t* ids, size_t n, uint64_t next_id, const std::string& path) {
  bool increasing = true;
  for (size_t i = 0; i < n; i++) {
    if (ids[i] < 0 || static_cast<uint64_t>(ids[i]) >= next_id) bad_file(path, "id out of range");
    if (i && ids[i] <= ids[i - 1]) increasing = false;
  }
  if (!increasing) {
    std::unordered_set<int64_t> seen(ids, ids + n);
    if (seen.size() != n) bad_file(path, "duplicate ids");
  }
}

}  // namespace

FileLayout file_layout(uint32_t dim, uint32_t M, uint32_t nbits, uint64_t ntotal) {
  FileLayout l{};
  const size_t K = size_t{1} << nbits;
  const size_t code_size = (static_cast<size_t>(M) * nbits + 7) / 8;
  l.codebooks_bytes = 4 * K * dim;  // M * K * dsub floats; dim <= 2^24 so no overflow
  l.codes_offset = align_up(kCodebooksOffset + l.codebooks_bytes, 64);
  size_t ids_bytes, end;
  if (ntotal > (uint64_t{1} << 56) || mul_overflows(ntotal, code_size, &l.codes_bytes) ||
      add_overflows(l.codes_offset, l.codes_bytes, &end) ||
      mul_overflows(ntotal, 8, &ids_bytes))
    throw std::invalid_argument("ntotal: too large");
  l.ids_offset = align_up(end, 8);
  if (add_overflows(l.ids_offset, ids_bytes, &end) || add_overflows(end, 8, &l.file_bytes))
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

void Index::save(const std::string& path) const {
  std::shared_lock<WriterPreferringMutex> lock(mu_);
  const FileLayout layout = file_layout(dim(), cb_.M, cb_.nbits, ntotal_);
  std::string tmp = path + ".tmp-XXXXXX";
  Fd f;
  f.fd = ::mkstemp(&tmp[0]);
  if (f.fd < 0) throw IoError(errno, "cannot create temporary file next to", path);
  try {
    Writer w(f.fd, tmp);
    uint8_t prefix[kCodebooksOffset] = {};
    std::memcpy(prefix, kMagic, 8);
    put_u32(prefix + 8, kFormatVersion);
    put_u32(prefix + 12, kHeaderBytes);
    uint8_t* h = prefix + kHeaderOffset;
    put_u32(h, dim());
    put_u32(h + 4, cb_.M);
    put_u32(h + 8, cb_.nbits);
    put_u32(h + 12, static_cast<uint32_t>(metric_));
    put_u32(h + 16, static_cast<uint32_t>(id_mode_));
    put_u64(h + 20, ntotal_);
    put_u64(h + 28, static_cast<uint64_t>(next_id_));
    w.write(prefix, sizeof prefix);
    w.write(cb_.centroids.data(), layout.codebooks_bytes);
    w.zeros(layout.codes_offset - w.offset());
    w.write(codes_ptr(), layout.codes_bytes);
    w.zeros(layout.ids_offset - w.offset());
    w.write(ids_ptr(), ntotal_ * sizeof(int64_t));
    w.finish();
    SPQ_CHECK(w.offset() == layout.file_bytes);
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

std::unique_ptr<Index> Index::load(const std::string& path, bool mmap) {
  std::shared_ptr<FileMapping> mapping;
  Fd f;
  size_t file_bytes;
  uint8_t prefix[kCodebooksOffset];
  std::unique_ptr<Reader> reader;
  if (mmap) {
    mapping = std::make_shared<FileMapping>(path);
    file_bytes = mapping->size();
  } else {
    f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (f.fd < 0) throw IoError(errno, "cannot open index file", path);
    struct stat st;
    if (::fstat(f.fd, &st) != 0) throw IoError(errno, "cannot stat index file", path);
    if (!S_ISREG(st.st_mode)) throw IoError(EISDIR, "not a regular file", path);
    file_bytes = static_cast<size_t>(st.st_size);
    reader = std::make_unique<Reader>(f.fd, path);
  }
  if (file_bytes < kCodebooksOffset + 8) bad_file(path, "too short to be an index file");
  if (mapping) std::memcpy(prefix, mapping->data(), sizeof prefix);
  else reader->read(prefix, sizeof prefix);
  FileLayout layout;
  const Header hd = parse_header(prefix, file_bytes, path, &layout);
  const size_t ntotal = hd.ntotal;
  const size_t code_size = (static_cast<size_t>(hd.M) * hd.nbits + 7) / 8;

  // The file length matched the header, so every allocation below is backed by file bytes.
  std::vector<float> centroids(layout.codebooks_bytes / 4);
  std::vector<uint8_t> codes;
  std::vector<int64_t> ids;
  const uint8_t* codes_p;
  const int64_t* ids_p;
  if (mapping) {
    const uint8_t* base = mapping->data();
    std::memcpy(centroids.data(), base + kCodebooksOffset, layout.codebooks_bytes);
    const uint64_t stored = get_u64(base + file_bytes - 8);
    if (xxh64(base, file_bytes - 8) != stored) bad_file(path, "checksum mismatch (corrupted)");
    codes_p = base + layout.codes_offset;
    ids_p = reinterpret_cast<const int64_t*>(base + layout.ids_offset);
  } else {
    reader->read(centroids.data(), layout.codebooks_bytes);
    reader->skip(layout.codes_offset - kCodebooksOffset - layout.codebooks_bytes);
    codes.resize(layout.codes_bytes);
    reader->read(codes.data(), layout.codes_bytes);
    reader->skip(layout.ids_offset - layout.codes_offset - layout.codes_bytes);
    ids.resize(ntotal);
    reader->read(ids.data(), ntotal * sizeof(int64_t));
    const uint64_t computed = reader->digest();
    uint64_t stored;
    Reader tail(f.fd, path);
    tail.read(&stored, 8);
    if (computed != stored) bad_file(path, "checksum mismatch (corrupted)");
    codes_p = codes.data();
    ids_p = ids.data();
  }
  const uint32_t K = 1u << hd.nbits;
  for (float v : centroids)
    if (!std::isfinite(v)) bad_file(path, "codebooks contain NaN or Inf");
  if (!codes_valid(codes_p, ntotal, static_cast<int>(hd.M), static_cast<int>(hd.nbits)))
    bad_file(path, "codes have nonzero padding bits");
  check_ids(ids_p, ntotal, hd.next_id, path);

  Codebooks cb(static_cast<int>(hd.M), static_cast<int>(K), static_cast<int>(hd.dim / hd.M),
               centroids.data());
  auto index = std::make_unique<Index>(std::move(cb), static_cast<Metric>(hd.metric));
  index->ntotal_ = ntotal;
  index->next_id_ = static_cast<int64_t>(hd.next_id);
  index->id_mode_ = static_cast<IdMode>(hd.flags);
  (void)code_size;
  if (mapping) {
    index->mapping_ = std::move(mapping);
    index->mapped_codes_ = codes_p;
    index->mapped_ids_ = ids_p;
  } else {
    index->codes_ = std::move(codes);
    index->ids_ = std::move(ids);
  }
  return index;
}

}  // namespace spqindex
