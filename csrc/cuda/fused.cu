// fused.cu: launches of the fused population linear layer (kernels in fused_kernels.cuh).
//
// Replaces, for a low-rank W of rank <= kFusedMaxRank, the separate normals pass (A, B and the
// bias noise written to global memory), the projection GEMM x @ A_k and the transposing copies
// before the epilogue: the projection kernel makes A's values, the epilogue B's and the bias
// noise's, from the same philox.h as noise.cu. The base GEMM x @ W stays cuBLAS's (CuPy's),
// queued by the caller before these launches.
//
// CMakeLists.txt compiles this file with --fmad=false, like noise.cu: the Box-Muller normals
// must be philox.h's float32 operations exactly (the contract's bits), and the sums round as in
// layers.cu (also --fmad=false), so held and generated factors give the same output bits.
#include <stdexcept>

#include "cuda/fused.cuh"
#include "cuda/fused_kernels.cuh"
#include "cuda/launch.cuh"

namespace egg_cuda {

namespace {

template <bool kGen>
void launch_both(const FusedLinear& a, const fused_detail::Streams& st, cudaStream_t stream) {
  const FastDivmod by_rows(a.rows);
  if (a.slots > 0) {
    const dim3 grid(grid_1d(a.slots * a.rows * lowrank_detail::kWarp, kBlockThreads));
    const FastDivmod by_rank(a.rank);
    const char* what = "fused projection kernel launch";
    if (a.rank == 1) {
      launch(what, fused_detail::project_kernel<kGen, 1>, grid, dim3(kBlockThreads), stream, a,
             st, by_rank, by_rows);
    } else if (a.rank <= 4) {
      launch(what, fused_detail::project_kernel<kGen, 4>, grid, dim3(kBlockThreads), stream, a,
             st, by_rank, by_rows);
    } else {
      launch(what, fused_detail::project_kernel<kGen, 8>, grid, dim3(kBlockThreads), stream, a,
             st, by_rank, by_rows);
    }
  }
  const std::size_t groups = (a.n + 3) / 4;
  launch("fused epilogue kernel launch", fused_detail::epilogue_kernel<kGen>,
         dim3(grid_1d(a.members * a.rows * groups, kBlockThreads)), dim3(kBlockThreads), stream,
         a, st, FastDivmod(groups), by_rows);
}

}  // namespace

void linear_fused(const FusedLinear& args, cudaStream_t stream) {
  if (args.rank == 0 || args.rank > kFusedMaxRank) {
    throw std::invalid_argument("the fused linear layer takes ranks 1 to 8");
  }
  if (args.members * args.rows * args.n == 0) return;
  const fused_detail::Streams st{static_cast<uint32_t>(args.seed),
                                 static_cast<uint32_t>(args.seed >> 32), args.epoch};
  if (args.generate) {
    launch_both<true>(args, st, stream);
  } else {
    launch_both<false>(args, st, stream);
  }
}

}  // namespace egg_cuda
