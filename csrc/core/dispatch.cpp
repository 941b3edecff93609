// dispatch.cpp: picks the best compiled kernel set for this processor, and owns the thread count.
#include <atomic>
#include <cstdlib>
#include <thread>

#include "core/kernels.h"
#include "core/parallel.h"

namespace egg {

namespace {
KernelTable make_table() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
#endif
#if defined(EGG_HAVE_AVX512)
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw")) {
    return {"avx512", &avx512::philox_blocks, &avx512::fill_normals, &avx512::lowrank_project,
            &avx512::lowrank_expand, &avx512::adam_step};
  }
#endif
#if defined(EGG_HAVE_AVX2)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    return {"avx2", &avx2::philox_blocks, &avx2::fill_normals, &avx2::lowrank_project,
            &avx2::lowrank_expand, &avx2::adam_step};
  }
#endif
  return {"baseline", &baseline::philox_blocks, &baseline::fill_normals, &baseline::lowrank_project,
            &baseline::lowrank_expand, &baseline::adam_step};
}

int default_threads() {
  if (const char* env = std::getenv("EGGROLL_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

std::atomic<int> g_threads{0};
}  // namespace

const KernelTable& kernels() {
  static const KernelTable table = make_table();
  return table;
}

int num_threads() {
  int n = g_threads.load(std::memory_order_relaxed);
  if (n <= 0) {
    n = default_threads();
    g_threads.store(n, std::memory_order_relaxed);
  }
  return n;
}

void set_num_threads(int n) { g_threads.store(n > 0 ? n : default_threads()); }

}  // namespace egg
