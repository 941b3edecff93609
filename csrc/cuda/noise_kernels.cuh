// noise_kernels.cuh: device code of the noise kernels (see noise.cu for the thread mapping).
// Apart from the launch code so that emulation/host_emulation.cpp can run them on the CPU.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "cuda/launch.cuh"
#include "philox.h"

namespace egg_cuda {
namespace noise_detail {

// out[i] = Philox4x32-10 of counters[i]. kVec: both pointers are 16-byte aligned, so a counter is
// one uint4 load and store; otherwise four 32-bit ones (a uint4 access at an address that is not
// a multiple of 16 is cudaErrorMisalignedAddress, which poisons the whole CUDA context).
template <bool kVec>
__global__ void philox_kernel(const uint32_t* __restrict__ counters, std::size_t n, uint32_t k0,
                              uint32_t k1, uint32_t* __restrict__ out) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    uint32_t c0, c1, c2, c3;
    if (kVec) {
      EGG_VEC_ACCESS(counters + 4 * i);
      EGG_VEC_ACCESS(out + 4 * i);
      const uint4 c = reinterpret_cast<const uint4*>(counters)[i];
      c0 = c.x, c1 = c.y, c2 = c.z, c3 = c.w;
    } else {
      c0 = counters[4 * i], c1 = counters[4 * i + 1], c2 = counters[4 * i + 2];
      c3 = counters[4 * i + 3];
    }
    egg::philox4x32_10(c0, c1, c2, c3, k0, k1);
    if (kVec) {
      reinterpret_cast<uint4*>(out)[i] = make_uint4(c0, c1, c2, c3);
    } else {
      out[4 * i] = c0, out[4 * i + 1] = c1, out[4 * i + 2] = c2, out[4 * i + 3] = c3;
    }
  }
}

// One request of a normals fill: out[row, k - offset] = value k of stream (leaf, key[row], epoch)
// for k in [offset, offset + count). `aligned`: offset % 4 == 0, count % 4 == 0 and out 16-byte
// aligned, so each Philox block is one whole float4 of the row; otherwise the partial first/last
// blocks are stored lane by lane.
struct NormalsJob {
  float* out;
  uint64_t offset;
  uint64_t count;
  uint32_t leaf;
  uint32_t aligned;
};

// Requests one launch serves (blockIdx.z); the table travels as a kernel parameter (4 KiB limit).
constexpr int kMaxJobs = 32;
struct NormalsJobs {
  NormalsJob job[kMaxJobs];
};

// The rows of `job` this thread covers: thread x-index walks a row's Philox blocks, y-index the
// rows (blockDim.y > 1 packs several short rows into one thread block: a B factor of a 16-wide
// layer is 4 Philox blocks per row, which would leave 252 of 256 threads idle).
template <bool kAligned>
__device__ __forceinline__ void fill_rows(uint32_t k0, uint32_t k1, const NormalsJob& job,
                                          const uint32_t* __restrict__ member_keys,
                                          uint32_t epoch, std::size_t rows) {
  const uint64_t offset = job.offset, count = job.count;
  const uint64_t first_block = offset / 4;
  const uint64_t blocks = (offset + count + 3) / 4 - first_block;
  const uint64_t stride_x = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  const std::size_t stride_y = static_cast<std::size_t>(gridDim.y) * blockDim.y;
  for (std::size_t row = blockIdx.y * static_cast<std::size_t>(blockDim.y) + threadIdx.y;
       row < rows; row += stride_y) {
    const uint32_t key = member_keys[row];
    float* dst = job.out + row * count;
    for (uint64_t t = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; t < blocks;
         t += stride_x) {
      const uint64_t block = first_block + t;
      float z[4];
      egg::normals_block(static_cast<uint32_t>(block), job.leaf, key, epoch, k0, k1, z);
      if (kAligned) {
        EGG_VEC_ACCESS(dst + 4 * t);
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

// Up to kMaxJobs requests for the same members and epoch, blockIdx.z picking the request
// (noise.normals_many: every factor of a generation in one launch, keys uploaded once).
__global__ void normals_many_kernel(uint32_t k0, uint32_t k1, NormalsJobs jobs,
                                    const uint32_t* __restrict__ member_keys, uint32_t epoch,
                                    std::size_t rows) {
  const NormalsJob& job = jobs.job[blockIdx.z];
  if (job.aligned) {
    fill_rows<true>(k0, k1, job, member_keys, epoch, rows);
  } else {
    fill_rows<false>(k0, k1, job, member_keys, epoch, rows);
  }
}

}  // namespace noise_detail
}  // namespace egg_cuda
