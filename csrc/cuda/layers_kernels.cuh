// layers_kernels.cuh: device code of the population layers' fused epilogues (see layers.cu).
//
// One thread per output value in a grid-stride loop, consecutive threads on consecutive output
// columns (coalesced writes; the base, bias and factor rows they read are shared by a whole row
// and stay in L1/L2). Kept apart from the launches so that csrc/cuda/emulation runs the same
// kernels on the CPU.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "cuda/layers.cuh"
#include "cuda/layers_math.cuh"

namespace egg_cuda {
namespace layers_detail {

// Member i's key in *k; false when the key is out of range and a factor (`factors`) or the bias
// noise would be read with it: the caller then writes NaN instead of reading out of bounds.
__device__ __forceinline__ bool member_key(const MemberTerms& t, std::size_t i, bool factors,
                                           uint32_t* k) {
  *k = t.keys != nullptr ? t.keys[i] : 0u;
  return t.keys == nullptr || *k < t.keys_bound || !(factors || t.bias_noise != nullptr);
}

// act(h + bias[c] + bias_coef[i] * bias_noise[k, c]) for channel c of `width` channels.
__device__ __forceinline__ float finish(const MemberTerms& t, float h, std::size_t i, uint32_t k,
                                        std::size_t c, std::size_t width) {
  const bool noisy = t.bias_noise != nullptr;
  return finish_with(t.bias, noisy, noisy ? t.bias_coef[i] : 0.0f,
                     noisy ? t.bias_noise[static_cast<std::size_t>(k) * width + c] : 0.0f, h, c,
                     t.act);
}

__global__ void linear_epilogue_kernel(LinearEpilogue a) {
  const std::size_t total = a.members * a.rows * a.n;
  const std::size_t step = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t idx = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       idx < total; idx += step) {
    const std::size_t c = idx % a.n;
    const std::size_t row = idx / a.n;  // i * rows + j
    const std::size_t i = row / a.rows, j = row % a.rows;
    uint32_t k;
    if (!member_key(a.m, i, a.right != nullptr, &k)) {
      a.out[idx] = NAN;
      continue;
    }
    float h = a.base != nullptr ? a.base[j * a.n + c] : a.out[idx];
    if (a.right != nullptr) {
      const std::size_t xr = a.xa_rows != nullptr ? a.xa_rows[i] : i;
      if (xr >= a.xa_count) {
        a.out[idx] = NAN;
        continue;
      }
      const float* t = a.xa + (xr * a.rows + j) * a.rank;
      const float* w = a.right + (static_cast<std::size_t>(k) * a.n + c) * a.rank;
      float s = 0.0f;
      for (std::size_t q = 0; q < a.rank; ++q) s += t[q] * w[q];
      h += a.xa_scaled ? s : a.m.coef[i] * s;
    }
    a.out[idx] = finish(a.m, h, i, k, c, a.n);
  }
}

__global__ void conv_epilogue_kernel(ConvEpilogue a) {
  const std::size_t P = a.positions, O = a.channels;
  const std::size_t total = a.members * a.batch * O * P;
  const std::size_t step = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t idx = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       idx < total; idx += step) {
    const std::size_t p = idx % P;
    const std::size_t o = (idx / P) % O;
    const std::size_t b = (idx / (P * O)) % a.batch;
    const std::size_t i = idx / (P * O * a.batch);
    uint32_t k;
    if (!member_key(a.m, i, a.a != nullptr, &k)) {
      a.out[idx] = NAN;
      continue;
    }
    const long long si = a.src_shared ? 0 : static_cast<long long>(i);
    float h = a.src[si * a.src_stride[0] + static_cast<long long>(b) * a.src_stride[1] +
                    static_cast<long long>(o) * a.src_stride[2] +
                    static_cast<long long>(p) * a.src_stride[3]];
    if (a.a != nullptr) {
      const uint32_t vi = a.v_index[i];
      if (vi >= a.v_count) {
        a.out[idx] = NAN;
        continue;
      }
      const float* ao = a.a + (static_cast<std::size_t>(k) * O + o) * a.rank;
      const float* v = a.v + static_cast<long long>(vi) * a.v_stride[0] +
                       static_cast<long long>(b) * a.v_stride[1] +
                       static_cast<long long>(p) * a.v_stride[3];
      float s = 0.0f;
      for (std::size_t q = 0; q < a.rank; ++q) s += ao[q] * v[static_cast<long long>(q) * a.v_stride[2]];
      h += a.m.coef[i] * s;
    }
    a.out[idx] = finish(a.m, h, i, k, o, O);
  }
}

}  // namespace layers_detail
}  // namespace egg_cuda
