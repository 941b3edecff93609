// lowrank.cu: the population correction c_i * (x_i @ A_k) @ B_k^T added onto x @ W.
//
// The base GEMM x @ W is cuBLAS's job (through CuPy); this adds the rank-r perturbation of every
// member without forming any m x n matrix. Two kernels, both memory-bound:
//   project: xa[i, b, :] = coef[i] * x_i[b] @ A_k        one warp per row, reads x and A once
//   expand:  out[i, b, :] (+)= xa[i, b, :] @ B_k^T        one pass over out (float4 when aligned)
// Splitting at xa (N * Bt * r floats, tiny) keeps each kernel's parallelism independent of the
// other's dimension, so rl (Bt = 1, one long dot per member) and sup (Bt = 128 short rows) both
// fill the GPU, and `out` is read and written exactly once.
#include <cstdint>

#include "cuda/cuda_check.h"
#include "cuda/launch.cuh"
#include "cuda/lowrank.cuh"
#include "cuda/lowrank_kernels.cuh"

namespace egg_cuda {

namespace {

using lowrank_detail::expand_kernel;
using lowrank_detail::kWarp;
using lowrank_detail::project_kernel;

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

template <int kCols>
void launch_expand(const float* xa, const float* right, const uint32_t* keys,
                   const LowrankShape& s, const float* base, float* out, cudaStream_t stream) {
  const Launch l = grid_cols_rows((s.n + kCols - 1) / kCols, s.members * s.batch, 256);
  expand_kernel<kCols><<<l.grid, l.block, 0, stream>>>(xa, right, keys, s, base, out);
}

}  // namespace

void lowrank_correction(const void* x, XType xtype, bool x_per_member, const float* left,
                        const float* right, const uint32_t* keys, const float* coef,
                        const LowrankShape& shape, float* xa, const float* base, float* out,
                        cudaStream_t stream) {
  const std::size_t rows = shape.members * shape.batch;
  if (rows == 0 || shape.n == 0 || shape.rank == 0) return;
  constexpr int kThreads = 256;
  const unsigned pgrid = grid_1d(rows * kWarp, kThreads);  // one warp per row
  if (xtype == XType::kFloat16) {
    project_kernel<__half><<<pgrid, kThreads, 0, stream>>>(
        static_cast<const __half*>(x), x_per_member, left, keys, coef, shape, xa);
  } else {
    project_kernel<float><<<pgrid, kThreads, 0, stream>>>(
        static_cast<const float*>(x), x_per_member, left, keys, coef, shape, xa);
  }
  check(cudaGetLastError(), "low-rank project kernel launch");
  const bool vec = shape.n % 4 == 0 && aligned16(out) && aligned16(right) &&
                   (base == nullptr || aligned16(base));
  if (vec) {
    launch_expand<4>(xa, right, keys, shape, base, out, stream);
  } else {
    launch_expand<1>(xa, right, keys, shape, base, out, stream);
  }
  check(cudaGetLastError(), "low-rank expand kernel launch");
}

}  // namespace egg_cuda
