// fused.cuh: the population linear layer with its noise made inside the kernels (raw pointers,
// caller's stream).
//
// The layer's low-rank factors A, B and its bias noise are values of the contract's Philox
// streams; here each kernel computes the values it needs where it needs them instead of reading
// arrays that a separate normals pass wrote to global memory. Held factors (a generation whose
// noise was already made) take the same kernels with the values read from memory instead.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace egg_cuda {

// Where a factor's values come from. held null: generated, value `offset + row * r + q` of the
// stream (leaf, key, epoch) (A: offset 0; B: offset m * r; bias noise: offset 0, r = 1). held
// non-null: element (key, row, q) at held[key * stride[0] + row * stride[1] + q * stride[2]].
struct FactorSource {
  const float* held;
  long long stride[3];
  uint32_t leaf;
  uint64_t offset;
};

// out (N, rows, n)[i, j, c] = act(src + coef[i] * sum_q xa[s(i), j, q] * right(k, c, q)
//                                 + bias[c] + bias_coef[i] * bias_noise(k, c)),  k = keys[i]
//   src = base[j, c] (base non-null: shared x) or out[i, j, c] (per-member x: x_i @ W there)
//   xa[p, j, q] = sum_row x[(p or 0), j, row] * left(key_p, row, q), the projection slots p:
//     shared x: one slot per key (slot_keys (slots,), s(i) = xa_rows[i]);
//     per-member x: slot p = member p (slot_keys and xa_rows null, slots = N).
//   keys are the stream keys (member_key) when generated, indices below keys_bound when held (a
//   key out of range turns the member's rows into NaN instead of reading out of bounds).
//   xa: scratch (slots, rows, r). right null-held and bias_noise unused when !bias_noisy.
struct FusedLinear {
  float* out;
  const float* base;
  const float* x;
  float* xa;
  const uint32_t* slot_keys;
  const uint32_t* xa_rows;
  const uint32_t* keys;
  const float* coef;
  const float* bias;
  const float* bias_coef;
  FactorSource left, right, bias_noise;
  bool generate;     // every factor from Philox (else every factor held)
  bool bias_noisy;   // the bias has noise (bias_noise and bias_coef are read)
  uint64_t seed;
  uint32_t epoch;
  int act;
  std::size_t members, rows, m, n, rank, slots, keys_bound;
};

// Ranks the fused kernels take (their accumulators live in registers); larger ranks take the
// separate normals pass and the plain epilogue.
constexpr std::size_t kFusedMaxRank = 8;

// Two launches: the projection (one warp per (slot, row)) and the epilogue (one thread per four
// consecutive outputs of a row, so one Philox block serves four columns at rank 1).
void linear_fused(const FusedLinear& args, cudaStream_t stream);

}  // namespace egg_cuda
