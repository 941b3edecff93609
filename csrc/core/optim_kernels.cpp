// optim_kernels.cpp: one-pass Adam step (decoupled weight decay); compiled once per ISA.
//
// NumPy needs ~10 passes and several temporaries over each leaf for one Adam step; for the
// 1024-wide `rl` MLP that is milliseconds per generation. This reads theta, g, mu, nu once and
// writes the new theta, mu, nu once.
#include <cmath>
#include <cstddef>

#include "core/kernels.h"

#ifndef EGG_ISA
#error "EGG_ISA must name the instruction set this file is compiled for"
#endif

namespace egg {
namespace EGG_ISA {

double adam_step(const float* __restrict theta, const float* __restrict g,
                 const float* __restrict mu, const float* __restrict nu, std::size_t n,
                 const AdamScalars& s, float* __restrict theta_out, float* __restrict mu_out,
                 float* __restrict nu_out) {
  double sq = 0.0;  // squared norm of the step, in the same pass (for the run's update_norm)
#pragma omp simd reduction(+ : sq)
  for (std::size_t j = 0; j < n; ++j) {
    const float gj = g[j];
    const float m = s.b1 * mu[j] + s.one_minus_b1 * gj;
    const float v = s.b2 * nu[j] + s.one_minus_b2 * (gj * gj);
    const float d = (m * s.inv_bc1) / (std::sqrt(v * s.inv_bc2) + s.eps);
    mu_out[j] = m;
    nu_out[j] = v;
    const float step = s.lr * (d - s.wd * theta[j]);
    const float t = theta[j] + step;
    theta_out[j] = t;
    const double diff = static_cast<double>(t) - static_cast<double>(theta[j]);
    sq += diff * diff;
  }
  return sq;
}

}  // namespace EGG_ISA
}  // namespace egg
