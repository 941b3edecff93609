// int8.cuh: the integer leaves' kernels on the device (raw pointers, the caller's stream), with
// the semantics of the C++ core's (csrc/core/int8.h, _core.int8_*), bit for bit.
//
// The GEMM runs on the int8 tensor cores (mma.sync m16n8k32, sm_80+) from operands packed by
// the launch code into caller-provided workspaces, in the order the tensor-core fragments are
// loaded (int8_kernels.cuh): a in tiles of 16 rows x 32 depths, b in tiles of 8 columns x 32
// depths, zero padded; int8_packed_rows / int8_packed_cols give the bytes of one block.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace egg_cuda {

// Depth of the packed operands: k rounded up to the tensor-core step (32).
__host__ __device__ inline std::size_t int8_depth(std::size_t k) { return (k + 31) / 32 * 32; }
// Bytes of one packed block of a with `rows` rows, and of b^T with `cols` columns, depth k.
__host__ __device__ inline std::size_t int8_packed_rows(std::size_t rows, std::size_t k) {
  return (rows + 15) / 16 * 16 * int8_depth(k);
}
__host__ __device__ inline std::size_t int8_packed_cols(std::size_t cols, std::size_t k) {
  return (cols + 7) / 8 * 8 * int8_depth(k);
}

// The fused linear layer's per-member terms (see _core.int8_linear): for member i, k = keys[i],
// s = signs[i], acc = x_i @ w_i, row t of B, column j of n:
//   v = acc + ((s * sum_q xa[set, t, q] * right[k, j, q]) >> lr_shift)   (set = k if x is
//       shared (X == 1), else i; no term when right is null)
//   y = clip((v >> out_shift) + bias_i[j], -127, 127), relu: max(y, 0)
//   bias_i = bias[(i,) j] (null: 0), or clip(bias[j] + ((s * bias_noise[k, j]) >> bias_shift))
// A key >= K writes -128 (a value the layer never produces) instead of reading out of bounds.
struct Int8Terms {
  int8_t* out;  // (N, B, n)
  std::size_t N, B, n, X;
  bool w_per_member;
  const int32_t* xa;    // (X == 1 ? K : N, B, r)
  const int8_t* right;  // (K, n, r) or null
  std::size_t K, r;
  const uint32_t* keys;  // (N,) or null (all 0)
  const int8_t* signs;   // (N,) or null (all +1)
  int lr_shift;
  const int8_t* bias;  // (n,) or (N, n) or null
  bool bias_per_member;
  const int8_t* bias_noise;  // (K, n) or null
  int bias_shift, out_shift;
  bool relu;
};

enum Int8Mode : int { kInt8Raw = 0, kInt8Linear = 1, kInt8Update = 2 };

// One packed tensor-core GEMM and what its result becomes.
struct Int8Gemm {
  const int8_t* a;  // a_groups packed blocks of rows x kp (int8_packed_rows each)
  std::size_t a_groups;
  const int8_t* bt;  // groups packed blocks of b^T, n x kp (int8_packed_cols each)
  std::size_t rows, n, kp, groups;
  int mode;
  int32_t* c;          // kInt8Raw: (rows, n)
  const int8_t* q;     // kInt8Update: (rows, n) in, q_out out
  int8_t* q_out;
  long long tau;
  Int8Terms terms;  // kInt8Linear
};

// out (M, N) int32 = x (M, K) @ w (K, N), int8; work_a holds int8_packed_rows(M, K) bytes,
// work_b int8_packed_cols(N, K).
void int8_gemm(const int8_t* x, const int8_t* w, int32_t* out, std::size_t M, std::size_t K,
               std::size_t N, int8_t* work_a, int8_t* work_b, cudaStream_t stream);

// The fused layer: x (X, B, m), w (m, n) or (N, m, n) (t.w_per_member), a (K, m, r) or null
// with t.right; work_a int8_packed_rows(X * B, m) bytes (w shared) or X * int8_packed_rows(B, m)
// (w per member), work_b (w_per_member ? N : 1) * int8_packed_cols(n, m), work_xa
// (X == 1 ? K : N) * B * r int32 (unused without a).
void int8_linear(const int8_t* x, const int8_t* w, const int8_t* a, std::size_t m,
                 const Int8Terms& t, int8_t* work_a, int8_t* work_b, int32_t* work_xa,
                 cudaStream_t stream);

// The epilogue alone on a GEMM result acc (B, n) or (N, B, n) (acc_per_member), t.xa given.
void int8_epilogue(const int32_t* acc, bool acc_per_member, const uint32_t* xa_rows,
                   std::size_t xa_count, const Int8Terms& t, cudaStream_t stream);

// xa (N, B, r) = x[(i or 0)] @ a[keys[i]], x (X, B, m), a (K, m, r); a key >= K gives 0 rows.
void int8_xa(const int8_t* x, std::size_t X, const int8_t* a, const uint32_t* keys,
             std::size_t N, std::size_t K, std::size_t B, std::size_t m, std::size_t r,
             int32_t* xa, cudaStream_t stream);

// z (m, n) = sum_k c[k] a[k] @ b[k]^T (q null), or q_out = clip(q + sign(z) (|z| >= tau)):
// a (K, m, r), b (K, n, r), c (K,) in {-1, 0, 1}; work_a int8_packed_rows(m, K * r) bytes,
// work_b int8_packed_cols(n, K * r).
void int8_contract(const int8_t* a, const int8_t* b, const int8_t* c, std::size_t K,
                   std::size_t m, std::size_t n, std::size_t r, int32_t* z, const int8_t* q,
                   long long tau, int8_t* q_out, int8_t* work_a, int8_t* work_b,
                   cudaStream_t stream);

}  // namespace egg_cuda
