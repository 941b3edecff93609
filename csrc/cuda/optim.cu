// optim.cu: the fused Adam step on the device.
//
// CuPy runs optim.update's Adam as ~10 elementwise kernels and the step's norm as three more,
// each a launch and a Python call: on a small model the host time of those calls is most of
// the update's. This is one kernel that reads theta, g, mu and nu once and writes the new ones
// once, adam.h's element step (the C++ core's bits), plus a one-warp kernel that adds the blocks'
// partial norms in a fixed order.
#include "cuda/launch.cuh"
#include "cuda/optim.cuh"
#include "cuda/optim_kernels.cuh"

namespace egg_cuda {

namespace {
unsigned adam_blocks(std::size_t n) { return grid_1d(n, kBlockThreads); }
}  // namespace

std::size_t adam_partials(std::size_t n) { return static_cast<std::size_t>(adam_blocks(n)) + 1; }

void adam_step(const float* theta, const float* g, const float* mu, const float* nu,
               std::size_t n, const egg::AdamScalars& s, float* theta_out, float* mu_out,
               float* nu_out, double* partials, cudaStream_t stream) {
  const unsigned blocks = adam_blocks(n);
  launch("adam step kernel launch", optim_detail::adam_kernel, dim3(blocks), dim3(kBlockThreads),
         stream, theta, g, mu, nu, n, s, theta_out, mu_out, nu_out, partials);
  launch("adam norm kernel launch", optim_detail::sum_partials_kernel, dim3(1), dim3(32), stream,
         partials, static_cast<std::size_t>(blocks));
}

}  // namespace egg_cuda
