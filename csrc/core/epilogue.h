// epilogue.h: the fused pass of the population layers (base + low-rank correction + bias +
// activation over one output row): its arguments; the kernel is KernelTable::epilogue_row.
#pragma once

#include <cstddef>

namespace egg {

// Activation codes shared with Python (eggroll_np.epilogue.ACTIVATIONS).
enum Activation : int { kNone = 0, kRelu = 1, kTanh = 2, kSigmoid = 3, kGelu = 4 };

// One output row of n values:
//   out[j] = act(src[j * src_stride] + bias_s + bias[j] + bias_coef * bias_noise[j]
//                + sum_q t[q] * v[j * vj + q * vq])
// bias / bias_noise may be null; r == 0 means no correction. src may alias out when
// src_stride == 1 (each value is read before it is written).
struct RowEpilogue {
  const float* src;
  std::ptrdiff_t src_stride;
  std::size_t n;
  const float* t;
  std::size_t r;
  const float* v;
  std::ptrdiff_t vj, vq;
  const float* bias;
  const float* bias_noise;
  float bias_coef;
  float bias_s;
  int act;
  float* out;
};

}  // namespace egg
