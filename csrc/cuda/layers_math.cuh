// layers_math.cuh: the activations and the end of every epilogue, as inline device functions
// shared by layers_kernels.cuh and fused_kernels.cuh (which are included by different .cu
// files: a kernel defined in a header would be defined twice at link time).
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>

#include "cuda/layers.cuh"

namespace egg_cuda {
namespace layers_detail {

__device__ __forceinline__ float sigmoid(float h) { return 1.0f / (1.0f + expf(-h)); }

__device__ __forceinline__ float activate(float h, int act) {
  switch (act) {
    case kActRelu:
      return h < 0.0f ? 0.0f : h;  // NaN stays NaN
    case kActTanh:
      return tanhf(h);
    case kActSigmoid:
      return sigmoid(h);
    case kActGelu:  // 0.5 h (1 + tanh(u)) == h * sigmoid(2u): no cancellation for h < 0
      return h * sigmoid(2.0f * 0.7978845608028654f * (h + 0.044715f * h * h * h));
    default:
      return h;
  }
}

// act(h + bias[c] + bias_coef * noise): the end of every epilogue (fused.cu's too), one order.
__device__ __forceinline__ float finish_with(const float* bias, bool noisy, float bias_coef,
                                             float noise, float h, std::size_t c, int act) {
  if (bias != nullptr) h += bias[c];
  if (noisy) h += bias_coef * noise;
  return activate(h, act);
}

}  // namespace layers_detail
}  // namespace egg_cuda
