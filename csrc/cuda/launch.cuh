// launch.cuh: grid sizing and kernel launch shared by the kernels (grid-stride loops capped by the
// device's SMs), plus the fast division the kernels use to split flat row indices.
//
// Compiled with EGG_HOST_EMULATION defined (csrc/cuda/emulation/host_emulation.cpp), the same
// launch code runs the kernels on the CPU: `launch` hands them to the emulator instead of the
// driver and the SM count is the emulator's (small, so that grid-stride loops take many turns).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "cuda/cuda_check.h"

#if defined(EGG_HOST_EMULATION)
namespace egg_emu {
// Defined by the emulator: runs body() once per thread of the grid, warps' lanes concurrently.
template <class Body>
void run_grid(dim3 grid, dim3 block, Body&& body);
constexpr int kSMs = 2;
// Blocks a capped grid may have (the emulator lowers it to make grid-stride loops turn on small
// cases); kSMs * kBlocksPerSM by default.
unsigned max_blocks();
// Records a float4/uint4 access at an address that is not 16-byte aligned (a fault on a GPU).
void vector_access(const void* p);
}  // namespace egg_emu
// Marks a 16-byte vector access at p: checked under emulation, free on the device.
#define EGG_VEC_ACCESS(p) ::egg_emu::vector_access(p)
#else
#define EGG_VEC_ACCESS(p) ((void)0)
#endif

namespace egg_cuda {

// Blocks per multiprocessor worth launching for a grid-stride loop: enough resident warps to hide
// memory latency; more blocks only add scheduling overhead.
constexpr int kBlocksPerSM = 32;
constexpr unsigned kMaxGridY = 65535;
constexpr unsigned kMaxGridZ = 65535;
// Threads per block of every kernel (8 warps).
constexpr int kBlockThreads = 256;

// 16-byte alignment, what a float4/uint4 access needs.
inline bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

// Multiprocessors of the current device; a fallback when the query fails (no driver), in which
// case the launch that follows reports the real error.
inline int sm_count() {
#if defined(EGG_HOST_EMULATION)
  return egg_emu::kSMs;
#else
  int dev = 0, sms = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
      sms <= 0) {
    cudaGetLastError();
    return 108;
  }
  return sms;
#endif
}

// Launches kernel<<<grid, block, 0, stream>>>(args...) and turns a launch error into an
// exception naming `what` (under emulation: runs it on the CPU).
template <class... Params, class... Args>
void launch(const char* what, void (*kernel)(Params...), dim3 grid, dim3 block,
            cudaStream_t stream, Args... args) {
#if defined(EGG_HOST_EMULATION)
  (void)what;
  (void)stream;
  egg_emu::run_grid(grid, block, [&] { kernel(static_cast<Params>(args)...); });
#elif defined(__CUDACC__)
  kernel<<<grid, block, 0, stream>>>(static_cast<Params>(args)...);
  check(cudaGetLastError(), what);
#else
  // A host compiler (an emulator of other kernels) may include this header for grid sizing; it
  // cannot parse <<<>>>, and launches nothing.
  static_assert(sizeof...(Args) < 0, "egg_cuda::launch needs nvcc or EGG_HOST_EMULATION");
#endif
}

// Most blocks worth launching for a grid-stride loop.
inline std::size_t grid_cap() {
#if defined(EGG_HOST_EMULATION)
  return egg_emu::max_blocks();
#else
  return static_cast<std::size_t>(sm_count()) * kBlocksPerSM;
#endif
}

// 1-D grid for `work` items, `threads` per block, capped for grid-stride loops.
inline unsigned grid_1d(std::size_t work, int threads) {
  const std::size_t need = (work + threads - 1) / threads;
  const std::size_t cap = grid_cap();
  return static_cast<unsigned>(std::max<std::size_t>(1, std::min(need, cap)));
}

struct Launch {
  dim3 grid;
  dim3 block;
};

// 2-D blocks for `cols` independent items in each of `rows` rows: block x spans up to `threads`
// items of a row (a power of two, down to 1 for narrow rows, so narrow outputs still fill whole
// blocks), block y the rest of `threads` as rows. The grid is capped like grid_1d; kernels loop
// over the remaining rows and columns.
inline Launch grid_cols_rows(std::size_t cols, std::size_t rows, unsigned threads) {
  unsigned tx = 1;
  while (tx < cols && tx < threads) tx *= 2;
  const unsigned ty = threads / tx;
  const std::size_t cap = grid_cap();
  const std::size_t need_x = std::max<std::size_t>(1, (cols + tx - 1) / tx);
  const std::size_t need_y = std::max<std::size_t>(1, (rows + ty - 1) / ty);
  const std::size_t gx = std::min(need_x, cap);
  const std::size_t gy = std::min({need_y, std::max<std::size_t>(1, cap / gx),
                                   static_cast<std::size_t>(kMaxGridY)});
  return {dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy), 1), dim3(tx, ty, 1)};
}

// q = n / d and r = n % d for a divisor fixed at launch, without the ~70-instruction 64-bit
// division a `/` by a runtime size_t compiles to. Dividends below 2^32 (every realistic row
// index) take a multiply-high and a shift (Granlund and Montgomery's round-up method, exact for
// all 32-bit n and 1 <= d < 2^32); larger ones, and divisors >= 2^32, fall back to `/`.
struct FastDivmod {
  std::size_t d = 1;
  uint32_t d32 = 1, mul = 0, shift = 0;
  bool narrow = true;  // d < 2^32: the fast path is usable for n < 2^32

  FastDivmod() = default;
  explicit FastDivmod(std::size_t divisor) : d(divisor == 0 ? 1 : divisor) {
    narrow = d <= 0xFFFFFFFFull;
    if (!narrow) return;
    d32 = static_cast<uint32_t>(d);
    while ((uint64_t{1} << shift) < d32) ++shift;  // shift = ceil(log2 d)
    // mul = floor(2^32 * (2^shift - d) / d) + 1: 32 bits suffice, as 2^(shift-1) < d <= 2^shift.
    mul = static_cast<uint32_t>(((uint64_t{1} << 32) * ((uint64_t{1} << shift) - d32)) / d32 + 1);
  }

  __host__ __device__ __forceinline__ static uint32_t umulhi(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
    return __umulhi(a, b);
#else
    return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
#endif
  }

  __host__ __device__ __forceinline__ void divmod(std::size_t n, std::size_t& q,
                                                  std::size_t& r) const {
    if (narrow && n <= 0xFFFFFFFFull) {
      const uint32_t n32 = static_cast<uint32_t>(n);
      const uint32_t q32 =
          static_cast<uint32_t>((static_cast<uint64_t>(umulhi(n32, mul)) + n32) >> shift);
      q = q32;
      r = n32 - q32 * d32;
    } else {
      q = n / d;
      r = n - q * d;
    }
  }
};

}  // namespace egg_cuda
