// noise.cu: Philox4x32-10 and Box-Muller on the device, from the same philox.h as the CPU core.
//
// The math lives only in philox.h; this file decides how threads map onto Philox blocks. One
// thread computes one block (4 normals) because Philox is compute-bound and a block is its
// natural unit; rows (members) map to the y dimension so no thread divides 64-bit integers to
// find its row, and short rows share a thread block (grid_cols_rows) instead of idling it. When a row's values start on a block boundary and the row is
// 16-byte aligned, every block is stored with one float4 store.
#include <cstdint>

#include "cuda/launch.cuh"
#include "cuda/noise.cuh"
#include "cuda/noise_kernels.cuh"

namespace egg_cuda {

using noise_detail::normals_kernel;
using noise_detail::philox_kernel;

void philox_blocks(const uint32_t* counters, std::size_t n, uint32_t k0, uint32_t k1,
                   uint32_t* out, cudaStream_t stream) {
  if (n == 0) return;
  constexpr int kThreads = 256;
  philox_kernel<<<grid_1d(n, kThreads), kThreads, 0, stream>>>(counters, n, k0, k1, out);
  check(cudaGetLastError(), "philox kernel launch");
}

void fill_normals(uint64_t seed, uint32_t leaf, const uint32_t* member_keys, uint32_t epoch,
                  uint64_t offset, std::size_t rows, std::size_t count, float* out,
                  cudaStream_t stream) {
  if (rows == 0 || count == 0) return;
  constexpr int kThreads = 256;
  const std::size_t blocks = (offset + count + 3) / 4 - offset / 4;
  const Launch l = grid_cols_rows(blocks, rows, kThreads);
  const uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  const bool aligned = offset % 4 == 0 && count % 4 == 0 &&
                       reinterpret_cast<std::uintptr_t>(out) % 16 == 0;
  if (aligned) {
    normals_kernel<true><<<l.grid, l.block, 0, stream>>>(k0, k1, leaf, member_keys, epoch, offset,
                                                        rows, count, out);
  } else {
    normals_kernel<false><<<l.grid, l.block, 0, stream>>>(k0, k1, leaf, member_keys, epoch,
                                                         offset, rows, count, out);
  }
  check(cudaGetLastError(), "normals kernel launch");
}

}  // namespace egg_cuda
