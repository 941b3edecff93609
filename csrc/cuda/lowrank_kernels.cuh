// lowrank_kernels.cuh: device code of the low-rank correction (see lowrank.cu for the design).
//
// Kept apart from the launch code so that the kernels have one definition whichever way they run:
// lowrank.cu launches them on the GPU, csrc/cuda/emulation/host_emulation.cpp runs them (and
// lowrank.cu's launch code) on the CPU to check them on machines without a GPU.
//
// Factor layout: the kernels read the factors rank-major, left (K, r, m) and right (K, r, n), so
// that the lanes of a warp, which walk m (project) or n (expand), read consecutive addresses for
// every rank (the contract's (K, m, r) layout would put lanes r floats apart). For r = 1 the two
// layouts are the same memory.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "cuda/launch.cuh"
#include "cuda/lowrank.cuh"

namespace egg_cuda {
namespace lowrank_detail {

constexpr int kWarp = 32;

// The shape plus the launch-time divisor that splits a flat row index into (member, batch row).
struct Rows {
  LowrankShape s;
  FastDivmod by_batch;
};

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int s = kWarp / 2; s > 0; s /= 2) v += __shfl_xor_sync(0xffffffffu, v, s);
  return v;
}

// xa[row, :] = coef[i] * x_row @ A_k, one warp per row, ranks in chunks of kChunk accumulators
// per thread (1 for rank 1: one register, one reduction; the host picks the smallest chunk that
// covers r, up to 8). Only the chunk's live ranks are reduced across the warp.
template <class T, int kChunk>
__global__ void project_kernel(const T* __restrict__ x, bool x_per_member,
                               const float* __restrict__ left, const uint32_t* __restrict__ keys,
                               const float* __restrict__ coef, Rows rs, float* __restrict__ xa) {
  const LowrankShape& s = rs.s;
  const int lane = threadIdx.x % kWarp;
  const std::size_t warps_per_block = blockDim.x / kWarp;
  const std::size_t rows = s.members * s.batch;
  const std::size_t r = s.rank;
  for (std::size_t row = blockIdx.x * warps_per_block + threadIdx.x / kWarp; row < rows;
       row += static_cast<std::size_t>(gridDim.x) * warps_per_block) {
    std::size_t i, b;
    rs.by_batch.divmod(row, i, b);
    const uint32_t k = keys[i];
    float* dst = xa + row * r;
    if (k >= s.keys) {  // invalid key: poison the member's output instead of reading past A
      for (std::size_t q = lane; q < r; q += kWarp) dst[q] = NAN;
      continue;
    }
    const T* xr = x + (x_per_member ? row : b) * s.m;
    const float* a = left + static_cast<std::size_t>(k) * r * s.m;  // (r, m), rank-major
    const float c = coef[i];
    for (std::size_t r0 = 0; r0 < r; r0 += kChunk) {
      const std::size_t live = r - r0 < kChunk ? r - r0 : kChunk;
      float acc[kChunk];
#pragma unroll
      for (int q = 0; q < kChunk; ++q) acc[q] = 0.0f;
#pragma unroll 4
      for (std::size_t j = lane; j < s.m; j += kWarp) {
        const float xv = to_float(xr[j]);
#pragma unroll
        for (int q = 0; q < kChunk; ++q) {  // consecutive j across lanes for every rank
          if (static_cast<std::size_t>(q) < live) acc[q] += xv * a[(r0 + q) * s.m + j];
        }
      }
#pragma unroll
      for (int q = 0; q < kChunk; ++q) {
        if (static_cast<std::size_t>(q) < live) {  // uniform across the warp: shuffles converge
          const float v = warp_sum(acc[q]);
          if (lane == 0) dst[r0 + q] = c * v;
        }
      }
    }
  }
}

// out[row, cols] (+)= xa[row, :] @ B_k[cols, :]^T. Threads: x over column groups of kCols,
// y over rows, so narrow outputs (n = 16) still use whole blocks. kCols == 4: n % 4 == 0 and
// out, right and base are 16-byte aligned, so each rank's slice of B and each group of out is
// one float4.
template <int kCols>
__global__ void expand_kernel(const float* __restrict__ xa, const float* __restrict__ right,
                              const uint32_t* __restrict__ keys, Rows rs,
                              const float* __restrict__ base, float* __restrict__ out) {
  const LowrankShape& s = rs.s;
  const std::size_t rows = s.members * s.batch;
  const std::size_t groups = (s.n + kCols - 1) / kCols;
  const std::size_t r = s.rank;
  const std::size_t row_step = static_cast<std::size_t>(gridDim.y) * blockDim.y;
  const std::size_t col_step = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t row = blockIdx.y * static_cast<std::size_t>(blockDim.y) + threadIdx.y;
       row < rows; row += row_step) {
    std::size_t i, b;
    rs.by_batch.divmod(row, i, b);
    const uint32_t k = keys[i];
    const bool valid = k < s.keys;
    const float* w = right + (valid ? static_cast<std::size_t>(k) : 0) * r * s.n;  // (r, n)
    const float* coeffs = xa + row * r;
    float* o = out + row * s.n;
    const float* bs = base == nullptr ? nullptr : base + b * s.n;
    for (std::size_t g = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
         g < groups; g += col_step) {
      const std::size_t c0 = g * kCols;
      float add[kCols];
#pragma unroll
      for (int t = 0; t < kCols; ++t) add[t] = valid ? 0.0f : NAN;
      if (valid) {
        for (std::size_t q = 0; q < r; ++q) {
          const float aq = coeffs[q];
          const float* wq = w + q * s.n;
          if (kCols == 4) {
            EGG_VEC_ACCESS(wq + c0);
            const float4 b4 = reinterpret_cast<const float4*>(wq)[g];
            add[0] += aq * b4.x;
            add[1] += aq * b4.y;
            add[2] += aq * b4.z;
            add[3] += aq * b4.w;
          } else {
#pragma unroll
            for (int t = 0; t < kCols; ++t) {
              if (kCols == 1 || c0 + t < s.n) add[t] += aq * wq[c0 + t];
            }
          }
        }
      }
      if (kCols == 4) {
        EGG_VEC_ACCESS(o + c0);
        if (bs != nullptr) EGG_VEC_ACCESS(bs + c0);
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
