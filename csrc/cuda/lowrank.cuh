// lowrank.cuh: the fused low-rank population correction on the device (raw pointers, caller's stream).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace egg_cuda {

enum class XType : int { kFloat32 = 0, kFloat16 = 1 };

// Shapes of one correction call. Rows are (member i, batch row b) pairs, row = i * batch + b.
struct LowrankShape {
  std::size_t members;  // N
  std::size_t batch;    // Bt, rows of x per member
  std::size_t m;        // length of a row of x (columns of the left factor)
  std::size_t n;        // length of a row of out (columns of the right factor)
  std::size_t rank;     // r
  std::size_t keys;     // K, factor sets in the cache; keys[i] must be < K
};

// out[i, b, :] (+)= coef[i] * sum_r (x_i[b] . left_k[r, :]) * right_k[r, :], k = keys[i].
//   x:      (Bt, m) shared (x_per_member = false) or (N, Bt, m), float32 or float16
//   left:   (K, r, m) float32;  right: (K, r, n) float32, both rank-major (the transpose of the
//           contract's (K, m, r) layout; the same memory for r = 1); swap them for x @ W.T
//   keys:   (N,) uint32; a key >= K turns that member's rows into NaN instead of reading out of
//           bounds; coef: (N,) float32
//   xa:     scratch (N, Bt, r) float32
//   base:   null (accumulate into out) or (Bt, n) float32 (out = base + correction, out is not read)
//   out:    (N, Bt, n) float32
void lowrank_correction(const void* x, XType xtype, bool x_per_member, const float* left,
                        const float* right, const uint32_t* keys, const float* coef,
                        const LowrankShape& shape, float* xa, const float* base, float* out,
                        cudaStream_t stream);

}  // namespace egg_cuda
