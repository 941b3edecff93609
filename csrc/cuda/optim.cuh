// optim.cuh: the fused Adam step on the device (raw pointers, caller's stream).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "adam.h"

namespace egg_cuda {

// Doubles of scratch `adam_step` needs for n values (its blocks' partial norms, then the norm).
std::size_t adam_partials(std::size_t n);

// One Adam step on n float32 values, in one pass: theta_out, mu_out, nu_out get adam.h's
// adam_element of theta, g, mu, nu (the C++ core's and NumPy's bits); partials (adam_partials(n)
// doubles) gets each block's sum of (theta_out - theta)^2 in float64, and its last entry their
// sum: the squared norm of the step as applied, added in a fixed order (the same bits on every
// run on one device; the CPU's lanes add in another order). Outputs must not overlap inputs.
void adam_step(const float* theta, const float* g, const float* mu, const float* nu,
               std::size_t n, const egg::AdamScalars& s, float* theta_out, float* mu_out,
               float* nu_out, double* partials, cudaStream_t stream);

}  // namespace egg_cuda
