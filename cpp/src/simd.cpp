#include "spqindex/simd.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "spqindex/error.h"

namespace spqindex {
namespace {

// SPQINDEX_X86_KERNELS: the AVX2/AVX-512 kernel files are compiled in (CMakeLists.txt); without
// them the scalar level is the only one, whatever the CPU.
SimdLevel detect() {
#if SPQINDEX_X86_KERNELS
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  if (avx512) return SimdLevel::AVX512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return SimdLevel::AVX2;
#endif
  return SimdLevel::Scalar;
}

bool cpu_has_vbmi() {
#if SPQINDEX_X86_KERNELS
  return __builtin_cpu_supports("avx512vbmi");
#else
  return false;
#endif
}

Kernels table_for(SimdLevel level) {
#if SPQINDEX_X86_KERNELS
  Kernels k;
  switch (level) {
    case SimdLevel::AVX512:
      k = avx512_kernels();
      k.scan4 = scan4_avx512();
      if (cpu_has_vbmi()) k.scan8 = scan8_avx512vbmi();
      return k;
    case SimdLevel::AVX2:
      k = avx2_kernels();
      k.scan4 = scan4_avx2();
      return k;
    default: return scalar_kernels();
  }
#else
  (void)level;
  return scalar_kernels();
#endif
}

std::once_flag g_once;
Kernels g_tables[3];                    // indexed by SimdLevel, filled once
std::atomic<const Kernels*> g_active;   // what kernels() returns
SimdLevel g_cpu_level;

void init() {
  g_cpu_level = detect();
  SimdLevel level = g_cpu_level;
  if (const char* env = std::getenv("SPQINDEX_SIMD")) {
    SimdLevel want = level;
    if (!std::strcmp(env, "scalar")) want = SimdLevel::Scalar;
    else if (!std::strcmp(env, "avx2")) want = SimdLevel::AVX2;
    else if (!std::strcmp(env, "avx512")) want = SimdLevel::AVX512;
    else std::fprintf(stderr, "spqindex: warning: SPQINDEX_SIMD=%s is not one of scalar|avx2|avx512; using %s\n", env, simd_level_name(level));
    if (want > g_cpu_level)
      std::fprintf(stderr, "spqindex: warning: SPQINDEX_SIMD=%s is not supported by this CPU; using %s\n", env, simd_level_name(g_cpu_level));
    else
      level = want;
  }
  for (int l = 0; l <= static_cast<int>(g_cpu_level); l++)
    g_tables[l] = table_for(static_cast<SimdLevel>(l));
  g_active.store(&g_tables[static_cast<int>(level)]);
}

}  // namespace

const Kernels& kernels() {
  std::call_once(g_once, init);
  return *g_active.load(std::memory_order_acquire);
}

SimdLevel cpu_simd_level() {
  std::call_once(g_once, init);
  return g_cpu_level;
}

void set_simd_level(SimdLevel level) {
  std::call_once(g_once, init);
  SPQ_CHECK_ARG(level <= g_cpu_level, std::string("level: ") + simd_level_name(level) +
                                          " is not supported by this CPU (best: " +
                                          simd_level_name(g_cpu_level) + ")");
  g_active.store(&g_tables[static_cast<int>(level)]);
}

const char* simd_level_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::AVX512: return "avx512";
    case SimdLevel::AVX2: return "avx2";
    default: return "scalar";
  }
}

}  // namespace spqindex
