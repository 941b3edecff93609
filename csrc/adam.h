// adam.h: one Adam element step and its per-call scalars, in one header shared by the C++ core
// (csrc/core/optim_kernels.cpp) and the CUDA kernel (csrc/cuda/optim_kernels.cuh).
//
// The float32 operation sequence is optim.update's (NumPy's array code, docs/noise-contract.md,
// "Exactness"), each operation rounded on its own: every build of this header must forbid FMA
// contraction (-ffp-contract=off for the core's kernel objects, --fmad=false for the CUDA file),
// and then the core, the GPU and NumPy give the same bits. sqrt and / are IEEE on both (nvcc's
// defaults -prec-sqrt=true, -prec-div=true).
#pragma once

#include <cmath>
#include <cstdint>
#include <stdexcept>

#if defined(__CUDACC__)
#define EGG_ADAM_HD __host__ __device__ __forceinline__
#else
#define EGG_ADAM_HD inline
#endif

namespace egg {

// Scalars of one Adam step, rounded to float32 once per call exactly as NumPy rounds the Python
// floats of optim.update (bc2 = 1 - b2**t, lr_bc1 = lr / (1 - b1**t), lr_wd = lr * wd), so the
// fused step and the NumPy step give the same bits.
struct AdamScalars {
  float b1, b2, one_minus_b1, one_minus_b2, bc2, eps, lr_bc1, lr_wd;
  bool decay;  // wd != 0 (NumPy skips the decay term entirely when wd == 0)
};

// b**n by binary exponentiation in IEEE double, exactly as optim._power: libm's pow may round
// differently on another machine (or its FMA variant), a fixed sequence of products cannot.
inline double power(double b, int64_t n) {
  double result = 1.0;
  while (n > 0) {
    if (n & 1) result *= b;
    n >>= 1;
    if (n > 0) b *= b;
  }
  return result;
}

// The scalars of update `count` (>= 1) with learning rate lr, betas b1, b2, eps and weight decay
// (std::invalid_argument, a ValueError through pybind11, for a count below 1).
inline AdamScalars adam_scalars(double lr, double b1, double b2, double eps, double wd,
                                int64_t count) {
  if (count < 1) throw std::invalid_argument("count must be >= 1");
  const double bc1 = 1.0 - power(b1, count);
  const double bc2 = 1.0 - power(b2, count);
  return {static_cast<float>(b1),       static_cast<float>(b2),  static_cast<float>(1.0 - b1),
          static_cast<float>(1.0 - b2), static_cast<float>(bc2), static_cast<float>(eps),
          static_cast<float>(lr / bc1), static_cast<float>(lr * wd), wd != 0.0};
}

// One value's step: the new moments and the new parameter.
EGG_ADAM_HD void adam_element(float theta, float g, float mu, float nu, const AdamScalars& s,
                              float& theta_out, float& mu_out, float& nu_out) {
  const float m = s.b1 * mu + s.one_minus_b1 * g;
  const float v = (g * g) * s.one_minus_b2 + s.b2 * nu;
  float d = m / (sqrtf(v / s.bc2) + s.eps);
  d = d * s.lr_bc1;
  if (s.decay) d = d - s.lr_wd * theta;
  mu_out = m;
  nu_out = v;
  theta_out = theta + d;
}

}  // namespace egg
