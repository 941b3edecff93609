// optim_kernels.cpp: one-pass Adam step (decoupled weight decay); compiled once per ISA.
//
// NumPy needs ~10 passes and several temporaries over each leaf for one Adam step; for the
// 1024-wide `rl` MLP that is milliseconds per generation. This reads theta, g, mu, nu once and
// writes the new theta, mu, nu once; the step's norm reads them back from L1, block by block.
#include <algorithm>
#include <cmath>
#include <cstddef>

#include "core/isa_unit.h"
#include "core/kernels.h"

namespace egg {
namespace EGG_ISA {

namespace {
// Elements per pass: the step's outputs are still in L1 when the norm reads them back (a
// multiple of 8, so every element keeps its lane of the norm).
constexpr std::size_t kBlock = 1024;

void adam_block(const float* __restrict theta, const float* __restrict g,
                const float* __restrict mu, const float* __restrict nu, std::size_t n,
                const AdamScalars& s, float* __restrict theta_out, float* __restrict mu_out,
                float* __restrict nu_out) {
  // Exactly optim.update's sequence of float32 operations (adam.h; the kernel objects are built
  // with -ffp-contract=off), so the fused and the NumPy step agree bit for bit.
#pragma omp simd
  for (std::size_t j = 0; j < n; ++j) {
    adam_element(theta[j], g[j], mu[j], nu[j], s, theta_out[j], mu_out[j], nu_out[j]);
  }
}
}  // namespace

double adam_step(const float* __restrict theta, const float* __restrict g,
                 const float* __restrict mu, const float* __restrict nu, std::size_t n,
                 const AdamScalars& s, float* __restrict theta_out, float* __restrict mu_out,
                 float* __restrict nu_out) {
  // Squared norm of the step as applied, in double, element j into lane j % 8, the 8 lanes
  // combined in a fixed order: the same bits at every SIMD width and block size.
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (std::size_t b = 0; b < n; b += kBlock) {
    const std::size_t e = std::min(n, b + kBlock);
    adam_block(theta + b, g + b, mu + b, nu + b, e - b, s, theta_out + b, mu_out + b,
               nu_out + b);
    std::size_t j = b;
    for (; j + 8 <= e; j += 8) {
      for (std::size_t l = 0; l < 8; ++l) {
        const double diff =
            static_cast<double>(theta_out[j + l]) - static_cast<double>(theta[j + l]);
        acc[l] += diff * diff;
      }
    }
    for (std::size_t l = 0; j < e; ++j, ++l) {
      const double diff = static_cast<double>(theta_out[j]) - static_cast<double>(theta[j]);
      acc[l] += diff * diff;
    }
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

}  // namespace EGG_ISA
}  // namespace egg
