#include "spqindex/simd.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "spqindex/error.h"

namespace spqindex {
namespace {

// SPQINDEX_X86_KERNELS / SPQINDEX_NEON_KERNELS: the AVX2/AVX-512 resp. NEON kernel files are
// compiled in (CMakeLists.txt); without them the scalar level is the only one, whatever the CPU.
SimdLevel detect() {
#if SPQINDEX_NEON_KERNELS
  return SimdLevel::NEON;  // Advanced SIMD is part of every aarch64 CPU
#endif
#if SPQINDEX_X86_KERNELS
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  if (avx512) return SimdLevel::AVX512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return SimdLevel::AVX2;
#endif
  return SimdLevel::Scalar;
}

#if SPQINDEX_X86_KERNELS
bool cpu_has_vbmi() { return __builtin_cpu_supports("avx512vbmi"); }
#endif

// Each level's table comes complete from its ISA file; nothing is patched in here.
Kernels table_for(SimdLevel level) {
  switch (level) {
#if SPQINDEX_X86_KERNELS
    case SimdLevel::AVX512:
      return avx512_kernels(cpu_has_vbmi());
    case SimdLevel::AVX2:
      return avx2_kernels();
#endif
#if SPQINDEX_NEON_KERNELS
    case SimdLevel::NEON:
      return neon_kernels();
#endif
    default:
      return scalar_kernels();
  }
}

std::once_flag g_once;
Kernels g_tables[kNumSimdLevels];      // indexed by SimdLevel, filled once for supported levels
std::atomic<const Kernels*> g_active;  // what kernels() returns
SimdLevel g_cpu_level;

bool supported(SimdLevel level) {
  if (level == SimdLevel::Scalar || level == g_cpu_level) return true;
  return level == SimdLevel::AVX2 && g_cpu_level == SimdLevel::AVX512;
}

bool parse(const char* name, SimdLevel* out) {
  for (int l = 0; l < kNumSimdLevels; l++)
    if (!std::strcmp(name, simd_level_name(static_cast<SimdLevel>(l)))) {
      *out = static_cast<SimdLevel>(l);
      return true;
    }
  return false;
}

void init() {
  g_cpu_level = detect();
  SimdLevel level = g_cpu_level;
  if (const char* env = std::getenv("SPQINDEX_SIMD")) {
    SimdLevel want = level;
    if (!parse(env, &want))
      std::fprintf(
          stderr,
          "spqindex: warning: SPQINDEX_SIMD=%s is not one of scalar|avx2|avx512|neon; using %s\n",
          env, simd_level_name(level));
    else if (!supported(want))
      std::fprintf(stderr,
                   "spqindex: warning: SPQINDEX_SIMD=%s is not supported by this CPU; using %s\n",
                   env, simd_level_name(g_cpu_level));
    else
      level = want;
  }
  for (int l = 0; l < kNumSimdLevels; l++)
    if (supported(static_cast<SimdLevel>(l))) g_tables[l] = table_for(static_cast<SimdLevel>(l));
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

bool simd_level_supported(SimdLevel level) {
  std::call_once(g_once, init);
  return supported(level);
}

void set_simd_level(SimdLevel level) {
  std::call_once(g_once, init);
  SPQ_CHECK_ARG(supported(level),
                std::string("level: ") + simd_level_name(level) +
                    " is not supported by this CPU (best: " + simd_level_name(g_cpu_level) + ")");
  g_active.store(&g_tables[static_cast<int>(level)]);
}

const Kernels& kernels_for(SimdLevel level) {
  std::call_once(g_once, init);
  SPQ_CHECK_ARG(supported(level),
                std::string("level: ") + simd_level_name(level) + " is not supported by this CPU");
  return g_tables[static_cast<int>(level)];
}

const char* simd_level_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::AVX512:
      return "avx512";
    case SimdLevel::AVX2:
      return "avx2";
    case SimdLevel::NEON:
      return "neon";
    default:
      return "scalar";
  }
}

SimdLevel simd_level_from_name(const char* name) {
  SimdLevel level;
  SPQ_CHECK_ARG(
      parse(name, &level),
      std::string("level: expected \"scalar\", \"avx2\", \"avx512\" or \"neon\", got \"") + name +
          "\"");
  return level;
}

}  // namespace spqindex
