// launch.cuh: grid sizing shared by the kernels (grid-stride loops capped by the device's SMs).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>

namespace egg_cuda {

// Blocks per multiprocessor worth launching for a grid-stride loop: enough resident warps to hide
// memory latency; more blocks only add scheduling overhead.
constexpr int kBlocksPerSM = 32;
constexpr unsigned kMaxGridY = 65535;

// Multiprocessors of the current device; a fallback when the query fails (no driver), in which
// case the launch that follows reports the real error.
inline int sm_count() {
  int dev = 0, sms = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
      sms <= 0) {
    cudaGetLastError();
    return 108;
  }
  return sms;
}

// 1-D grid for `work` items, `threads` per block, capped for grid-stride loops.
inline unsigned grid_1d(std::size_t work, int threads) {
  const std::size_t need = (work + threads - 1) / threads;
  const std::size_t cap = static_cast<std::size_t>(sm_count()) * kBlocksPerSM;
  return static_cast<unsigned>(std::max<std::size_t>(1, std::min(need, cap)));
}

// 2-D grid: x covers `work_x` items per row (capped as grid_1d), y covers `rows` (capped at the
// hardware limit; kernels loop over the remaining rows).
inline dim3 grid_2d(std::size_t work_x, std::size_t rows, int threads) {
  const std::size_t need_x = (work_x + threads - 1) / threads;
  const std::size_t cap = static_cast<std::size_t>(sm_count()) * kBlocksPerSM;
  const unsigned gx = static_cast<unsigned>(std::max<std::size_t>(1, std::min(need_x, cap)));
  const unsigned gy = static_cast<unsigned>(std::max<std::size_t>(1, std::min<std::size_t>(rows, kMaxGridY)));
  return dim3(gx, gy, 1);
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
  const std::size_t cap = static_cast<std::size_t>(sm_count()) * kBlocksPerSM;
  const std::size_t need_x = std::max<std::size_t>(1, (cols + tx - 1) / tx);
  const std::size_t need_y = std::max<std::size_t>(1, (rows + ty - 1) / ty);
  const std::size_t gx = std::min(need_x, cap);
  const std::size_t gy = std::min({need_y, std::max<std::size_t>(1, cap / gx),
                                   static_cast<std::size_t>(kMaxGridY)});
  return {dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy), 1), dim3(tx, ty, 1)};
}

}  // namespace egg_cuda
