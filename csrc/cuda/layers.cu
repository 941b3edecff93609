// layers.cu: launches of the population layers' fused epilogues (kernels in layers_kernels.cuh).
//
// The base GEMM and the projections x @ A_k / patches @ B_k are cuBLAS's (through CuPy) or the
// low-rank project kernel's; these write every output value once: base + correction + bias +
// activation. Launched through launch.cuh like every kernel, so the host emulator runs this file
// unchanged.
#include "cuda/cuda_check.h"
#include "cuda/launch.cuh"
#include "cuda/layers.cuh"
#include "cuda/layers_kernels.cuh"

namespace egg_cuda {

void linear_epilogue(const LinearEpilogue& args, cudaStream_t stream) {
  const std::size_t total = args.members * args.rows * args.n;
  if (total == 0) return;
  launch("linear epilogue kernel launch", layers_detail::linear_epilogue_kernel,
         dim3(grid_1d(total, kBlockThreads)), dim3(kBlockThreads), stream, args);
}

void conv_epilogue(const ConvEpilogue& args, cudaStream_t stream) {
  const std::size_t total = args.members * args.batch * args.channels * args.positions;
  if (total == 0) return;
  launch("conv epilogue kernel launch", layers_detail::conv_epilogue_kernel,
         dim3(grid_1d(total, kBlockThreads)), dim3(kBlockThreads), stream, args);
}

}  // namespace egg_cuda
