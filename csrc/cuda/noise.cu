// noise.cu: Philox4x32-10 and Box-Muller on the device, from the same philox.h as the CPU core.
#include <cstdint>

#include "cuda/noise.cuh"
#include "philox.h"

namespace egg_cuda {

namespace {

__global__ void philox_kernel(const uint32_t* __restrict__ counters, std::size_t n, uint32_t k0,
                              uint32_t k1, uint32_t* __restrict__ out) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const uint4 c = reinterpret_cast<const uint4*>(counters)[i];
    uint32_t c0 = c.x, c1 = c.y, c2 = c.z, c3 = c.w;
    egg::philox4x32_10(c0, c1, c2, c3, k0, k1);
    reinterpret_cast<uint4*>(out)[i] = make_uint4(c0, c1, c2, c3);
  }
}

// One thread per Philox block (4 values) of one row; rows are members.
__global__ void normals_kernel(uint32_t k0, uint32_t k1, uint32_t leaf,
                               const uint32_t* __restrict__ member_keys, uint32_t epoch,
                               uint64_t offset, std::size_t rows, std::size_t count,
                               float* __restrict__ out) {
  const uint64_t first_block = offset / 4;
  const uint64_t last_block = (offset + count + 3) / 4;  // exclusive
  const uint64_t blocks = last_block - first_block;
  const std::size_t total = rows * blocks;
  for (std::size_t t = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::size_t row = t / blocks;
    const uint64_t block = first_block + t % blocks;
    float z[4];
    egg::normals_block(static_cast<uint32_t>(block), leaf, member_keys[row], epoch, k0, k1, z);
    float* dst = out + row * count;
#pragma unroll
    for (int lane = 0; lane < 4; ++lane) {
      const uint64_t k = block * 4 + lane;
      if (k >= offset && k < offset + count) dst[k - offset] = z[lane];
    }
  }
}

int grid_for(std::size_t work, int threads) {
  const std::size_t blocks = (work + threads - 1) / threads;
  return static_cast<int>(blocks < 65535 * 32 ? (blocks == 0 ? 1 : blocks) : 65535 * 32);
}

}  // namespace

void philox_blocks(const uint32_t* counters, std::size_t n, uint32_t k0, uint32_t k1,
                   uint32_t* out, cudaStream_t stream) {
  if (n == 0) return;
  philox_kernel<<<grid_for(n, 256), 256, 0, stream>>>(counters, n, k0, k1, out);
  check(cudaGetLastError(), "philox kernel launch");
}

void fill_normals(uint64_t seed, uint32_t leaf, const uint32_t* member_keys, uint32_t epoch,
                  uint64_t offset, std::size_t rows, std::size_t count, float* out,
                  cudaStream_t stream) {
  if (rows == 0 || count == 0) return;
  const std::size_t blocks = (offset + count + 3) / 4 - offset / 4;
  normals_kernel<<<grid_for(rows * blocks, 256), 256, 0, stream>>>(
      static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), leaf, member_keys, epoch,
      offset, rows, count, out);
  check(cudaGetLastError(), "normals kernel launch");
}

}  // namespace egg_cuda
