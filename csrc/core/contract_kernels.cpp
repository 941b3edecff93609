// contract_kernels.cpp: one register tile of the deterministic update contraction; compiled
// once per ISA.
//
// out[i][j] = sum_p a[p][i] * q[p][j] with p strictly in order. float32: acc = fma(a, q, acc)
// (one rounding per term, an explicit FMA at every level: vfmadd on AVX2/AVX-512, std::fma
// lane by lane on the baseline); float64: product and sum rounded on their own (no FMA: the
// objects are built with -ffp-contract=off). Only the tile's width (how many columns share one
// pass over p) depends on the instruction set; the arithmetic of each output element does not,
// so every ISA, thread count and machine gives the same bits. BLAS cannot promise that: its
// kernels, blocking and (for skinny shapes) split-K threading change the summation order.
#include <cmath>
#include <cstddef>
#include <type_traits>

#include "core/isa_unit.h"
#include "core/kernels.h"

namespace egg {
namespace EGG_ISA {

namespace {
#if defined(__AVX512F__)
constexpr std::size_t kVecBytes = 64;
constexpr std::size_t kRows = 6;  // 6 rows x 4 vectors: 24 accumulators + 4 loads + 1 broadcast
constexpr std::size_t kVecs = 4;  // of the 32 zmm registers; 64 columns divide common widths
#elif defined(__AVX2__)
constexpr std::size_t kVecBytes = 32;
constexpr std::size_t kRows = 4;
constexpr std::size_t kVecs = 3;  // 12 accumulators + 3 loads + 1 broadcast = 16 ymm registers
#else
constexpr std::size_t kVecBytes = 16;
constexpr std::size_t kRows = 4;
constexpr std::size_t kVecs = 3;
#endif

// GCC vector extensions: one source for SSE2/NEON, AVX2 and AVX-512 registers.
template <class T>
struct Vec {
  typedef T type __attribute__((vector_size(kVecBytes), aligned(sizeof(T)), may_alias));
  static constexpr std::size_t lanes = kVecBytes / sizeof(T);
  static constexpr std::size_t cols = lanes * kVecs;
};

// One term: float32 fused (acc + a * b rounded once), float64 multiply then add.
template <class T>
inline typename Vec<T>::type term(typename Vec<T>::type a, typename Vec<T>::type b,
                                  typename Vec<T>::type acc) {
  using V = typename Vec<T>::type;
  if constexpr (std::is_same_v<T, float>) {
#if defined(__AVX512F__)
    return (V)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)acc);
#elif defined(__AVX2__)
    return (V)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)acc);
#else
    V out;
    for (std::size_t l = 0; l < Vec<T>::lanes; ++l) out[l] = std::fma(a[l], b[l], acc[l]);
    return out;
#endif
  } else {
    return acc + a * b;
  }
}

// All lanes = x, as one broadcast load. (`V{} + x` would add +0.0 first, which the compiler
// must keep, -0.0 + 0.0 being +0.0, and then broadcast from a register on the FMA port.)
template <class T>
inline typename Vec<T>::type splat(const T* x) {
  using V = typename Vec<T>::type;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) return (V)_mm512_set1_ps(*x);
  if constexpr (std::is_same_v<T, double>) return (V)_mm512_set1_pd(*x);
#elif defined(__AVX2__)
  if constexpr (std::is_same_v<T, float>) return (V)_mm256_set1_ps(*x);
  if constexpr (std::is_same_v<T, double>) return (V)_mm256_set1_pd(*x);
#endif
  V out;
  for (std::size_t l = 0; l < Vec<T>::lanes; ++l) out[l] = *x;
  return out;
}

template <class T, std::size_t Rows>
inline void tile(const T* __restrict a, const T* __restrict q, std::size_t ldq, std::size_t np,
                 const T* from, std::size_t ldf, T* out, std::size_t ldo) {
  using V = typename Vec<T>::type;
  constexpr std::size_t L = Vec<T>::lanes;
  V acc[Rows][kVecs];
  // Resuming from the stored partial sums continues the same chain of roundings: a float
  // stored and loaded back is the same float, so splitting p into blocks keeps the bits.
#pragma GCC unroll 16
  for (std::size_t r = 0; r < Rows; ++r) {
#pragma GCC unroll 16
    for (std::size_t v = 0; v < kVecs; ++v) {
      acc[r][v] = from ? *reinterpret_cast<const V*>(from + r * ldf + v * L) : V{};
    }
  }
  for (std::size_t p = 0; p < np; ++p, a += Rows, q += ldq) {
    V b[kVecs];
#pragma GCC unroll 16
    for (std::size_t v = 0; v < kVecs; ++v) b[v] = *reinterpret_cast<const V*>(q + v * L);
#pragma GCC unroll 16
    for (std::size_t r = 0; r < Rows; ++r) {
      const V av = splat<T>(a + r);
#pragma GCC unroll 16
      for (std::size_t v = 0; v < kVecs; ++v) acc[r][v] = term<T>(av, b[v], acc[r][v]);
    }
  }
#pragma GCC unroll 16
  for (std::size_t r = 0; r < Rows; ++r) {
#pragma GCC unroll 16
    for (std::size_t v = 0; v < kVecs; ++v) {
      *reinterpret_cast<V*>(out + r * ldo + v * L) = acc[r][v];
    }
  }
}

template <class T>
void tile_rows(const T* a, std::size_t rows, const T* q, std::size_t ldq, std::size_t np,
               const T* from, std::size_t ldf, T* out, std::size_t ldo) {
  if (rows == kRows) {
    tile<T, kRows>(a, q, ldq, np, from, ldf, out, ldo);
  } else {
    tile<T, 1>(a, q, ldq, np, from, ldf, out, ldo);
  }
}
}  // namespace

extern const std::size_t contract_rows = kRows;
extern const std::size_t contract_cols_f32 = Vec<float>::cols;
extern const std::size_t contract_cols_f64 = Vec<double>::cols;

void contract_tile_f32(const float* a, std::size_t rows, const float* q, std::size_t ldq,
                       std::size_t np, const float* from, std::size_t ldf, float* out,
                       std::size_t ldo) {
  tile_rows(a, rows, q, ldq, np, from, ldf, out, ldo);
}

void contract_tile_f64(const double* a, std::size_t rows, const double* q, std::size_t ldq,
                       std::size_t np, const double* from, std::size_t ldf, double* out,
                       std::size_t ldo) {
  tile_rows(a, rows, q, ldq, np, from, ldf, out, ldo);
}

}  // namespace EGG_ISA
}  // namespace egg
