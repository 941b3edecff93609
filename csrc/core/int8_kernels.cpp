// int8_kernels.cpp: the integer leaves' GEMM micro-kernel, packing and row epilogue; compiled
// once per ISA.
//
// AVX-512 VNNI: vpdpbusd multiplies unsigned by signed bytes, so a is packed as a + 128 (a XOR
// 0x80, in [0, 255]) and each column's accumulator starts at -128 * sum_p b[p][j]; the int32
// accumulator wraps modulo 2^32 on the way but the true result fits (K <= kInt8MaxDepth), so the
// final value is exact. Other levels: vpmaddubsw would saturate its 16-bit pair sums
// (255 * 128 * 2 > 32767), so both operands are sign-extended to int16 and vpmaddwd adds exact
// pairs into int32 (AVX-512BW, AVX2; the baseline does the same in plain loops). Integer sums
// are exact in any order, so every level gives the same bits.
#include <algorithm>
#include <cstring>

#include "core/int8.h"
#include "core/isa_unit.h"
#if defined(__SSE2__) && !defined(__AVX2__)
#include <emmintrin.h>
#endif

namespace egg {
namespace EGG_ISA {

namespace {

#if defined(__AVX512VNNI__)
constexpr std::size_t kMr = 6, kVecs = 4, kLanes = 16, kGroup = 4;  // 24 zmm accumulators
using APacked = uint8_t;
using BPacked = int8_t;
#elif defined(__AVX512BW__)
constexpr std::size_t kMr = 6, kVecs = 4, kLanes = 16, kGroup = 2;
using APacked = int16_t;
using BPacked = int16_t;
#elif defined(__AVX2__)
constexpr std::size_t kMr = 6, kVecs = 2, kLanes = 8, kGroup = 2;  // 12 ymm accumulators
using APacked = int16_t;
using BPacked = int16_t;
#else
constexpr std::size_t kMr = 6, kVecs = 2, kLanes = 4, kGroup = 2;  // SSE2's pmaddwd, or plain C
using APacked = int16_t;
using BPacked = int16_t;
#endif
constexpr std::size_t kNr = kVecs * kLanes;
constexpr bool kVnni = kGroup == 4;
// VNNI panels start with the nr column corrections (int32), 64 bytes per vector.
constexpr std::size_t kHeader = kVnni ? kNr * sizeof(int32_t) : 0;

std::size_t groups(std::size_t k) { return (k + kGroup - 1) / kGroup; }

std::size_t a_tile_bytes(std::size_t k) { return groups(k) * kMr * kGroup * sizeof(APacked); }

std::size_t b_panel_bytes(std::size_t k) {
  return kHeader + groups(k) * kNr * kGroup * sizeof(BPacked);
}

// dst[(g * mr + i) * G + t] = a[i][g * G + t] (VNNI: XOR 0x80, i.e. + 128 as unsigned).
void pack_a(const int8_t* a, std::size_t lda, std::size_t rows, std::size_t k, void* dst) {
  auto* d = static_cast<APacked*>(dst);
  const std::size_t ng = groups(k);
  for (std::size_t g = 0; g < ng; ++g) {
    for (std::size_t i = 0; i < kMr; ++i) {
      for (std::size_t t = 0; t < kGroup; ++t) {
        const std::size_t p = g * kGroup + t;
        const int v = i < rows && p < k ? a[i * lda + p] : 0;
        if constexpr (kVnni) {
          d[(g * kMr + i) * kGroup + t] = static_cast<uint8_t>(v + 128);
        } else {
          d[(g * kMr + i) * kGroup + t] = static_cast<int16_t>(v);
        }
      }
    }
  }
}

// [header: -128 * column sums (VNNI)] then dst[(g * nr + j) * G + t] = b[g * G + t][j].
void pack_b(const int8_t* b, std::size_t ldb, std::size_t k, std::size_t cols, void* dst) {
  auto* base = static_cast<unsigned char*>(dst);
  if constexpr (kVnni) {
    int32_t sums[kNr] = {};
    for (std::size_t p = 0; p < k; ++p) {
      for (std::size_t j = 0; j < cols; ++j) sums[j] += b[p * ldb + j];
    }
    for (std::size_t j = 0; j < kNr; ++j) sums[j] *= -128;
    std::memcpy(base, sums, sizeof sums);
  }
  auto* d = reinterpret_cast<BPacked*>(base + kHeader);
  const std::size_t ng = groups(k);
  for (std::size_t g = 0; g < ng; ++g) {
    for (std::size_t j = 0; j < kNr; ++j) {
      for (std::size_t t = 0; t < kGroup; ++t) {
        const std::size_t p = g * kGroup + t;
        d[(g * kNr + j) * kGroup + t] = static_cast<BPacked>(j < cols && p < k ? b[p * ldb + j] : 0);
      }
    }
  }
}

#if defined(__AVX512F__)
using Acc = __m512i;
inline Acc load(const void* p) { return _mm512_loadu_si512(p); }
inline void store(void* p, Acc v) { _mm512_storeu_si512(p, v); }
inline Acc zero() { return _mm512_setzero_si512(); }
inline Acc bcast(const void* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return _mm512_set1_epi32(v);
}
inline Acc madd(Acc acc, Acc a, Acc b) {
#if defined(__AVX512VNNI__)
  return _mm512_dpbusd_epi32(acc, a, b);  // unsigned a bytes x signed b bytes, 4 per lane
#else
  return _mm512_add_epi32(acc, _mm512_madd_epi16(a, b));
#endif
}
#elif defined(__AVX2__)
using Acc = __m256i;
inline Acc load(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline void store(void* p, Acc v) { _mm256_storeu_si256(static_cast<__m256i*>(p), v); }
inline Acc zero() { return _mm256_setzero_si256(); }
inline Acc bcast(const void* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return _mm256_set1_epi32(v);
}
inline Acc madd(Acc acc, Acc a, Acc b) { return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b)); }
#elif defined(__SSE2__)
using Acc = __m128i;
inline Acc load(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
inline void store(void* p, Acc v) { _mm_storeu_si128(static_cast<__m128i*>(p), v); }
inline Acc zero() { return _mm_setzero_si128(); }
inline Acc bcast(const void* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return _mm_set1_epi32(v);
}
inline Acc madd(Acc acc, Acc a, Acc b) { return _mm_add_epi32(acc, _mm_madd_epi16(a, b)); }
#endif

#if defined(__AVX2__) || defined(__AVX512F__) || defined(__SSE2__)
void tile(const void* a_tile, const void* b_panel, std::size_t k, int32_t* c) {
  const auto* a = static_cast<const APacked*>(a_tile);
  const auto* pb = static_cast<const unsigned char*>(b_panel);
  const auto* b = reinterpret_cast<const BPacked*>(pb + kHeader);
  Acc acc[kMr][kVecs];
#pragma GCC unroll 8
  for (std::size_t v = 0; v < kVecs; ++v) {
    const Acc init = kVnni ? load(pb + v * 64) : zero();
#pragma GCC unroll 8
    for (std::size_t i = 0; i < kMr; ++i) acc[i][v] = init;
  }
  const std::size_t ng = groups(k);
  for (std::size_t g = 0; g < ng; ++g, a += kMr * kGroup, b += kNr * kGroup) {
    Acc bv[kVecs];
#pragma GCC unroll 8
    for (std::size_t v = 0; v < kVecs; ++v) bv[v] = load(b + v * kLanes * kGroup);
#pragma GCC unroll 8
    for (std::size_t i = 0; i < kMr; ++i) {
      const Acc av = bcast(a + i * kGroup);
#pragma GCC unroll 8
      for (std::size_t v = 0; v < kVecs; ++v) acc[i][v] = madd(acc[i][v], av, bv[v]);
    }
  }
#pragma GCC unroll 8
  for (std::size_t i = 0; i < kMr; ++i) {
#pragma GCC unroll 8
    for (std::size_t v = 0; v < kVecs; ++v) store(c + i * kNr + v * kLanes, acc[i][v]);
  }
}
#else
void tile(const void* a_tile, const void* b_panel, std::size_t k, int32_t* c) {
  const auto* a = static_cast<const APacked*>(a_tile);
  const auto* b = static_cast<const BPacked*>(b_panel);
  int32_t acc[kMr][kNr] = {};
  const std::size_t ng = groups(k);
  for (std::size_t g = 0; g < ng; ++g, a += kMr * kGroup, b += kNr * kGroup) {
    for (std::size_t i = 0; i < kMr; ++i) {
      const int32_t a0 = a[i * 2], a1 = a[i * 2 + 1];
      for (std::size_t j = 0; j < kNr; ++j) acc[i][j] += a0 * b[j * 2] + a1 * b[j * 2 + 1];
    }
  }
  std::memcpy(c, acc, sizeof acc);
}
#endif

int32_t dot(const int8_t* __restrict x, const int8_t* __restrict y, std::size_t n) {
  int32_t s = 0;
#pragma omp simd reduction(+ : s)
  for (std::size_t p = 0; p < n; ++p) s += static_cast<int32_t>(x[p]) * y[p];
  return s;
}

constexpr std::size_t kChunk = 256;

// Columns [j0, j0 + len) of a row, len <= kChunk; Len != 0 fixes len at compile time (a whole
// panel row, the common case: loops without remainders).
template <std::size_t Len>
inline void row_part(const Int8Row& e, std::size_t j0, std::size_t len_rt, bool small) {
  const std::size_t len = Len != 0 ? Len : len_rt;
  const int64_t sign = e.sign;
  alignas(64) int64_t acc[kChunk];
  alignas(64) int32_t bias[kChunk];
  const int32_t* g = e.gemm + j0;
#pragma omp simd
  for (std::size_t j = 0; j < len; ++j) acc[j] = g[j];
  if (e.r > 0 && small) {  // every partial sum of sign * t . b fits int32: 16-lane vectors
    alignas(64) int32_t lr[kChunk];
#pragma omp simd
    for (std::size_t j = 0; j < len; ++j) lr[j] = 0;
    for (std::size_t q = 0; q < e.r; ++q) {
      const int32_t tq = e.t[q] * e.sign;
      const int8_t* bt = e.bt + q * e.ldbt + j0;
#pragma omp simd
      for (std::size_t j = 0; j < len; ++j) lr[j] += tq * bt[j];
    }
    const int sh = e.lr_shift;
#pragma omp simd
    for (std::size_t j = 0; j < len; ++j) acc[j] += lr[j] >> sh;
  } else if (e.r > 0) {
    alignas(64) int64_t lr[kChunk];
#pragma omp simd
    for (std::size_t j = 0; j < len; ++j) lr[j] = 0;
    for (std::size_t q = 0; q < e.r; ++q) {
      const int64_t tq = static_cast<int64_t>(e.t[q]) * sign;
      const int8_t* bt = e.bt + q * e.ldbt + j0;
#pragma omp simd
      for (std::size_t j = 0; j < len; ++j) lr[j] += tq * bt[j];
    }
    const int sh = e.lr_shift;
#pragma omp simd
    for (std::size_t j = 0; j < len; ++j) acc[j] += lr[j] >> sh;
  }
  if (e.bias != nullptr) {
    const int8_t* bb = e.bias + j0;
    if (e.bias_noise != nullptr) {
      const int8_t* bn = e.bias_noise + j0;
      const int32_t s = e.sign, sh = e.bias_shift;
#pragma omp simd
      for (std::size_t j = 0; j < len; ++j) {
        const int32_t v = bb[j] + ((s * bn[j]) >> sh);
        bias[j] = std::min(127, std::max(-127, v));
      }
    } else {
#pragma omp simd
      for (std::size_t j = 0; j < len; ++j) bias[j] = bb[j];
    }
  } else {
#pragma omp simd
    for (std::size_t j = 0; j < len; ++j) bias[j] = 0;
  }
  const int sh = e.out_shift;
  const int64_t lo = e.relu ? 0 : -127;
  // Clipped into int32 first: GCC does not vectorize an int64 -> int8 narrowing in one step.
  alignas(64) int32_t y32[kChunk];
#pragma omp simd
  for (std::size_t j = 0; j < len; ++j) {
    const int64_t y = (acc[j] >> sh) + bias[j];
    y32[j] = static_cast<int32_t>(y < lo ? lo : (y > 127 ? 127 : y));
  }
  int8_t* out = e.out + j0;
#pragma omp simd
  for (std::size_t j = 0; j < len; ++j) out[j] = static_cast<int8_t>(y32[j]);
}

void linear_row(const Int8Row& e) {
  // |sum_q t_q b_qj| <= 128 * sum_q |t_q|: below 2^31 the low-rank sums may be int32 (the same
  // values, so the same bits; only the vector width changes).
  int64_t bound = 0;
  for (std::size_t q = 0; q < e.r; ++q) bound += e.t[q] < 0 ? -int64_t{e.t[q]} : int64_t{e.t[q]};
  const bool small = bound * 128 < (int64_t{1} << 31);
  if (e.width == kNr) {
    row_part<kNr>(e, 0, kNr, small);
    return;
  }
  for (std::size_t j0 = 0; j0 < e.width; j0 += kChunk) {
    row_part<0>(e, j0, std::min(kChunk, e.width - j0), small);
  }
}

void quantize(const float* __restrict z, std::size_t count, int8_t* __restrict out) {
  // rint by the 1.5 * 2^23 trick: adding and subtracting it rounds to an integer, half to even
  // (the default rounding mode), for |v| <= 127; clipping first commutes with rint as the bounds
  // are integers, and 16 * z is exact in float32. No -ffast-math here, so (v + C) - C stays.
  constexpr float kMagic = 12582912.0f;
#pragma omp simd
  for (std::size_t j = 0; j < count; ++j) {
    const float v = std::min(127.0f, std::max(-127.0f, 16.0f * z[j]));
    out[j] = static_cast<int8_t>(static_cast<int32_t>((v + kMagic) - kMagic));
  }
}

}  // namespace

extern const Int8Kernels int8_kernels = {kMr,    kNr,   &a_tile_bytes, &b_panel_bytes, &pack_a,
                                         &pack_b, &tile, &dot,         &linear_row,    &quantize};

}  // namespace EGG_ISA
}  // namespace egg
