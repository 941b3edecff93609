// contract.h: the update's contraction with a fixed operation order (see contract.cpp).
#pragma once

#include <cstddef>

namespace egg {

// out (m, n) = sum_{k < K} sum_{q < r} (w[k] * a[k][i][q]) * b[k][j][q], a (K, m, r), b (K, n, r)
// and out C-contiguous. w[k] * a is rounded first; then the terms are added in (k, q) order
// starting from zero, for float as one FMA each (acc = fma(wa, b, acc)), for double as a
// product and a sum rounded on their own: the bits do not depend on the thread count, the SIMD
// level or the machine. T is float or double.
template <class T>
void contract(const T* a, const T* b, const T* w, std::size_t K, std::size_t m, std::size_t n,
              std::size_t r, T* out);

}  // namespace egg
