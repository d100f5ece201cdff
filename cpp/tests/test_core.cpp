// Plain C++ tests of the core (no Python, no framework): encode/decode, LUT + scan against a
// brute-force reference, top-k order, the index's id rules, save/load and corrupted files, and
// the thread pool. Built with -DSPQINDEX_BUILD_TESTS=ON; `make test-asan` runs it under
// AddressSanitizer + UndefinedBehaviorSanitizer. Prints "N passed, M failed"; exit status 1 on
// any failure.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "spqindex/checksum.h"
#include "spqindex/code_layout.h"
#include "spqindex/codebooks.h"
#include "spqindex/codes.h"
#include "spqindex/encode.h"
#include "spqindex/fastscan.h"
#include "spqindex/grouped_scan.h"
#include "spqindex/index.h"
#include "spqindex/io.h"
#include "spqindex/io_error.h"
#include "spqindex/lut.h"
#include "spqindex/scan.h"
#include "spqindex/simd.h"
#include "spqindex/threads.h"
#include "spqindex/topk.h"
#include "spqindex/topk_select.h"

using namespace spqindex;

namespace {

int g_passed = 0, g_failed = 0;
std::string g_current;

#define CHECK(cond)                                                                \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      throw std::logic_error(std::string("CHECK failed: ") + #cond + " at line " + \
                             std::to_string(__LINE__));                            \
    }                                                                              \
  } while (0)

template <typename E, typename F>
void expect_throw(F&& f, const char* what, int line) {
  try {
    f();
  } catch (const E&) {
    return;
  } catch (const std::exception& e) {
    throw std::logic_error(std::string("wrong exception for ") + what + " at line " +
                           std::to_string(line) + ": " + e.what());
  }
  throw std::logic_error(std::string("no exception for ") + what + " at line " +
                         std::to_string(line));
}
#define EXPECT_THROW(E, expr) expect_throw<E>([&] { expr; }, #expr, __LINE__)

void run(const char* name, const std::function<void()>& test) {
  g_current = name;
  try {
    test();
    g_passed++;
    std::printf("ok      %s\n", name);
  } catch (const std::exception& e) {
    g_failed++;
    std::printf("FAILED  %s: %s\n", name, e.what());
  }
}

std::vector<float> randn(std::mt19937_64& rng, size_t n, float scale = 1.f) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

Codebooks make_cb(std::mt19937_64& rng, int M, int nbits, int dsub) {
  const int K = 1 << nbits;
  auto c = randn(rng, static_cast<size_t>(M) * K * dsub);
  return Codebooks(M, K, dsub, c.data());
}

/// Reference: nearest codeword per sub-space in double precision, ties to the smaller index.
std::vector<uint32_t> ref_assign(const Codebooks& cb, const float* x) {
  std::vector<uint32_t> a(cb.M);
  for (int m = 0; m < cb.M; m++) {
    double best = std::numeric_limits<double>::infinity();
    for (int k = 0; k < cb.K; k++) {
      double d = 0;
      for (int j = 0; j < cb.dsub; j++) {
        double t = double(x[m * cb.dsub + j]) - cb.codeword(m, k)[j];
        d += t * t;
      }
      if (d < best) best = d, a[m] = k;
    }
  }
  return a;
}

std::vector<uint32_t> unpack(const uint8_t* row, int M, int nbits) {
  CodeReader r(row, nbits);
  std::vector<uint32_t> a(M);
  for (auto& c : a) c = r.next();
  return a;
}

std::string temp_path(const char* tag) {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir ? dir : "/tmp") + "/spq-core-test-" + std::to_string(::getpid()) + "-" +
         tag;
}

std::vector<uint8_t> read_file(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

void write_file(const std::string& p, const std::vector<uint8_t>& d) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(d.data()), static_cast<std::streamsize>(d.size()));
}

std::unique_ptr<Index> small_index(std::mt19937_64& rng, int M, int nbits, int dsub, size_t n,
                                   bool explicit_ids, Metric metric = Metric::L2) {
  auto idx = std::make_unique<Index>(make_cb(rng, M, nbits, dsub), metric);
  auto x = randn(rng, n * M * dsub);
  std::vector<int64_t> ids(n);
  for (size_t i = 0; i < n; i++) ids[i] = static_cast<int64_t>(3 * i + 7);
  idx->add(x.data(), n, explicit_ids ? ids.data() : nullptr);
  return idx;
}

// ----------------------------------------------------------------------------------------

void test_codebooks_validation() {
  std::vector<float> c(2 * 4 * 3, 0.5f);
  EXPECT_THROW(std::invalid_argument, Codebooks(2, 3, 3, c.data()));
  EXPECT_THROW(std::invalid_argument, Codebooks(0, 4, 3, c.data()));
  EXPECT_THROW(std::invalid_argument, Codebooks(2, 4, 0, c.data()));
  std::vector<float> big(2 * 512 * 1, 0.f);
  EXPECT_THROW(std::invalid_argument, Codebooks(2, 512, 1, big.data()));
  c[5] = std::nanf("");
  EXPECT_THROW(std::invalid_argument, Codebooks(2, 4, 3, c.data()));
  c[5] = INFINITY;
  EXPECT_THROW(std::invalid_argument, Codebooks(2, 4, 3, c.data()));
  c[5] = 0.f;
  Codebooks ok(2, 4, 3, c.data());
  CHECK(ok.nbits == 2 && ok.code_size() == 1 && ok.dim() == 6);
}

void test_pack_unpack_all_nbits() {
  std::mt19937_64 rng(1);
  for (int nbits = 1; nbits <= 8; nbits++)
    for (int M : {1, 3, 7, 8, 13, 64}) {
      const size_t cs = (static_cast<size_t>(M) * nbits + 7) / 8;
      std::vector<uint32_t> a(M);
      for (auto& v : a) v = static_cast<uint32_t>(rng() % (1u << nbits));
      std::vector<uint8_t> row(cs, 0);
      CodeWriter w(row.data(), nbits);
      for (auto v : a) w.put(v);
      w.finish();
      CHECK(unpack(row.data(), M, nbits) == a);
      CHECK(codes_valid(row.data(), 1, M, nbits));
      if ((M * nbits) % 8) {
        row[cs - 1] |= 0x80;
        CHECK(!codes_valid(row.data(), 1, M, nbits));
      }
    }
}

void test_encode_matches_reference_every_simd_level() {
  const SimdLevel cpu = cpu_simd_level();
  for (int level = 0; level < kNumSimdLevels; level++) {
    if (!simd_level_supported(static_cast<SimdLevel>(level))) continue;
    set_simd_level(static_cast<SimdLevel>(level));
    std::mt19937_64 rng(2);
    for (int nbits : {1, 3, 4, 8})
      for (int dsub : {1, 2, 3, 8, 17}) {
        const int M = 5;
        Codebooks cb = make_cb(rng, M, nbits, dsub);
        const size_t n = 300;  // more than one encode block
        auto x = randn(rng, n * cb.dim());
        std::vector<uint8_t> codes(n * cb.code_size());
        encode(cb, x.data(), n, codes.data());
        size_t mismatches = 0;
        for (size_t i = 0; i < n; i++)
          if (unpack(&codes[i * cb.code_size()], M, nbits) != ref_assign(cb, &x[i * cb.dim()]))
            mismatches++;
        CHECK(mismatches == 0);  // random data: no near-ties at float precision
        CHECK(codes_valid(codes.data(), n, M, nbits));
        std::vector<float> back(n * cb.dim());
        decode(cb, codes.data(), n, back.data());
        for (size_t i = 0; i < n; i++) {
          auto a = unpack(&codes[i * cb.code_size()], M, nbits);
          for (int m = 0; m < M; m++)
            CHECK(std::memcmp(&back[i * cb.dim() + m * dsub], cb.codeword(m, a[m]), 4 * dsub) == 0);
        }
      }
  }
  set_simd_level(cpu);
}

// Every level's table comes complete from its ISA file (simd.h): nothing is patched in later.
void test_kernel_tables_complete() {
  for (int l = 0; l < kNumSimdLevels; l++) {
    const SimdLevel level = static_cast<SimdLevel>(l);
    if (!simd_level_supported(level)) continue;
    const Kernels& k = kernels_for(level);
    CHECK(k.level == level);
    CHECK(k.subspace_l2 && k.subspace_ip && k.nearest);
    if (level != SimdLevel::Scalar) CHECK(k.scan4 != nullptr);
    CHECK(simd_level_from_name(simd_level_name(level)) == level);
  }
  EXPECT_THROW(std::invalid_argument, simd_level_from_name("sse9"));
}

// Every supported level returns bit-identical search results to the scalar level: 4-bit (odd M:
// a padding nibble) and 8-bit codes, a partial last block, small and large k, ties, both metrics.
void test_search_every_level_bit_identical() {
  const SimdLevel cpu = cpu_simd_level();
  for (int nbits : {4, 8})
    for (int M : {1, 3, 8, 16}) {
      std::mt19937_64 rng(100 + nbits * 10 + M);
      const int dsub = 3;
      Codebooks cb = make_cb(rng, M, nbits, dsub);
      for (float& c : cb.centroids) c = std::round(c * 2.f) / 2.f;  // coarse values: many ties
      Codebooks cbr(M, cb.K, dsub, cb.centroids.data());
      for (Metric metric : {Metric::L2, Metric::IP}) {
        Index idx(cbr, metric);
        const size_t n = 1000 + 37;
        auto x = randn(rng, n * cbr.dim());
        idx.add(x.data(), n, nullptr);
        const size_t nq = 6;
        auto q = randn(rng, nq * cbr.dim());
        for (size_t k : {size_t(1), size_t(10), size_t(300)}) {
          std::vector<float> D0(nq * k), D1(nq * k);
          std::vector<int64_t> I0(nq * k), I1(nq * k);
          set_simd_level(SimdLevel::Scalar);
          idx.search(q.data(), nq, k, D0.data(), I0.data());
          for (int l = 1; l < kNumSimdLevels; l++) {
            if (!simd_level_supported(static_cast<SimdLevel>(l))) continue;
            set_simd_level(static_cast<SimdLevel>(l));
            idx.search(q.data(), nq, k, D1.data(), I1.data());
            CHECK(I0 == I1);
            CHECK(std::memcmp(D0.data(), D1.data(), sizeof(float) * D0.size()) == 0);
          }
        }
      }
    }
  set_simd_level(cpu);
}

// Grouped 8-bit scan (grouped_scan.h): the grouping is a permutation of 16 groups of 16, the AVX2
// kernel reports exactly the rows the portable reference does for any bound, and with the bound
// of the true k-th score every row of the exact top-k is offered (the pruning is safe).
struct MaskLog {
  std::vector<uint64_t> masks;  ///< (nq, nblocks)
  size_t nblocks;
};
void log_mask(void* ctx, int qi, size_t block, uint64_t mask) {
  MaskLog& log = *static_cast<MaskLog*>(ctx);
  log.masks[qi * log.nblocks + block] |= mask;
}

// Rows stored in 64-row blocks (code_layout.h) through CodeLayout::put_row, as the index stores
// them.
struct StoredBlocks {
  CodeLayout layout;
  std::vector<uint8_t> data;
  size_t nblocks;
  StoredBlocks(const uint8_t* codes, size_t n, int M, int nbits)
      : layout(M, nbits), data(layout.bytes_for(n), 0), nblocks(CodeLayout::nblocks(n)) {
    for (size_t r = 0; r < n; r++) layout.put_row(data.data(), r, codes + r * layout.code_size());
  }
};

void test_grouped_scan8() {
  std::mt19937_64 rng(77);
  for (int M : {1, 5, 16}) {
    const int dsub = 4;
    Codebooks cb = make_cb(rng, M, 8, dsub);
    const CodeGroups g = group_codewords(cb);
    for (int m = 0; m < M; m++)
      for (int c = 0; c < 256; c++) CHECK(g.to_original[m * 256 + g.to_internal[m * 256 + c]] == c);
    const size_t n = 64 * 7 + 19;
    auto x = randn(rng, n * cb.dim());
    std::vector<uint8_t> codes(n * M), internal(n * M);
    encode(cb, x.data(), n, codes.data());
    for (size_t i = 0; i < n * M; i++) internal[i] = g.to_internal[(i % M) * 256 + codes[i]];
    const StoredBlocks packed(internal.data(), n, M, 8);
    const int nq = 3;
    auto q = randn(rng, nq * cb.dim());
    std::vector<float> lut(M * 256), lut_int(M * 256);
    std::vector<QuantizedLut> ql(nq);
    std::vector<GroupedLut> gl(nq);
    std::vector<std::vector<float>> scores(nq, std::vector<float>(n));
    for (int qi = 0; qi < nq; qi++) {
      compute_lut(cb, Metric::L2, &q[qi * cb.dim()], lut.data());
      for (int m = 0; m < M; m++)
        for (int i = 0; i < 256; i++)
          lut_int[m * 256 + i] = lut[m * 256 + g.to_original[m * 256 + i]];
      quantize_lut(lut_int.data(), M, 8, &ql[qi]);
      CHECK(ql[qi].ok);
      grouped_lut(ql[qi], M, &gl[qi]);
      for (size_t r = 0; r < n; r++) scores[qi][r] = adc_score(lut.data(), &codes[r * M], M, 8);
    }
    std::vector<ScanKernel> kernels_to_test = {scan8_grouped_scalar()};
    for (int l = 0; l < kNumSimdLevels; l++)
      if (simd_level_supported(static_cast<SimdLevel>(l)) &&
          kernels_for(static_cast<SimdLevel>(l)).scan8_grouped)
        kernels_to_test.push_back(kernels_for(static_cast<SimdLevel>(l)).scan8_grouped);
    // refine: also pass the full tables (ScanQuery::exact), which may only drop candidates.
    auto run_kernel = [&](ScanKernel kern, const std::vector<int32_t>& bounds, bool refine) {
      MaskLog log{std::vector<uint64_t>(nq * packed.nblocks, 0), packed.nblocks};
      std::vector<ScanQuery> sq(nq);
      for (int qi = 0; qi < nq; qi++)
        sq[qi] = {gl[qi].table.data(), bounds[qi], refine ? ql[qi].table.data() : nullptr};
      kern(ScanArgs{packed.data.data(), packed.layout.block_bytes(), M, 0, packed.nblocks, nq,
                    sq.data(), log_mask, &log});
      return log.masks;
    };
    // The exact quantized sum of stored row r (padding rows hold internal code 0).
    auto exact_sum = [&](int qi, size_t r) {
      uint32_t sum = 0;
      for (int m = 0; m < M; m++) sum += ql[qi].table[m * 256 + (r < n ? internal[r * M + m] : 0)];
      return static_cast<int32_t>(sum);
    };
    // Every level gives the scalar masks; refined masks are the group-bound rows whose exact
    // quantized sum is within the bound, where a block has at least kRefineRows group-bound rows.
    // Returns the rows the refinement dropped.
    auto check_refined = [&](const std::vector<int32_t>& bounds) {
      for (bool refine : {false, true}) {
        const auto ref = run_kernel(kernels_to_test[0], bounds, refine);
        for (size_t t = 1; t < kernels_to_test.size(); t++)
          CHECK(run_kernel(kernels_to_test[t], bounds, refine) == ref);
      }
      const auto coarse = run_kernel(kernels_to_test[0], bounds, false);
      const auto fine = run_kernel(kernels_to_test[0], bounds, true);
      size_t dropped = 0;
      for (int qi = 0; qi < nq; qi++)
        for (size_t b = 0; b < packed.nblocks; b++) {
          const uint64_t c = coarse[qi * packed.nblocks + b], f = fine[qi * packed.nblocks + b];
          const bool refined = bounds[qi] >= 0 && __builtin_popcountll(c) >= kRefineRows;
          for (int j = 0; j < 64; j++) {
            const bool keep = (c >> j & 1) && (!refined || exact_sum(qi, b * 64 + j) <= bounds[qi]);
            CHECK(((f >> j) & 1) == keep);
          }
          dropped += static_cast<size_t>(__builtin_popcountll(c & ~f));
        }
      return dropped;
    };
    for (size_t k : {size_t(1), size_t(10), size_t(100)}) {
      std::vector<int32_t> bounds(nq);
      std::vector<std::vector<size_t>> top(nq);
      for (int qi = 0; qi < nq; qi++) {
        std::vector<size_t> order(n);
        std::iota(order.begin(), order.end(), size_t(0));
        std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
          return better(scores[qi][a], int64_t(a), scores[qi][b], int64_t(b));
        });
        top[qi].assign(order.begin(), order.begin() + k);
        bounds[qi] = ql[qi].bound(scores[qi][order[k - 1]]);
      }
      const size_t dropped = check_refined(bounds);
      const auto fine = run_kernel(kernels_to_test[0], bounds, true);
      for (int qi = 0; qi < nq; qi++)
        for (size_t r : top[qi]) CHECK((fine[qi * packed.nblocks + r / 64] >> (r % 64)) & 1);
      if (k == 100) CHECK(dropped > 0);  // the refinement does drop rows here
    }
    for (size_t r :
         {size_t(3), size_t(64 * 3 + 40), n - 1}) {  // bounds at a row's exact sum and below
      for (int delta : {0, -1}) {
        std::vector<int32_t> bounds(nq);
        for (int qi = 0; qi < nq; qi++) bounds[qi] = exact_sum(qi, r) + delta;
        check_refined(bounds);
        const auto fine = run_kernel(kernels_to_test[0], bounds, true);
        for (int qi = 0; qi < nq; qi++)
          if (delta == 0) CHECK((fine[qi * packed.nblocks + r / 64] >> (r % 64)) & 1);
      }
    }
    for (int32_t b : {-1, 0, 200, 65535}) {  // fixed bounds, padding rows included
      const std::vector<int32_t> bounds(nq, b);
      check_refined(bounds);
      const auto ref = run_kernel(kernels_to_test[0], bounds, false);
      if (b == 65535) CHECK(ref[0] == ~uint64_t{0});
      if (b < 0) CHECK(ref[0] == 0);
    }
  }
}

// The 4-bit fast-scan kernel of every level reports exactly the rows whose quantized sum (the
// portable sums kernel) is within each query's bound, in uint16 and in the uint8-saturating mode
// (every live bound < 255), with bounds mixed across the queries of one call.
void test_scan4_kernels_report_rows_within_bound() {
  std::mt19937_64 rng(55);
  for (int M : {1, 3, 8, 16, 25}) {
    Codebooks cb = make_cb(rng, M, 4, 2);
    const size_t n = 64 * 9 + 13;
    auto x = randn(rng, n * cb.dim());
    std::vector<uint8_t> codes(n * cb.code_size());
    encode(cb, x.data(), n, codes.data());
    const StoredBlocks packed(codes.data(), n, M, 4);
    auto q = randn(rng, cb.dim());
    std::vector<float> lut(static_cast<size_t>(M) * 16);
    compute_lut(cb, Metric::L2, q.data(), lut.data());
    QuantizedLut ql;
    quantize_lut(lut.data(), M, 4, &ql);
    CHECK(ql.ok);
    std::vector<uint16_t> sums(packed.nblocks * 64);
    sums4_scalar()(packed.data.data(), packed.layout.block_bytes(), M, 0, packed.nblocks,
                   ql.table.data(), sums.data());
    const std::vector<std::vector<int32_t>> bound_sets = {{0, 0, 0, 0},
                                                          {40, 40, 40, 40},
                                                          {127, 127, 127, 127},
                                                          {254, 254, 254, 254},
                                                          {255, 255, 255, 255},
                                                          {600, 600, 600, 600},
                                                          {65535, 65535, 65535, 65535},
                                                          {5, 300, -1, 200},
                                                          {-1, 100, 254, 3},
                                                          {-1, -1, -1, -1}};
    for (int l = 0; l < kNumSimdLevels; l++) {
      if (!simd_level_supported(static_cast<SimdLevel>(l))) continue;
      const ScanKernel kern = kernels_for(static_cast<SimdLevel>(l)).scan4;
      if (!kern) continue;
      for (const auto& bounds : bound_sets)
        for (int nq : {1, 4}) {
          MaskLog log{std::vector<uint64_t>(nq * packed.nblocks, 0), packed.nblocks};
          std::vector<ScanQuery> sq(nq);
          for (int qi = 0; qi < nq; qi++) sq[qi] = {ql.table.data(), bounds[qi]};
          kern(ScanArgs{packed.data.data(), packed.layout.block_bytes(), M, 0, packed.nblocks, nq,
                        sq.data(), log_mask, &log});
          for (int qi = 0; qi < nq; qi++)
            for (size_t r = 0; r < packed.nblocks * 64; r++) {
              const bool want = bounds[qi] >= 0 && sums[r] <= bounds[qi];
              CHECK(((log.masks[qi * packed.nblocks + r / 64] >> (r % 64)) & 1) == want);
            }
        }
    }
  }
}

// Large-k selection (topk_select.h) against the brute-force scan at every level: 4-bit (odd M)
// and 8-bit, many ties, k around n, row numbers and shuffled ids; the sums kernels of every
// level equal the portable ones.
void test_select_topk_large_k() {
  std::mt19937_64 rng(91);
  for (int nbits : {4, 8})
    for (int M : {3, 8, 160}) {  // 160 (8-bit): sums past 2^15
      Codebooks cb0 = make_cb(rng, M, nbits, 2);
      for (float& c : cb0.centroids) c = std::round(c * 2.f) / 2.f;  // many ties
      Codebooks cb(M, cb0.K, 2, cb0.centroids.data());
      const size_t n = 64 * 40 + 23;
      auto x = randn(rng, n * cb.dim());
      std::vector<uint8_t> codes(n * cb.code_size());
      encode(cb, x.data(), n, codes.data());
      const StoredBlocks packed(codes.data(), n, M, nbits);
      std::vector<int64_t> ids(n);
      for (size_t i = 0; i < n; i++)
        ids[i] = static_cast<int64_t>((i * 7919) % n);  // a permutation
      auto q = randn(rng, 2 * cb.dim());
      for (int qi = 0; qi < 2; qi++) {
        std::vector<float> lut(static_cast<size_t>(M) * cb.K);
        compute_lut(cb, qi ? Metric::IP : Metric::L2, &q[qi * cb.dim()], lut.data());
        QuantizedLut ql;
        quantize_lut(lut.data(), M, nbits, &ql);
        CHECK(ql.ok);
        std::vector<uint16_t> ref_sums(packed.nblocks * 64), sums(ref_sums.size());
        (nbits == 4 ? sums4_scalar() : sums8_scalar())(
            packed.data.data(), packed.layout.block_bytes(), M, 0, packed.nblocks, ql.table.data(),
            ref_sums.data());
        for (int l = 0; l < kNumSimdLevels; l++) {
          if (!simd_level_supported(static_cast<SimdLevel>(l))) continue;
          const Kernels& kern = kernels_for(static_cast<SimdLevel>(l));
          const SumsKernel sk = nbits == 4 ? kern.sums4 : kern.sums8;
          sk(packed.data.data(), packed.layout.block_bytes(), M, 0, packed.nblocks, ql.table.data(),
             sums.data());
          CHECK(sums == ref_sums);
          for (size_t k : {size_t(64), size_t(300), size_t(1000), n - 1, n, n + 5}) {
            for (bool with_ids : {false, true}) {
              const int64_t* idp = with_ids ? ids.data() : nullptr;
              std::vector<int64_t> rows(n);
              for (size_t i = 0; i < n; i++) rows[i] = static_cast<int64_t>(i);
              TopK ref(k), got(k);
              scan_codes(lut.data(), codes.data(), with_ids ? ids.data() : rows.data(), 0, n, M,
                         nbits, ref);
              SelectScratch scratch;
              select_topk(sk, packed.layout, packed.data.data(), n, 0, packed.nblocks, idp,
                          lut.data(), ql, &got, &scratch);
              std::vector<float> D0(k), D1(k);
              std::vector<int64_t> I0(k), I1(k);
              ref.write_sorted(D0.data(), I0.data(), false);
              got.write_sorted(D1.data(), I1.data(), false);
              CHECK(I0 == I1);
              CHECK(std::memcmp(D0.data(), D1.data(), sizeof(float) * k) == 0);
            }
          }
        }
      }
    }
}

void test_lut_and_scan_against_brute_force() {
  std::mt19937_64 rng(3);
  for (Metric metric : {Metric::L2, Metric::SPQ, Metric::IP})
    for (int nbits : {2, 4, 8}) {
      const int M = 6, dsub = 3;
      Codebooks cb = make_cb(rng, M, nbits, dsub);
      const size_t n = 500;
      std::vector<uint8_t> codes(n * cb.code_size(), 0);
      std::vector<int64_t> ids(n);
      for (size_t i = 0; i < n; i++) {
        CodeWriter w(&codes[i * cb.code_size()], nbits);
        for (int m = 0; m < M; m++) w.put(static_cast<uint32_t>(rng() % cb.K));
        w.finish();
        ids[i] = static_cast<int64_t>(n - i);  // ids not in storage order
      }
      auto q = randn(rng, cb.dim());
      std::vector<float> lut(M * cb.K);
      compute_lut(cb, metric, q.data(), lut.data());
      std::vector<std::pair<float, int64_t>> all(n);
      for (size_t i = 0; i < n; i++) {
        auto a = unpack(&codes[i * cb.code_size()], M, nbits);
        float s = 0.f;
        for (int m = 0; m < M; m++) s += lut[m * cb.K + a[m]];
        CHECK(s == adc_score(lut.data(), &codes[i * cb.code_size()], M, nbits));
        // The LUT itself against its definition (float math, summed in order over dsub).
        double ref = 0;
        for (int m = 0; m < M; m++) {
          double t = 0;
          for (int j = 0; j < dsub; j++) {
            double qd = q[m * dsub + j], cd = cb.codeword(m, a[m])[j];
            t += metric == Metric::IP ? -qd * cd : (qd - cd) * (qd - cd);
          }
          ref += metric == Metric::SPQ ? std::sqrt(t) : t;
        }
        CHECK(std::fabs(ref - s) < 1e-3 * (1 + std::fabs(ref)));
        all[i] = {s, ids[i]};
      }
      std::sort(all.begin(), all.end());
      for (size_t k : {size_t{1}, size_t{10}, n, n + 5}) {
        TopK top(k);
        scan_codes(lut.data(), codes.data(), ids.data(), 0, n, M, nbits, top);
        std::vector<float> D(k);
        std::vector<int64_t> I(k);
        top.write_sorted(D.data(), I.data(), false);
        for (size_t i = 0; i < k; i++) {
          if (i < n)
            CHECK(D[i] == all[i].first && I[i] == all[i].second);
          else
            CHECK(I[i] == -1 && std::isinf(D[i]) && D[i] > 0);
        }
      }
    }
}

void test_topk_ties_and_merge() {
  TopK a(3), b(3);
  for (int64_t id : {9, 4, 7, 1}) a.push(1.0f, id);
  b.push(0.5f, 100);
  b.push(1.0f, 0);
  a.merge(b);
  float D[3];
  int64_t I[3];
  a.write_sorted(D, I, true);
  CHECK(I[0] == 100 && I[1] == 0 && I[2] == 1);
  CHECK(D[0] == -0.5f && D[1] == -1.0f);
  TopK huge(size_t{1} << 40);  // a huge k must not reserve k slots
  huge.push(1.f, 1);
  CHECK(huge.size() == 1);
}

void test_index_add_remove_reconstruct() {
  std::mt19937_64 rng(4);
  auto idx = small_index(rng, 4, 4, 2, 100, true);
  CHECK(idx->ntotal() == 100 && idx->next_id() == 3 * 99 + 7 + 1);
  CHECK(idx->id_mode() == IdMode::Explicit);
  // id rules: all-or-nothing
  auto x = randn(rng, 3 * idx->dim());
  std::vector<int64_t> dup{1000, 1001, 1000}, existing{1000, 7, 1002}, neg{-1, 1, 2},
      max_id{INT64_MAX, 1, 2};
  std::vector<uint8_t> before_codes;
  std::vector<int64_t> before_ids;
  idx->snapshot(&before_codes, &before_ids);
  for (auto* bad : {&dup, &existing, &neg, &max_id})
    EXPECT_THROW(std::invalid_argument, idx->add(x.data(), 3, bad->data()));
  EXPECT_THROW(std::invalid_argument, idx->add(x.data(), 3, nullptr));  // mode mix
  std::vector<uint8_t> after_codes;
  std::vector<int64_t> after_ids;
  idx->snapshot(&after_codes, &after_ids);
  CHECK(before_codes == after_codes && before_ids == after_ids);
  // reconstruct == decode of the stored code
  std::vector<int64_t> want{7, 10, 304};
  std::vector<float> rec(want.size() * idx->dim());
  idx->reconstruct(want.data(), want.size(), rec.data());
  std::vector<float> dec(idx->dim());
  decode(idx->codebooks(), &before_codes[1 * idx->code_size()], 1, dec.data());
  CHECK(std::memcmp(dec.data(), &rec[idx->dim()], 4 * idx->dim()) == 0);
  std::vector<int64_t> unknown{7, 8};
  EXPECT_THROW(IdNotFound, idx->reconstruct(unknown.data(), 2, rec.data()));
  // remove keeps the order of the rest; unknown ids are ignored
  std::vector<int64_t> gone{7, 13, 999999, -5};
  CHECK(idx->remove(gone.data(), gone.size()) == 2);
  CHECK(idx->ntotal() == 98);
  idx->snapshot(nullptr, &after_ids);
  CHECK(after_ids.front() == 10 && std::is_sorted(after_ids.begin(), after_ids.end()));
  // a removed id can be added again
  std::vector<int64_t> again{7};
  idx->add(x.data(), 1, again.data());
  CHECK(idx->ntotal() == 99);
  // sequential ids continue from the largest so far
  auto seq = small_index(rng, 4, 4, 2, 10, false);
  std::vector<int64_t> last{9};
  seq->remove(last.data(), 1);
  seq->add(x.data(), 1, nullptr);
  seq->snapshot(nullptr, &after_ids);
  CHECK(after_ids.back() == 10);
}

void test_search_contract_and_paths() {
  std::mt19937_64 rng(5);
  // Large enough for the "split one query over the database" path.
  const size_t n = 70000;
  auto idx = small_index(rng, 8, 4, 2, n, false, Metric::IP);
  auto q = randn(rng, 5 * idx->dim());
  const size_t k = 12;
  for (int threads : {1, 2, 4}) {
    set_num_threads(threads);
    std::vector<float> D(5 * k), D1(k);
    std::vector<int64_t> I(5 * k), I1(k);
    idx->search(q.data(), 5, k, D.data(), I.data());
    for (size_t qi = 0; qi < 5; qi++) {
      idx->search(q.data() + qi * idx->dim(), 1, k, D1.data(), I1.data());  // other path
      CHECK(std::equal(I1.begin(), I1.end(), I.begin() + qi * k));
      CHECK(std::equal(D1.begin(), D1.end(), D.begin() + qi * k));
      for (size_t i = 1; i < k; i++)  // "ip": larger is better, ties by smaller id
        CHECK(D[qi * k + i - 1] > D[qi * k + i] ||
              (D[qi * k + i - 1] == D[qi * k + i] && I[qi * k + i - 1] < I[qi * k + i]));
    }
  }
  set_num_threads(2);
  float Dz;
  int64_t Iz;
  EXPECT_THROW(std::invalid_argument, idx->search(q.data(), 1, 0, &Dz, &Iz));
  Index empty(make_cb(rng, 2, 8, 1), Metric::L2);
  std::vector<float> D(3);
  std::vector<int64_t> I(3);
  empty.search(q.data(), 1, 3, D.data(), I.data());
  CHECK(I[0] == -1 && I[2] == -1 && std::isinf(D[0]) && D[0] > 0);
}

void test_save_load_roundtrip_and_corruption() {
  std::mt19937_64 rng(6);
  for (bool explicit_ids : {false, true}) {
    auto idx = small_index(rng, 5, 3, 3, 77, explicit_ids, Metric::SPQ);
    const std::string path = temp_path("rt.spq");
    idx->save(path);
    const auto good = read_file(path);
    CHECK(good.size() > 60 && std::memcmp(good.data(), kMagic, 8) == 0);
    uint64_t stored;
    std::memcpy(&stored, &good[good.size() - 8], 8);
    CHECK(stored == xxh64(good.data(), good.size() - 8));
    for (bool mmap : {false, true}) {
      auto back = Index::load(path, mmap);
      std::vector<uint8_t> c0, c1;
      std::vector<int64_t> i0, i1;
      idx->snapshot(&c0, &i0);
      back->snapshot(&c1, &i1);
      CHECK(c0 == c1 && i0 == i1 && back->next_id() == idx->next_id());
      CHECK(back->read_only() == mmap && back->metric() == Metric::SPQ);
      if (mmap) EXPECT_THROW(ReadOnlyIndex, back->remove(i1.data(), 1));
    }
    // every truncation and a stride of byte flips: invalid_argument only
    const std::string bad = temp_path("bad.spq");
    for (size_t cut = 0; cut < good.size(); cut++) {
      write_file(bad, std::vector<uint8_t>(good.begin(), good.begin() + cut));
      for (bool mmap : {false, true}) EXPECT_THROW(std::invalid_argument, Index::load(bad, mmap));
    }
    for (size_t pos = 0; pos < good.size(); pos += 3) {
      auto d = good;
      d[pos] ^= 0x5A;
      write_file(bad, d);
      for (bool mmap : {false, true}) EXPECT_THROW(std::invalid_argument, Index::load(bad, mmap));
    }
    // a header that claims 2^56 rows: rejected by size before any allocation
    auto d = good;
    const uint64_t huge = uint64_t{1} << 56;
    std::memcpy(&d[36], &huge, 8);
    write_file(bad, d);
    EXPECT_THROW(std::invalid_argument, Index::load(bad, false));
    ::unlink(bad.c_str());
    ::unlink(path.c_str());
  }
  EXPECT_THROW(IoError, Index::load("/nonexistent/dir/x.spq", false));
  EXPECT_THROW(IoError, Index::load("/", false));
  std::mt19937_64 r2(7);
  auto idx = small_index(r2, 2, 2, 1, 3, false);
  EXPECT_THROW(IoError, idx->save("/nonexistent/dir/x.spq"));
}

void test_file_layout_overflow() {
  for (uint32_t v : {1u, kFormatVersion}) {
    EXPECT_THROW(std::invalid_argument, file_layout(v, 8, 4, 8, UINT64_MAX, true));
    EXPECT_THROW(std::invalid_argument, file_layout(v, 8, 4, 8, (uint64_t{1} << 56) + 1, true));
  }
  FileLayout l = file_layout(kFormatVersion, 8, 4, 8, uint64_t{1} << 32, true);  // 64-bit offsets
  CHECK(l.codes_bytes == (uint64_t{1} << 32) * 4);
  CHECK(l.codes_offset % 64 == 0 && l.ids_offset % 64 == 0);
  CHECK(l.file_bytes == l.ids_offset + (uint64_t{1} << 32) * 8 + 8);
}

void test_thread_pool() {
  for (int threads : {1, 2, 3, 8}) {
    set_num_threads(threads);
    CHECK(get_num_threads() == threads);
    std::vector<std::atomic<int>> hits(1000);
    parallel_for(1000, [&](size_t t) { hits[t]++; });
    for (auto& h : hits) CHECK(h.load() == 1);
    // the first exception is rethrown after every claimed task has finished
    std::atomic<int> done{0};
    EXPECT_THROW(std::runtime_error, parallel_for(200, [&](size_t t) {
                   if (t == 17) throw std::runtime_error("boom");
                   done++;
                 }));
    parallel_for(0, [&](size_t) { CHECK(false); });
  }
  EXPECT_THROW(std::invalid_argument, set_num_threads(0));
  // several callers at once, while the pool is being replaced
  set_num_threads(2);
  std::atomic<long> total{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 6; c++)
    callers.emplace_back([&] {
      for (int r = 0; r < 50; r++) parallel_for(64, [&](size_t) { total++; });
    });
  for (int r = 0; r < 20; r++) set_num_threads(1 + r % 3);
  for (auto& t : callers) t.join();
  CHECK(total.load() == 6L * 50 * 64);
  set_num_threads(2);
}

void test_concurrent_search_and_mutation() {
  std::mt19937_64 rng(8);
  auto idx = small_index(rng, 4, 8, 2, 5000, true);
  auto q = randn(rng, 4 * idx->dim());
  std::vector<float> Dref(4 * 10);
  std::vector<int64_t> Iref(4 * 10);
  idx->search(q.data(), 4, 10, Dref.data(), Iref.data());
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 4; r++)
    readers.emplace_back([&] {
      std::vector<float> D(40);
      std::vector<int64_t> I(40);
      while (!stop) {
        idx->search(q.data(), 4, 10, D.data(), I.data());
        for (int64_t id : I)
          if (id < 0) bad++;
      }
    });
  auto x = randn(rng, 50 * idx->dim());
  // A writer starved by back-to-back searches (a reader-preferring lock) would hang here
  // forever: fail the run instead.
  std::mutex wd_mu;
  std::condition_variable wd_cv;
  bool writer_done = false;
  std::thread watchdog([&] {
    std::unique_lock<std::mutex> lock(wd_mu);
    if (!wd_cv.wait_for(lock, std::chrono::seconds(120), [&] { return writer_done; })) {
      std::printf("FAILED  %s: add/remove did not finish in 120 s under concurrent searches\n",
                  g_current.c_str());
      std::fflush(stdout);
      std::_Exit(1);
    }
  });
  for (int round = 0; round < 200; round++) {
    std::vector<int64_t> ids(50);
    for (int i = 0; i < 50; i++) ids[i] = 1000000 + round * 50 + i;
    idx->add(x.data(), 50, ids.data());
    CHECK(idx->remove(ids.data(), 50) == 50);
  }
  {
    std::lock_guard<std::mutex> lock(wd_mu);
    writer_done = true;
  }
  wd_cv.notify_all();
  watchdog.join();
  stop = true;
  for (auto& t : readers) t.join();
  CHECK(bad.load() == 0);
  std::vector<float> D(40);
  std::vector<int64_t> I(40);
  idx->search(q.data(), 4, 10, D.data(), I.data());
  CHECK(I == Iref && D == Dref);
}

}  // namespace

int main() {
  run("codebooks_validation", test_codebooks_validation);
  run("pack_unpack_all_nbits", test_pack_unpack_all_nbits);
  run("encode_matches_reference_every_simd_level", test_encode_matches_reference_every_simd_level);
  run("scan4_kernels_report_rows_within_bound", test_scan4_kernels_report_rows_within_bound);
  run("kernel_tables_complete", test_kernel_tables_complete);
  run("search_every_level_bit_identical", test_search_every_level_bit_identical);
  run("grouped_scan8", test_grouped_scan8);
  run("select_topk_large_k", test_select_topk_large_k);
  run("lut_and_scan_against_brute_force", test_lut_and_scan_against_brute_force);
  run("topk_ties_and_merge", test_topk_ties_and_merge);
  run("index_add_remove_reconstruct", test_index_add_remove_reconstruct);
  run("search_contract_and_paths", test_search_contract_and_paths);
  run("save_load_roundtrip_and_corruption", test_save_load_roundtrip_and_corruption);
  run("file_layout_overflow", test_file_layout_overflow);
  run("thread_pool", test_thread_pool);
  run("concurrent_search_and_mutation", test_concurrent_search_and_mutation);
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
