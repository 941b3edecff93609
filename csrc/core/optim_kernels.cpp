// optim_kernels.cpp: one-pass Adam step (decoupled weight decay); compiled once per ISA.
//
// NumPy needs ~10 passes and several temporaries over each leaf for one Adam step; for the
// 1024-wide `rl` MLP that is milliseconds per generation. This reads theta, g, mu, nu once and
// writes the new theta, mu, nu once.
#include <cmath>
#include <cstddef>

#include "core/isa_unit.h"
#include "core/kernels.h"

namespace egg {
namespace EGG_ISA {

double adam_step(const float* __restrict theta, const float* __restrict g,
                 const float* __restrict mu, const float* __restrict nu, std::size_t n,
                 const AdamScalars& s, float* __restrict theta_out, float* __restrict mu_out,
                 float* __restrict nu_out) {
  // Exactly optim.update's sequence of float32 operations (each rounded on its own: the kernel
  // objects are built with -ffp-contract=off), so the fused and the NumPy step agree bit for bit.
#pragma omp simd
  for (std::size_t j = 0; j < n; ++j) {
    const float gj = g[j];
    const float m = s.b1 * mu[j] + s.one_minus_b1 * gj;
    const float v = (gj * gj) * s.one_minus_b2 + s.b2 * nu[j];
    float d = m / (std::sqrt(v / s.bc2) + s.eps);
    d = d * s.lr_bc1;
    if (s.decay) d = d - s.lr_wd * theta[j];
    mu_out[j] = m;
    nu_out[j] = v;
    theta_out[j] = theta[j] + d;
  }
  // Squared norm of the step as applied, in double, over 8 fixed lanes combined in a fixed
  // order: the same bits at every SIMD width.
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::size_t j = 0;
  for (; j + 8 <= n; j += 8) {
    for (std::size_t l = 0; l < 8; ++l) {
      const double diff = static_cast<double>(theta_out[j + l]) - static_cast<double>(theta[j + l]);
      acc[l] += diff * diff;
    }
  }
  for (std::size_t l = 0; j < n; ++j, ++l) {
    const double diff = static_cast<double>(theta_out[j]) - static_cast<double>(theta[j]);
    acc[l] += diff * diff;
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

}  // namespace EGG_ISA
}  // namespace egg
