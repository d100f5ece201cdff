// GpuIndex: the device-resident snapshot and the search pipeline
//   queries -> LUTs (lut_kernel) -> per-chunk top-k (scan_select_kernel) -> merge passes
//   (merge_kernel) until one list per query -> (D, I) (finish_kernel) -> host.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <mutex>
#include <numeric>
#include <vector>

#include "kernels.cuh"
#include "spqindex/cuda.h"
#include "spqindex/error.h"
#include "spqindex/index.h"

namespace spqindex {
namespace cuda {

using namespace detail;

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return 0;
  }
  return n;
}

static void check_device(int device) {
  const int n = device_count();
  if (n == 0) throw std::runtime_error("no CUDA device is available (driver missing or no GPU)");
  if (device < 0 || device >= n)
    throw std::invalid_argument("device: expected 0.." + std::to_string(n - 1) + ", got " +
                                std::to_string(device));
}

DeviceInfo device_info(int device) {
  check_device(device);
  DeviceInfo info{};
  cudaDeviceProp prop{};
  SPQ_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  std::snprintf(info.name, sizeof(info.name), "%s", prop.name);
  info.sm_count = prop.multiProcessorCount;
  int clock_khz = 0, bus_bits = 0;
  // The cudaDeviceProp fields for these were removed in CUDA 13; the attributes remain.
  if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device) != cudaSuccess) {
    cudaGetLastError();
    clock_khz = bus_bits = 0;
  }
  info.peak_bandwidth_gbs = 2.0 * clock_khz * 1e3 * (bus_bits / 8.0) / 1e9;  // DDR: 2 per clock
  return info;
}

namespace {

/// Restores the caller's current device (torch and others rely on it).
struct DeviceGuard {
  int prev = 0;
  explicit DeviceGuard(int device) {
    SPQ_CUDA_CHECK(cudaGetDevice(&prev));
    if (prev != device) SPQ_CUDA_CHECK(cudaSetDevice(device));
  }
  ~DeviceGuard() { cudaSetDevice(prev); }
};

/// Grow-only device allocation.
template <typename T>
struct DeviceBuffer {
  T* ptr = nullptr;
  size_t cap = 0;
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr) cudaFree(ptr);
  }
  T* reserve(size_t n) {
    if (n > cap) {
      if (ptr) SPQ_CUDA_CHECK(cudaFree(ptr));
      ptr = nullptr;
      cap = 0;
      SPQ_CUDA_CHECK(cudaMalloc(&ptr, std::max<size_t>(n, 1) * sizeof(T)));
      cap = n;
    }
    return ptr;
  }
  void upload(const T* host, size_t n, cudaStream_t s) {
    reserve(n);
    if (n) SPQ_CUDA_CHECK(cudaMemcpyAsync(ptr, host, n * sizeof(T), cudaMemcpyHostToDevice, s));
  }
};

cudaStream_t producer_stream(uintptr_t s) {
  if (s == 1) return cudaStreamLegacy;
  if (s == 2) return cudaStreamPerThread;
  return reinterpret_cast<cudaStream_t>(s);
}

constexpr size_t kCandidateBudgetBytes = size_t(512) << 20;  // temporary keys per query batch
constexpr size_t kL2ChunkBytes = size_t(8) << 20;            // codes per chunk when nq > 1
constexpr size_t kHostQueryBatch = 4096;                     // host queries uploaded at once

}  // namespace

struct GpuIndex::Impl {
  int device = 0;
  Codebooks cb;
  Metric metric = Metric::L2;
  size_t n = 0;
  size_t plane = 0;
  int nplanes = 0;
  int sm_count = 1;
  size_t smem_limit = 0;
  float last_ms = 0.f;

  DeviceBuffer<uint32_t> words;     ///< Layout: (nplanes, plane), see DeviceCodes
  DeviceBuffer<int64_t> ids;        ///< Layout: (n,) ascending: row order is id order
  DeviceBuffer<float> centroids;    ///< Layout: (M, K, dsub)
  DeviceBuffer<float> centroids_t;  ///< Layout: (M, dsub, K)
  // Workspace, reused across searches (guarded by mu).
  DeviceBuffer<float> queries, luts, D;
  DeviceBuffer<int64_t> I;
  DeviceBuffer<uint64_t> keys_a, keys_b;
  DeviceBuffer<uint8_t> codes_out;
  DeviceBuffer<int> flag;
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr, producer = nullptr;
  std::mutex mu;

  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl() {  // the caller made `device` current; buffers free themselves after this body
    if (stream) cudaStreamSynchronize(stream);
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
    if (producer) cudaEventDestroy(producer);
    if (stream) cudaStreamDestroy(stream);
  }

  /// Dynamic shared memory of a scan block must leave room for the static part (SelectShared).
  bool scan_fits(size_t k) const { return scan_smem_bytes(k, cb.M, cb.K) + 256 <= smem_limit; }

  DeviceCodes device_codes() const { return DeviceCodes{words.ptr, plane, n, cb.M, cb.nbits}; }

  /// Chunks per query for a batch of nq queries: enough blocks for one full wave on the GPU,
  /// chunks small enough that the queries of a batch share them through L2, large enough to
  /// amortise the per-block selection.
  int plan_chunks(size_t nq, size_t k) const {
    const size_t target_blocks =
        static_cast<size_t>(sm_count) * scan_blocks_per_sm(cb.nbits, cb.M, k);
    size_t chunks = (target_blocks + nq - 1) / nq;
    if (nq > 1) {
      const size_t bytes = n * static_cast<size_t>(nplanes) * 4;
      chunks = std::max(chunks, (bytes + kL2ChunkBytes - 1) / kL2ChunkBytes);
    }
    const size_t min_rows = std::max<size_t>(4 * kTile, 8 * k);
    chunks = std::min(chunks, std::max<size_t>(1, n / min_rows));
    return static_cast<int>(std::min<size_t>(std::max<size_t>(chunks, 1), 65535));
  }

  /// Searches nq queries already on the device (this->stream ordered); writes host D, I.
  /// Device time is measured from the first call's LUT kernel to the last call's results.
  void run(const float* q_dev, size_t nq, size_t k, float* D_host, int64_t* I_host, bool first) {
    const int M = cb.M, K = cb.K;
    SPQ_CHECK_ARG(scan_fits(k), "k: too large for this index's LUT in shared memory (LUT " +
                                    std::to_string(M * K * 4) + " bytes + " +
                                    std::to_string(select_capacity(k) * 8) +
                                    " bytes of candidates > " + std::to_string(smem_limit) +
                                    "); use a smaller k or the CPU index");
    int nchunks = plan_chunks(nq, k);
    size_t rows_per_chunk = (n + nchunks - 1) / nchunks;
    rows_per_chunk = (rows_per_chunk + kTile - 1) / kTile * kTile;
    nchunks = static_cast<int>((n + rows_per_chunk - 1) / rows_per_chunk);
    const size_t per_query = static_cast<size_t>(nchunks) * k * sizeof(uint64_t);
    const size_t batch = std::max<size_t>(1, std::min(nq, kCandidateBudgetBytes / per_query));

    if (first) SPQ_CUDA_CHECK(cudaEventRecord(start, stream));
    for (size_t q0 = 0; q0 < nq; q0 += batch) {
      const size_t nb = std::min(batch, nq - q0);
      float* lut = luts.reserve(nb * M * K);
      launch_lut(q_dev + q0 * cb.dim(), nb, centroids_t.ptr, M, K, cb.dsub,
                 static_cast<int>(metric), lut, stream);
      uint64_t* a = keys_a.reserve(nb * nchunks * k);
      launch_scan_select(lut, nb, device_codes(), k, rows_per_chunk, nchunks, a, stream);
      int nlists = nchunks;
      if (nlists > 1) {
        uint64_t* b = keys_b.reserve(nb * ((nlists + 1) / 2) * k);
        const int group = static_cast<int>(std::max<size_t>(2, 16384 / k));
        while (nlists > 1) {
          launch_merge(a, nb, nlists, k, group, b, stream);
          nlists = (nlists + group - 1) / group;
          std::swap(a, b);
        }
      }
      float* d = D.reserve(nb * k);
      int64_t* i = I.reserve(nb * k);
      launch_finish(a, nb, k, ids.ptr, metric_is_similarity(metric), d, i, stream);
      SPQ_CUDA_CHECK(cudaMemcpyAsync(D_host + q0 * k, d, nb * k * sizeof(float),
                                     cudaMemcpyDeviceToHost, stream));
      SPQ_CUDA_CHECK(cudaMemcpyAsync(I_host + q0 * k, i, nb * k * sizeof(int64_t),
                                     cudaMemcpyDeviceToHost, stream));
      // keys_a/keys_b/luts are reused by the next batch: the stream orders it after this one.
    }
    SPQ_CUDA_CHECK(cudaEventRecord(stop, stream));
  }

  void pad_results(size_t nq, size_t k, float* D_host, int64_t* I_host) const {
    const float pad = metric_is_similarity(metric) ? -INFINITY : INFINITY;
    std::fill(D_host, D_host + nq * k, pad);
    std::fill(I_host, I_host + nq * k, int64_t(-1));
  }

  void wait_for_producer(uintptr_t s) {
    if (s == 0) return;
    SPQ_CUDA_CHECK(cudaEventRecord(producer, producer_stream(s)));
    SPQ_CUDA_CHECK(cudaStreamWaitEvent(stream, producer, 0));
  }

  void check_pointer(const void* p, const char* name) const {
    cudaPointerAttributes attr{};
    SPQ_CUDA_CHECK(cudaPointerGetAttributes(&attr, p));
    if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
      throw std::invalid_argument(std::string(name) + ": not a CUDA device pointer");
    if (attr.device != device)
      throw std::invalid_argument(std::string(name) +
                                  ": lives on cuda:" + std::to_string(attr.device) +
                                  " but the index is on cuda:" + std::to_string(device));
  }

  /// Starts the finiteness check of a device input; the flag comes back with the results.
  int* start_finite_check(const float* x, size_t count) {
    int* f = flag.reserve(1);
    SPQ_CUDA_CHECK(cudaMemsetAsync(f, 0, sizeof(int), stream));
    launch_check_finite(x, count, f, stream);
    return f;
  }
  bool finite_flag_set(int* f) {
    int host = 0;
    SPQ_CUDA_CHECK(cudaMemcpyAsync(&host, f, sizeof(int), cudaMemcpyDeviceToHost, stream));
    SPQ_CUDA_CHECK(cudaStreamSynchronize(stream));
    return host != 0;
  }

  void finish_timing() {
    SPQ_CUDA_CHECK(cudaStreamSynchronize(stream));
    float ms = 0.f;
    if (cudaEventElapsedTime(&ms, start, stop) == cudaSuccess)
      last_ms = ms;
    else
      cudaGetLastError();
  }
};

GpuIndex::GpuIndex(const Index& cpu, int device) : impl_(new Impl) {
  check_device(device);
  Impl& s = *impl_;
  s.device = device;
  s.cb = cpu.codebooks();
  s.metric = cpu.metric();
  DeviceGuard guard(device);
  s.sm_count = device_info(device).sm_count;
  s.smem_limit = max_smem_per_block(device);
  SPQ_CHECK_ARG(s.scan_fits(1),
                "index: its LUT (M * K * 4 = " + std::to_string(s.cb.M * s.cb.K * 4) +
                    " bytes) does not fit in one block's shared memory on this device; use the "
                    "CPU index");

  std::vector<uint8_t> codes;
  std::vector<int64_t> ids;
  cpu.snapshot(&codes, &ids);
  const size_t n = ids.size();
  SPQ_CHECK_ARG(n <= kMaxRows, "index: more than 2^32 - 2 codes do not fit one GPU index");
  s.n = n;

  // Rows sorted by id so that (score, row) orders exactly like the CPU's (score, id).
  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  if (!std::is_sorted(ids.begin(), ids.end()))
    std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return ids[a] < ids[b]; });
  std::vector<int64_t> sorted_ids(n);
  for (size_t r = 0; r < n; r++) sorted_ids[r] = ids[order[r]];

  const size_t cs = s.cb.code_size();
  const int real_planes = static_cast<int>((cs + 3) / 4);
  s.nplanes = real_planes + (32 % s.cb.nbits ? 1 : 0);
  s.plane = (std::max<size_t>(n, 1) + kTile - 1) / kTile * kTile;
  std::vector<uint32_t> words(static_cast<size_t>(s.nplanes) * s.plane, 0u);
  for (size_t r = 0; r < n; r++) {
    const uint8_t* src = codes.data() + static_cast<size_t>(order[r]) * cs;
    for (int w = 0; w < real_planes; w++) {
      uint32_t v = 0;
      for (int b = 0; b < 4 && w * 4 + b < static_cast<int>(cs); b++)
        v |= static_cast<uint32_t>(src[w * 4 + b]) << (8 * b);  // little-endian word
      words[static_cast<size_t>(w) * s.plane + r] = v;
    }
  }
  codes.clear();
  codes.shrink_to_fit();

  SPQ_CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
  SPQ_CUDA_CHECK(cudaEventCreate(&s.start));
  SPQ_CUDA_CHECK(cudaEventCreate(&s.stop));
  SPQ_CUDA_CHECK(cudaEventCreateWithFlags(&s.producer, cudaEventDisableTiming));
  s.words.upload(words.data(), words.size(), s.stream);
  s.ids.upload(sorted_ids.data(), n, s.stream);
  s.centroids.upload(s.cb.centroids.data(), s.cb.centroids.size(), s.stream);
  s.centroids_t.upload(s.cb.centroids_t.data(), s.cb.centroids_t.size(), s.stream);
  SPQ_CUDA_CHECK(cudaStreamSynchronize(s.stream));  // host vectors die at return
}

GpuIndex::~GpuIndex() {
  if (!impl_) return;
  int prev = 0;
  const bool restore = cudaGetDevice(&prev) == cudaSuccess;
  cudaSetDevice(impl_->device);
  impl_.reset();  // stream, events and buffers go while their device is current
  if (restore) cudaSetDevice(prev);
}

int GpuIndex::device() const { return impl_->device; }
size_t GpuIndex::ntotal() const { return impl_->n; }
int GpuIndex::dim() const { return impl_->cb.dim(); }
const Codebooks& GpuIndex::codebooks() const { return impl_->cb; }
Metric GpuIndex::metric() const { return impl_->metric; }
float GpuIndex::last_search_ms() const { return impl_->last_ms; }

void GpuIndex::search(const float* q, size_t nq, size_t k, float* D, int64_t* I) {
  SPQ_CHECK_ARG(k >= 1 && k <= kMaxK, "k: the GPU search supports 1.." + std::to_string(kMaxK) +
                                          ", got " + std::to_string(k));
  Impl& s = *impl_;
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.n == 0 || nq == 0) return s.pad_results(nq, k, D, I);
  DeviceGuard guard(s.device);
  const size_t dim = s.cb.dim();
  for (size_t q0 = 0; q0 < nq; q0 += kHostQueryBatch) {
    const size_t nb = std::min(kHostQueryBatch, nq - q0);
    s.queries.upload(q + q0 * dim, nb * dim, s.stream);
    s.run(s.queries.ptr, nb, k, D + q0 * k, I + q0 * k, q0 == 0);
  }
  s.finish_timing();
}

void GpuIndex::search_device(const float* q_dev, size_t nq, size_t k, float* D, int64_t* I,
                             uintptr_t stream) {
  SPQ_CHECK_ARG(k >= 1 && k <= kMaxK, "k: the GPU search supports 1.." + std::to_string(kMaxK) +
                                          ", got " + std::to_string(k));
  Impl& s = *impl_;
  std::lock_guard<std::mutex> lock(s.mu);
  if (nq == 0) return;
  DeviceGuard guard(s.device);
  s.check_pointer(q_dev, "q");
  s.wait_for_producer(stream);
  int* f = s.start_finite_check(q_dev, nq * s.cb.dim());
  if (s.n == 0) {
    s.pad_results(nq, k, D, I);
  } else {
    s.run(q_dev, nq, k, D, I, true);
  }
  if (s.finite_flag_set(f)) throw std::invalid_argument("q: contains NaN or Inf");
  s.finish_timing();
}

void GpuIndex::encode(const float* x, size_t n, uint8_t* codes) {
  Impl& s = *impl_;
  std::lock_guard<std::mutex> lock(s.mu);
  if (n == 0) return;
  DeviceGuard guard(s.device);
  const size_t dim = s.cb.dim(), cs = s.cb.code_size();
  const size_t batch = std::max<size_t>(1, (size_t(256) << 20) / (dim * sizeof(float)));
  for (size_t i0 = 0; i0 < n; i0 += batch) {
    const size_t nb = std::min(batch, n - i0);
    s.queries.upload(x + i0 * dim, nb * dim, s.stream);
    uint8_t* out = s.codes_out.reserve(nb * cs);
    launch_encode(s.queries.ptr, nb, s.centroids.ptr, s.cb.M, s.cb.K, s.cb.dsub, s.cb.nbits, cs,
                  out, s.stream);
    SPQ_CUDA_CHECK(
        cudaMemcpyAsync(codes + i0 * cs, out, nb * cs, cudaMemcpyDeviceToHost, s.stream));
  }
  SPQ_CUDA_CHECK(cudaStreamSynchronize(s.stream));
}

void GpuIndex::encode_device(const float* x_dev, size_t n, uint8_t* codes, uintptr_t stream) {
  Impl& s = *impl_;
  std::lock_guard<std::mutex> lock(s.mu);
  if (n == 0) return;
  DeviceGuard guard(s.device);
  s.check_pointer(x_dev, "x");
  s.wait_for_producer(stream);
  const size_t cs = s.cb.code_size();
  int* f = s.start_finite_check(x_dev, n * s.cb.dim());
  uint8_t* out = s.codes_out.reserve(n * cs);
  launch_encode(x_dev, n, s.centroids.ptr, s.cb.M, s.cb.K, s.cb.dsub, s.cb.nbits, cs, out,
                s.stream);
  SPQ_CUDA_CHECK(cudaMemcpyAsync(codes, out, n * cs, cudaMemcpyDeviceToHost, s.stream));
  if (s.finite_flag_set(f)) throw std::invalid_argument("x: contains NaN or Inf");
}

}  // namespace cuda
}  // namespace spqindex
