// int8.h: the integer leaves' kernels (DESIGN.md "Integer leaves"): the per-ISA int8 GEMM
// micro-kernel and row epilogue (Int8Kernels, filled in by int8_kernels.cpp), and the drivers
// of int8.cpp that pack, thread and fuse them.
//
// Everything here is integer arithmetic that cannot overflow within the documented bounds, so
// the results are exact: the same bits at every SIMD level, thread count and tile shape.
#pragma once

#include <cstddef>
#include <cstdint>

namespace egg {

// Largest inner dimension of an exact int8 x int8 -> int32 product: 128 * 128 * K < 2^31.
inline constexpr std::size_t kInt8MaxDepth = 131071;

// One output row segment of the fused integer linear layer (member i, one batch row, columns
// [j0, j0 + width) of n):
//   lr[j]   = sum_q t[q] * bt[q * ldbt + j]                        (int64; r == 0: no term)
//   acc[j]  = gemm[j] + ((sign * lr[j]) >> lr_shift)               (int64, floor division)
//   bias[j] = clip(bias[j] + ((sign * bias_noise[j]) >> bias_shift), -127, 127)  (null: 0)
//   out[j]  = clip((acc[j] >> out_shift) + bias[j], -127, 127), then max(., 0) with relu
struct Int8Row {
  const int32_t* gemm;
  std::size_t width;
  const int32_t* t;
  std::size_t r;
  const int8_t* bt;
  std::size_t ldbt;
  int sign;
  int lr_shift;
  const int8_t* bias;
  const int8_t* bias_noise;
  int bias_shift;
  int out_shift;
  bool relu;
  int8_t* out;
};

// One ISA's int8 GEMM: c (mr x nr) = a_tile @ b_panel over depth k, on operands packed by
// pack_a / pack_b into that ISA's private layout (VNNI: groups of 4 bytes with a column-sum
// correction; otherwise pairs of int16 for vpmaddwd). Exact for k <= kInt8MaxDepth.
struct Int8Kernels {
  std::size_t mr, nr;
  std::size_t (*a_tile_bytes)(std::size_t k);
  std::size_t (*b_panel_bytes)(std::size_t k);
  // rows <= mr rows of a (row stride lda) into one tile; missing rows are zero.
  void (*pack_a)(const int8_t* a, std::size_t lda, std::size_t rows, std::size_t k, void* dst);
  // cols <= nr columns of b (row stride ldb, starting at b) into one panel; missing ones zero.
  void (*pack_b)(const int8_t* b, std::size_t ldb, std::size_t k, std::size_t cols, void* dst);
  // c[i * nr + j] for i < mr, j < nr.
  void (*tile)(const void* a_tile, const void* b_panel, std::size_t k, int32_t* c);
  // sum_p x[p] * y[p] over n values (n <= kInt8MaxDepth).
  int32_t (*dot)(const int8_t* x, const int8_t* y, std::size_t n);
  void (*linear_row)(const Int8Row& row);
  // out[j] = clip(rint(16 * z[j]), -127, 127) (round half to even): the contract's noise.
  void (*quantize)(const float* z, std::size_t count, int8_t* out);
};

// The fused population layer on int8 operands (see _core.int8_linear's docstring).
struct Int8Linear {
  const int8_t* x;  // (X, B, m), X == 1 or N
  std::size_t X;
  const int8_t* w;  // (m, n) or (N, m, n)
  bool w_per_member;
  const int8_t* a;  // (K, m, r) or null
  const int8_t* b;  // (K, n, r)
  std::size_t K, r;
  const uint32_t* keys;  // (N,) or null (all 0)
  const int8_t* signs;   // (N,) or null (all +1)
  int lr_shift;
  const int8_t* bias;        // (n,), (N, n) with bias_per_member, or null
  bool bias_per_member;
  const int8_t* bias_noise;  // (K, n) or null
  int bias_shift;
  int out_shift;
  bool relu;
  int8_t* out;  // (N, B, n)
  std::size_t N, B, m, n;
};

// c (M, N) = a (M, K) @ b (K, N), int8 -> int32, rows of lda / ldb / ldc elements.
void gemm_s8s8s32(const int8_t* a, std::size_t lda, const int8_t* b, std::size_t ldb,
                  std::size_t M, std::size_t K, std::size_t N, int32_t* c, std::size_t ldc);
void int8_linear(const Int8Linear& args);

// The epilogue alone, on a GEMM result computed elsewhere (Int8Row per member i and row):
// gemm = acc[(i,) row], t = xa[(xa_rows[i] or i), row], bt = right[keys[i]] transposed.
struct Int8Epilogue {
  int8_t* out;          // (N, B, n)
  const int32_t* acc;   // (B, n) or (N, B, n)
  bool acc_per_member;
  const int32_t* xa;    // (R, B, r) or null
  const uint32_t* xa_rows;
  const int8_t* right;  // (K, n, r) or null
  std::size_t K, r;
  const uint32_t* keys;
  const int8_t* signs;
  const int8_t* bias;   // (n,) or (N, n) or null
  bool bias_per_member;
  int shift_lr, shift_out;
  bool relu;
  std::size_t N, B, n;
};
void int8_epilogue(const Int8Epilogue& args);
// xa (N, B, r)[i] = x[(i or 0)] @ a[keys[i]] (keys null: key 0), x (X, B, m), a (K, m, r).
void int8_xa(const int8_t* x, std::size_t X, const int8_t* a, const uint32_t* keys,
             std::size_t N, std::size_t K, std::size_t B, std::size_t m, std::size_t r,
             int32_t* xa);
// z (m, n) = sum_k c[k] * a[k] @ b[k]^T, a (K, m, r), b (K, n, r), c in {-1, 0, 1};
// a in [-127, 127]. With q non-null, instead of z: q_out = clip(q + sign(z) * (|z| >= tau)).
void int8_contract(const int8_t* a, const int8_t* b, const int8_t* c, std::size_t K,
                   std::size_t m, std::size_t n, std::size_t r, int32_t* z, const int8_t* q,
                   int64_t tau, int8_t* q_out);

}  // namespace egg
