// fused_kernels.cuh: device code of the fused population linear layer (see fused.cu).
//
// The arithmetic of every output value is the plain epilogue's (layers_kernels.cuh): the rank
// sum s = sum_q xa[q] * right[q] in ascending q, h += coef * s, then the bias, its noise and the
// activation (layers_math.cuh). Only where a factor value comes from differs: `Values` generates it from Philox or
// reads it from memory, so generated and held factors give the same bits. Kept apart from the
// launches so that csrc/cuda/emulation runs the same kernels on the CPU.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "cuda/fused.cuh"
#include "cuda/launch.cuh"
#include "cuda/layers_math.cuh"
#include "cuda/lowrank_kernels.cuh"
#include "philox.h"

namespace egg_cuda {
namespace fused_detail {

using lowrank_detail::kWarp;
using lowrank_detail::warp_sum;

// The run's Philox key and the generation's noise epoch.
struct Streams {
  uint32_t k0, k1, epoch;
};

__device__ __forceinline__ float lane_of(const float z[4], uint64_t v) {
  const unsigned l = static_cast<unsigned>(v & 3u);  // selects, not an indexed (local) array
  return l == 0 ? z[0] : (l == 1 ? z[1] : (l == 2 ? z[2] : z[3]));
}

// One factor's values for one key. Generated: the last Philox block is kept, so values read in
// ascending order cost one block per four (rank 1: four consecutive columns, one block).
template <bool kGen>
class Values {
 public:
  __device__ Values(const FactorSource& src, const Streams& st, uint32_t key, std::size_t rank)
      : src_(src), st_(st), key_(key), rank_(rank) {}

  __device__ float at(std::size_t row, std::size_t q) {
    if (!kGen) {
      return src_.held[static_cast<long long>(key_) * src_.stride[0] +
                       static_cast<long long>(row) * src_.stride[1] +
                       static_cast<long long>(q) * src_.stride[2]];
    }
    const uint64_t v = src_.offset + row * rank_ + q;
    if ((v >> 2) != block_) {
      block_ = v >> 2;
      egg::normals_block(static_cast<uint32_t>(block_), src_.leaf, key_, st_.epoch, st_.k0,
                         st_.k1, z_);
    }
    return lane_of(z_, v);
  }

 private:
  const FactorSource& src_;
  const Streams& st_;
  uint32_t key_;
  std::size_t rank_;
  uint64_t block_ = ~uint64_t{0};
  float z_[4] = {0.0f, 0.0f, 0.0f, 0.0f};
};

// xa[p, j, :] = x[(p or 0), j, :] @ left(key_p): one warp per (slot, row). Lane l walks the
// Philox blocks l, l + 32, ... of the factor's values (four consecutive values of the (m, r)
// factor each: one block generated, four x reads), accumulates in ascending value order, and
// the warp adds the 32 partial sums by the butterfly of warp_sum. Held factors are read in the
// same order (the same partition into blocks), so both give the same bits.
template <bool kGen, int kR>
__global__ void project_kernel(FusedLinear a, Streams st, FastDivmod by_rank, FastDivmod by_rows) {
  const int lane = threadIdx.x % kWarp;
  const std::size_t warps_per_block = blockDim.x / kWarp;
  const std::size_t total = a.slots * a.rows;
  const std::size_t r = a.rank;
  const uint64_t off = a.left.offset, len = static_cast<uint64_t>(a.m) * r;
  const uint64_t first = off / 4, last = (off + len + 3) / 4;
  for (std::size_t w = blockIdx.x * warps_per_block + threadIdx.x / kWarp; w < total;
       w += static_cast<std::size_t>(gridDim.x) * warps_per_block) {
    std::size_t p, j;
    by_rows.divmod(w, p, j);
    const uint32_t key = a.slot_keys != nullptr ? a.slot_keys[p] : a.keys[p];
    float* dst = a.xa + w * r;
    if (!kGen && key >= a.keys_bound) {  // held factors: never read past them
      for (std::size_t q = lane; q < r; q += kWarp) dst[q] = NAN;
      continue;
    }
    const float* xr = a.x + (a.slot_keys == nullptr ? w : j) * a.m;
    Values<kGen> left(a.left, st, key, r);
    float acc[kR];
#pragma unroll
    for (int t = 0; t < kR; ++t) acc[t] = 0.0f;
    for (uint64_t b = first + lane; b < last; b += kWarp) {
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const uint64_t v = 4 * b + u;
        if (v < off || v >= off + len) continue;
        std::size_t row, q;
        by_rank.divmod(static_cast<std::size_t>(v - off), row, q);
        const float prod = xr[row] * left.at(row, q);
#pragma unroll
        for (int t = 0; t < kR; ++t) {
          if (static_cast<std::size_t>(t) == q) acc[t] += prod;  // registers, not local memory
        }
      }
    }
#pragma unroll
    for (int t = 0; t < kR; ++t) {
      if (static_cast<std::size_t>(t) < r) {  // uniform across the warp: shuffles converge
        const float v = warp_sum(acc[t]);
        if (lane == 0) dst[t] = v;
      }
    }
  }
}

// Four consecutive outputs of one (member, row) per thread: act(src + coef * s + bias + noise).
template <bool kGen>
__global__ void epilogue_kernel(FusedLinear a, Streams st, FastDivmod by_groups,
                                FastDivmod by_rows) {
  const std::size_t groups = (a.n + 3) / 4;
  const std::size_t total = a.members * a.rows * groups;
  const std::size_t r = a.rank;
  const std::size_t step = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t idx = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       idx < total; idx += step) {
    std::size_t row, g, i, j;
    by_groups.divmod(idx, row, g);  // row = i * rows + j
    by_rows.divmod(row, i, j);
    const std::size_t c0 = g * 4, c1 = c0 + 4 < a.n ? c0 + 4 : a.n;
    float* o = a.out + row * a.n;
    const uint32_t key = a.keys[i];
    const std::size_t xr = a.xa_rows != nullptr ? a.xa_rows[i] : i;
    if ((!kGen && key >= a.keys_bound) || xr >= a.slots) {
      for (std::size_t c = c0; c < c1; ++c) o[c] = NAN;
      continue;
    }
    const float* t = a.xa + (xr * a.rows + j) * r;
    const float coef = a.coef[i];
    const float bias_coef = a.bias_noisy ? a.bias_coef[i] : 0.0f;
    Values<kGen> right(a.right, st, key, r);
    Values<kGen> noise(a.bias_noise, st, key, 1);
    for (std::size_t c = c0; c < c1; ++c) {
      float h = a.base != nullptr ? a.base[j * a.n + c] : o[c];
      float s = 0.0f;
      for (std::size_t q = 0; q < r; ++q) s += t[q] * right.at(c, q);
      h += coef * s;
      const float bn = a.bias_noisy ? noise.at(c, 0) : 0.0f;
      o[c] = layers_detail::finish_with(a.bias, a.bias_noisy, bias_coef, bn, h, c, a.act);
    }
  }
}

}  // namespace fused_detail
}  // namespace egg_cuda
