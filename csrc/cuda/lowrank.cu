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

#include "cuda/launch.cuh"
#include "cuda/lowrank.cuh"
#include "cuda/lowrank_kernels.cuh"

namespace egg_cuda {

namespace {

using lowrank_detail::kWarp;
using lowrank_detail::Rows;

template <class T>
void launch_project(const T* x, bool x_per_member, const float* left, const uint32_t* keys,
                    const float* coef, const Rows& rs, float* xa, cudaStream_t stream) {
  const std::size_t rows = rs.s.members * rs.s.batch;
  const dim3 grid(grid_1d(rows * kWarp, kBlockThreads));  // one warp per row
  const char* what = "low-rank project kernel launch";
  // The fewest accumulators that hold the rank (rank 1: one register, one warp reduction).
  if (rs.s.rank == 1) {
    launch(what, lowrank_detail::project_kernel<T, 1>, grid, dim3(kBlockThreads), stream, x,
           x_per_member, left, keys, coef, rs, xa);
  } else if (rs.s.rank <= 4) {
    launch(what, lowrank_detail::project_kernel<T, 4>, grid, dim3(kBlockThreads), stream, x,
           x_per_member, left, keys, coef, rs, xa);
  } else {
    launch(what, lowrank_detail::project_kernel<T, 8>, grid, dim3(kBlockThreads), stream, x,
           x_per_member, left, keys, coef, rs, xa);
  }
}

}  // namespace

void lowrank_correction(const void* x, XType xtype, bool x_per_member, const float* left,
                        const float* right, const uint32_t* keys, const float* coef,
                        const LowrankShape& shape, float* xa, const float* base, float* out,
                        cudaStream_t stream) {
  const std::size_t rows = shape.members * shape.batch;
  if (rows == 0 || shape.n == 0 || shape.rank == 0) return;
  const Rows rs{shape, FastDivmod(shape.batch)};
  if (xtype == XType::kFloat16) {
    launch_project(static_cast<const __half*>(x), x_per_member, left, keys, coef, rs, xa, stream);
  } else {
    launch_project(static_cast<const float*>(x), x_per_member, left, keys, coef, rs, xa, stream);
  }
  const bool vec = shape.n % 4 == 0 && aligned16(out) && aligned16(right) &&
                   (base == nullptr || aligned16(base));
  const char* what = "low-rank expand kernel launch";
  if (vec) {
    const Launch l = grid_cols_rows(shape.n / 4, rows, kBlockThreads);
    launch(what, lowrank_detail::expand_kernel<4>, l.grid, l.block, stream, xa, right, keys, rs,
           base, out);
  } else {
    const Launch l = grid_cols_rows(shape.n, rows, kBlockThreads);
    launch(what, lowrank_detail::expand_kernel<1>, l.grid, l.block, stream, xa, right, keys, rs,
           base, out);
  }
}

}  // namespace egg_cuda
