// lowrank_kernels.cuh: device code of the low-rank correction (see lowrank.cu for the design).
//
// Kept apart from the launch code so that the kernels have one definition whichever way they run:
// lowrank.cu launches them on the GPU, csrc/cuda/emulation/host_emulation.cpp runs them on the
// CPU to check them on machines without a GPU.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "cuda/lowrank.cuh"

namespace egg_cuda {
namespace lowrank_detail {

constexpr int kWarp = 32;
constexpr int kRankChunk = 8;  // accumulators a thread keeps in registers per pass over x

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int s = kWarp / 2; s > 0; s /= 2) v += __shfl_xor_sync(0xffffffffu, v, s);
  return v;
}

// xa[row, :] = coef[i] * x_row @ A_k, one warp per row; ranks in chunks of kRankChunk.
template <class T>
__global__ void project_kernel(const T* __restrict__ x, bool x_per_member,
                               const float* __restrict__ left, const uint32_t* __restrict__ keys,
                               const float* __restrict__ coef, LowrankShape s,
                               float* __restrict__ xa) {
  const int lane = threadIdx.x % kWarp;
  const std::size_t warps_per_block = blockDim.x / kWarp;
  const std::size_t rows = s.members * s.batch;
  const std::size_t r = s.rank;
  for (std::size_t row = blockIdx.x * warps_per_block + threadIdx.x / kWarp; row < rows;
       row += static_cast<std::size_t>(gridDim.x) * warps_per_block) {
    const std::size_t i = row / s.batch;
    const uint32_t k = keys[i];
    float* dst = xa + row * r;
    if (k >= s.keys) {  // invalid key: poison the member's output instead of reading past A
      for (std::size_t q = lane; q < r; q += kWarp) dst[q] = NAN;
      continue;
    }
    const T* xr = x + (x_per_member ? row : row % s.batch) * s.m;
    const float* a = left + static_cast<std::size_t>(k) * s.m * r;
    const float c = coef[i];
    for (std::size_t r0 = 0; r0 < r; r0 += kRankChunk) {
      float acc[kRankChunk];
#pragma unroll
      for (int q = 0; q < kRankChunk; ++q) acc[q] = 0.0f;
      if (r == 1) {  // the common EGGROLL case: one coalesced stream of x and of A
#pragma unroll 4
        for (std::size_t j = lane; j < s.m; j += kWarp) acc[0] += to_float(xr[j]) * a[j];
      } else {
#pragma unroll 2
        for (std::size_t j = lane; j < s.m; j += kWarp) {
          const float xv = to_float(xr[j]);
          const float* aj = a + j * r + r0;
#pragma unroll
          for (int q = 0; q < kRankChunk; ++q) {
            if (r0 + q < r) acc[q] += xv * aj[q];
          }
        }
      }
#pragma unroll
      for (int q = 0; q < kRankChunk; ++q) {
        const float v = warp_sum(acc[q]);
        if (lane == 0 && r0 + q < r) dst[r0 + q] = c * v;
      }
    }
  }
}

// out[row, cols] (+)= xa[row, :] @ B_k[cols, :]^T. Threads: x over column groups of kCols,
// y over rows, so narrow outputs (n = 16) still use whole blocks.
template <int kCols>
__global__ void expand_kernel(const float* __restrict__ xa, const float* __restrict__ right,
                              const uint32_t* __restrict__ keys, LowrankShape s,
                              const float* __restrict__ base, float* __restrict__ out) {
  const std::size_t rows = s.members * s.batch;
  const std::size_t groups = (s.n + kCols - 1) / kCols;
  const std::size_t r = s.rank;
  const std::size_t row_step = static_cast<std::size_t>(gridDim.y) * blockDim.y;
  const std::size_t col_step = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t row = blockIdx.y * static_cast<std::size_t>(blockDim.y) + threadIdx.y;
       row < rows; row += row_step) {
    const std::size_t i = row / s.batch;
    const uint32_t k = keys[i];
    const bool valid = k < s.keys;
    const float* w = right + (valid ? static_cast<std::size_t>(k) : 0) * s.n * r;
    const float* coeffs = xa + row * r;
    float* o = out + row * s.n;
    const float* bs = base == nullptr ? nullptr : base + (row % s.batch) * s.n;
    for (std::size_t g = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
         g < groups; g += col_step) {
      const std::size_t c0 = g * kCols;
      float add[kCols];
#pragma unroll
      for (int t = 0; t < kCols; ++t) add[t] = 0.0f;
      if (!valid) {
#pragma unroll
        for (int t = 0; t < kCols; ++t) add[t] = NAN;
      } else if (kCols == 4 && r == 1) {  // aligned rank 1: one float4 of B per group
        const float a0 = coeffs[0];
        const float4 b4 = reinterpret_cast<const float4*>(w)[g];
        add[0] = a0 * b4.x;
        add[1] = a0 * b4.y;
        add[2] = a0 * b4.z;
        add[3] = a0 * b4.w;
      } else {
        for (std::size_t q = 0; q < r; ++q) {
          const float aq = coeffs[q];
#pragma unroll
          for (int t = 0; t < kCols; ++t) {
            if (kCols == 1 || c0 + t < s.n) add[t] += aq * w[(c0 + t) * r + q];
          }
        }
      }
      if (kCols == 4) {  // the host only picks kCols == 4 when n % 4 == 0 and rows are aligned
        const float4 prev = bs != nullptr ? reinterpret_cast<const float4*>(bs)[g]
                                          : reinterpret_cast<const float4*>(o)[g];
        reinterpret_cast<float4*>(o)[g] =
            make_float4(prev.x + add[0], prev.y + add[1], prev.z + add[2], prev.w + add[3]);
      } else {
#pragma unroll
        for (int t = 0; t < kCols; ++t) {
          const std::size_t c = c0 + t;
          if (c < s.n) o[c] = (bs != nullptr ? bs[c] : o[c]) + add[t];
        }
      }
    }
  }
}

}  // namespace lowrank_detail
}  // namespace egg_cuda
