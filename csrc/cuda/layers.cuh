// layers.cuh: the population layers' fused epilogues on the device (raw pointers, caller's stream).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace egg_cuda {

// Activation codes shared with Python (eggroll_np.epilogue.ACTIVATIONS).
enum LayerActivation : int { kActNone = 0, kActRelu = 1, kActTanh = 2, kActSigmoid = 3, kActGelu = 4 };

// What both epilogues add per member i with key k = keys[i] (keys null: k = 0, frozen leaf):
// the correction's coefficient coef[i], bias[c] + bias_coef[i] * bias_noise[k, c] and the
// activation; keys_bound is K, the first axis of the factors and of bias_noise.
struct MemberTerms {
  const uint32_t* keys;
  const float* coef;
  const float* bias;
  const float* bias_noise;
  const float* bias_coef;
  int act;
  std::size_t keys_bound;
};

// out (N, rows, n)[i, j, c] = act(src + corr + bias[c] + bias_coef[i] * bias_noise[k, c]), k = keys[i]
//   src  = base[j, c] (base non-null, shared) or out[i, j, c]
//   corr = s_i * sum_q xa[(xa_rows[i] or i), j, q] * right[k, c, q], s_i = coef[i] unless xa_scaled
//          (right null: no correction)
// A key >= keys_bound turns the member's rows into NaN instead of reading out of bounds.
struct LinearEpilogue {
  float* out;
  const float* base;
  const float* xa;
  const uint32_t* xa_rows;
  bool xa_scaled;
  const float* right;
  MemberTerms m;
  std::size_t members, rows, n, rank;
  std::size_t xa_count;  // R, rows of xa's first axis (xa_rows[i] must be < R)
};

// out (N, Bt, O, P)[i, b, o, p] = act(src[(i or 0), b, o, p] + coef[i] * sum_q a[k, o, q] *
//     v[v_index[i], b, q, p] + bias[o] + bias_coef[i] * bias_noise[k, o]); src and v strided.
struct ConvEpilogue {
  float* out;
  const float* src;
  long long src_stride[4];
  bool src_shared;  // src's first axis has length 1
  const float* a;   // (K, O, r) or null: no correction
  const float* v;
  long long v_stride[4];
  const uint32_t* v_index;
  MemberTerms m;
  std::size_t members, batch, channels, positions, rank;
  std::size_t v_count;  // X, length of v's first axis
};

void linear_epilogue(const LinearEpilogue& args, cudaStream_t stream);
void conv_epilogue(const ConvEpilogue& args, cudaStream_t stream);

}  // namespace egg_cuda
