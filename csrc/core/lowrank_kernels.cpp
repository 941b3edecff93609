// lowrank_kernels.cpp: per-member low-rank projection and expansion; compiled once per ISA.
//
// A member's correction to x @ W is coef * (x @ A_k) @ B_k^T with A_k (m, r), B_k (n, r), r tiny.
// `project` forms xa = x @ A_k (rows x r); `expand` adds coef * xa @ B_k^T onto out in one pass,
// so out is read and written once. Both are written so that r == 1 (the common case) becomes a
// vector dot product and a vector axpy.
#include <cstddef>

#include "core/kernels.h"

#ifndef EGG_ISA
#error "EGG_ISA must name the instruction set this file is compiled for"
#endif

namespace egg {
namespace EGG_ISA {

void lowrank_project(const float* __restrict x, std::size_t rows, std::size_t m,
                     const float* __restrict a, std::size_t r, float* __restrict xa) {
  for (std::size_t b = 0; b < rows; ++b) {
    const float* xb = x + b * m;
    if (r == 1) {
      // A dot product over 16 fixed lanes, folded in a fixed order: the same bits at every SIMD
      // width (a `simd reduction` would let each instruction set sum in its own order).
      constexpr std::size_t kL = 16;
      float acc[kL] = {};
      std::size_t j = 0;
      for (; j + kL <= m; j += kL) {
        for (std::size_t l = 0; l < kL; ++l) acc[l] += xb[j + l] * a[j + l];
      }
      for (std::size_t l = 0; j < m; ++j, ++l) acc[l] += xb[j] * a[j];
      for (std::size_t half = kL / 2; half > 0; half /= 2) {
        for (std::size_t l = 0; l < half; ++l) acc[l] += acc[l + half];
      }
      xa[b] = acc[0];
      continue;
    }
    for (std::size_t q = 0; q < r; ++q) xa[b * r + q] = 0.0f;
    for (std::size_t j = 0; j < m; ++j) {
      const float xv = xb[j];
      const float* aj = a + j * r;
#pragma omp simd
      for (std::size_t q = 0; q < r; ++q) xa[b * r + q] += xv * aj[q];
    }
  }
}

void lowrank_expand(const float* __restrict xa, std::size_t rows, std::size_t r,
                    const float* __restrict bmat, std::size_t n, float coef,
                    float* __restrict out) {
  constexpr std::size_t kMaxRank = 64;
  float t[kMaxRank];
  for (std::size_t b = 0; b < rows; ++b) {
    float* ob = out + b * n;
    if (r == 1) {
      const float tv = coef * xa[b];
#pragma omp simd
      for (std::size_t j = 0; j < n; ++j) ob[j] += tv * bmat[j];
      continue;
    }
    for (std::size_t q0 = 0; q0 < r; q0 += kMaxRank) {
      const std::size_t qn = (r - q0 < kMaxRank) ? r - q0 : kMaxRank;
      for (std::size_t q = 0; q < qn; ++q) t[q] = coef * xa[b * r + q0 + q];
#pragma omp simd
      for (std::size_t j = 0; j < n; ++j) {
        const float* bj = bmat + j * r + q0;
        float s = 0.0f;
        for (std::size_t q = 0; q < qn; ++q) s += t[q] * bj[q];
        ob[j] += s;
      }
    }
  }
}

}  // namespace EGG_ISA
}  // namespace egg
