// optim_kernels.cuh: device code of the fused Adam step (see optim.cu for the design).
//
// Kept apart from the launch code so that the kernels have one definition whichever way they run:
// optim.cu launches them on the GPU, csrc/cuda/emulation/host_emulation.cpp runs them on the CPU.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "adam.h"
#include "cuda/launch.cuh"

namespace egg_cuda {
namespace optim_detail {

// Grid-stride over the values; each block's float64 sum of squared steps goes to partials[block],
// reduced over the block's threads in a fixed tree (the same bits for the same grid).
__global__ void adam_kernel(const float* __restrict__ theta, const float* __restrict__ g,
                            const float* __restrict__ mu, const float* __restrict__ nu,
                            std::size_t n, egg::AdamScalars s, float* __restrict__ theta_out,
                            float* __restrict__ mu_out, float* __restrict__ nu_out,
                            double* __restrict__ partials) {
  static __shared__ double tree[kBlockThreads];
  const std::size_t step = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  double acc = 0.0;
  for (std::size_t j = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; j < n;
       j += step) {
    float t, m, v;
    egg::adam_element(theta[j], g[j], mu[j], nu[j], s, t, m, v);
    theta_out[j] = t;
    mu_out[j] = m;
    nu_out[j] = v;
    const double diff = static_cast<double>(t) - static_cast<double>(theta[j]);
    acc += diff * diff;  // --fmad=false: the square rounded, then the sum, as on the CPU
  }
  tree[threadIdx.x] = acc;
  __syncthreads();
  for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) tree[threadIdx.x] += tree[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) partials[blockIdx.x] = tree[0];
}

// partials[count] = the sum of partials[0, count) in a fixed order: one warp, lane l adding
// entries l, l + 32, ... in turn, then lane 0 adding the 32 lane sums in lane order.
__global__ void sum_partials_kernel(double* partials, std::size_t count) {
  static __shared__ double lanes[32];
  const unsigned lane = threadIdx.x;
  double acc = 0.0;
  for (std::size_t j = lane; j < count; j += 32) acc += partials[j];
  lanes[lane] = acc;
  __syncthreads();
  if (lane == 0) {
    double total = 0.0;
    for (int l = 0; l < 32; ++l) total += lanes[l];
    partials[count] = total;
  }
}

}  // namespace optim_detail
}  // namespace egg_cuda
