// lowrank_kernels.cpp: per-member low-rank projection and expansion; compiled once per ISA.
//
// A member's correction to x @ W is coef * (x @ A_k) @ B_k^T with A_k (m, r), B_k (n, r), r tiny.
// `project` forms xa = x @ A_k (rows x r); `expand` adds coef * xa @ B_k^T onto out in one pass,
// so out is read and written once. Both are written so that r == 1 (the common case) becomes a
// vector dot product and a vector axpy.
#include <cstddef>
#include <vector>

#include "core/isa_unit.h"
#include "core/kernels.h"

namespace egg {
namespace EGG_ISA {

namespace {
// Rows of one member from which transposing its factor (once per call) pays for itself.
constexpr std::size_t kTransposeRows = 4;

// x . a over m values: 16 fixed lanes folded in a fixed order, so that every SIMD width sums in
// the same order and gives the same bits (a `simd reduction` would let each ISA pick its own).
inline float dot(const float* __restrict x, const float* __restrict a, std::size_t m) {
  constexpr std::size_t kL = 16;
  float acc[kL] = {};
  std::size_t j = 0;
  for (; j + kL <= m; j += kL) {
    for (std::size_t l = 0; l < kL; ++l) acc[l] += x[j + l] * a[j + l];
  }
  for (std::size_t l = 0; j < m; ++j, ++l) acc[l] += x[j] * a[j];
  for (std::size_t half = kL / 2; half > 0; half /= 2) {
    for (std::size_t l = 0; l < half; ++l) acc[l] += acc[l + half];
  }
  return acc[0];
}
}  // namespace

void lowrank_project(const float* __restrict x, std::size_t rows, std::size_t m,
                     const float* __restrict a, std::size_t r, float* __restrict xa) {
  if (r == 1) {
    for (std::size_t b = 0; b < rows; ++b) xa[b] = dot(x + b * m, a, m);
    return;
  }
  if (rows >= kTransposeRows) {
    // Many rows share this A: transpose it once to (r, m) so that each xa value is one
    // contiguous dot product (vector loads of x and A) instead of a loop over r per x value.
    thread_local std::vector<float> scratch;
    scratch.resize(r * m);
    float* __restrict at = scratch.data();
    for (std::size_t j = 0; j < m; ++j) {
      for (std::size_t q = 0; q < r; ++q) at[q * m + j] = a[j * r + q];
    }
    for (std::size_t b = 0; b < rows; ++b) {
      for (std::size_t q = 0; q < r; ++q) xa[b * r + q] = dot(x + b * m, at + q * m, m);
    }
    return;
  }
  for (std::size_t b = 0; b < rows; ++b) {
    const float* xb = x + b * m;
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
  if (r == 1) {
    for (std::size_t b = 0; b < rows; ++b) {
      float* ob = out + b * n;
      const float tv = coef * xa[b];
#pragma omp simd
      for (std::size_t j = 0; j < n; ++j) ob[j] += tv * bmat[j];
    }
    return;
  }
  constexpr std::size_t kMaxRank = 64;
  float t[kMaxRank];
  if (rows < kTransposeRows) {
    // Few rows: read B (n, r) in place; each output value is a short dot product over r.
    for (std::size_t b = 0; b < rows; ++b) {
      float* ob = out + b * n;
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
    return;
  }
  // Many rows share this B: transpose it once to (r, n), so that every row is r contiguous
  // axpys (vector loads) instead of n strided gathers; the row's sum is formed in `acc` first
  // and added to out once, the order of x @ A @ B.T followed by +=.
  thread_local std::vector<float> scratch;
  scratch.resize(r * n + n);
  float* __restrict bt = scratch.data();
  float* __restrict acc = bt + r * n;
  for (std::size_t j = 0; j < n; ++j) {
    for (std::size_t q = 0; q < r; ++q) bt[q * n + j] = bmat[j * r + q];
  }
  for (std::size_t b = 0; b < rows; ++b) {
    float* ob = out + b * n;
    const float t0 = coef * xa[b * r];
#pragma omp simd
    for (std::size_t j = 0; j < n; ++j) acc[j] = t0 * bt[j];
    for (std::size_t q = 1; q < r; ++q) {
      const float tq = coef * xa[b * r + q];
      const float* bq = bt + q * n;
#pragma omp simd
      for (std::size_t j = 0; j < n; ++j) acc[j] += tq * bq[j];
    }
#pragma omp simd
    for (std::size_t j = 0; j < n; ++j) ob[j] += acc[j];
  }
}

}  // namespace EGG_ISA
}  // namespace egg
