// noise_kernels.cuh: device code of the noise kernels (see noise.cu for the thread mapping).
// Apart from the launch code so that emulation/host_emulation.cpp can run them on the CPU.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "philox.h"

namespace egg_cuda {
namespace noise_detail {

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

// out[row, k - offset] = value k of stream (leaf, member_keys[row], epoch) for k in
// [offset, offset + count). Thread x-index walks the row's Philox blocks, y-index the rows
// (blockDim.y > 1 packs several short rows into one thread block: a B factor of a 16-wide
// layer is 4 Philox blocks per row, which would leave 252 of 256 threads idle).
// kAligned: offset % 4 == 0, count % 4 == 0 and out 16-byte aligned, so each block is one
// whole float4 of the row; otherwise the partial first/last blocks are stored lane by lane.
template <bool kAligned>
__global__ void normals_kernel(uint32_t k0, uint32_t k1, uint32_t leaf,
                               const uint32_t* __restrict__ member_keys, uint32_t epoch,
                               uint64_t offset, std::size_t rows, std::size_t count,
                               float* __restrict__ out) {
  const uint64_t first_block = offset / 4;
  const uint64_t blocks = (offset + count + 3) / 4 - first_block;
  const uint64_t stride_x = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  const std::size_t stride_y = static_cast<std::size_t>(gridDim.y) * blockDim.y;
  for (std::size_t row = blockIdx.y * static_cast<std::size_t>(blockDim.y) + threadIdx.y;
       row < rows; row += stride_y) {
    const uint32_t key = member_keys[row];
    float* dst = out + row * count;
    for (uint64_t t = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; t < blocks;
         t += stride_x) {
      const uint64_t block = first_block + t;
      float z[4];
      egg::normals_block(static_cast<uint32_t>(block), leaf, key, epoch, k0, k1, z);
      if (kAligned) {
        reinterpret_cast<float4*>(dst)[t] = make_float4(z[0], z[1], z[2], z[3]);
      } else {
#pragma unroll
        for (int lane = 0; lane < 4; ++lane) {
          const uint64_t k = block * 4 + lane;
          if (k >= offset && k < offset + count) dst[k - offset] = z[lane];
        }
      }
    }
  }
}

}  // namespace noise_detail
}  // namespace egg_cuda
