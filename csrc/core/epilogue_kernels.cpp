// epilogue_kernels.cpp: the population layers' fused row pass; compiled once per ISA.
//
// A row is processed in L1-sized chunks: the chunk is built in a small buffer (source, bias,
// low-rank correction) and written once, through the activation, to the output. The activations
// use a Cephes-style exp (range reduction by ln 2, degree-6 polynomial, exponent by bit
// arithmetic) written with plain arithmetic and selects only, so `omp simd` vectorises them at
// every instruction set; accuracy is a few float32 ulp.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/isa_unit.h"
#include "core/epilogue.h"

namespace egg {
namespace EGG_ISA {

namespace {

constexpr std::size_t kChunk = 512;

#pragma omp declare simd
inline float exp_approx(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  const float kf = x * 1.44269504088896341f;
  const float k = static_cast<float>(static_cast<int32_t>(kf + (kf >= 0.0f ? 0.5f : -0.5f)));
  float r = x - k * 0.693359375f;  // ln 2 split in two: exact high part, small low part
  r = r - k * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;  // 2^k, k in [-126, 127]
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

#pragma omp declare simd
inline float tanh_approx(float x) {
  const float a = std::fabs(x);
  const float s = x * x;
  // |x| < 0.625: odd polynomial (no cancellation near 0); else 1 - 2 / (exp(2|x|) + 1).
  float poly = -5.70498872745e-3f;
  poly = poly * s + 2.06390887954e-2f;
  poly = poly * s - 5.37397155531e-2f;
  poly = poly * s + 1.33314422036e-1f;
  poly = poly * s - 3.33332819422e-1f;
  const float small = poly * s * x + x;
  const float e = exp_approx(2.0f * std::min(a, 10.0f));
  float big = 1.0f - 2.0f / (e + 1.0f);
  big = x < 0.0f ? -big : big;
  return a < 0.625f ? small : big;
}

#pragma omp declare simd
inline float sigmoid_approx(float x) { return 1.0f / (1.0f + exp_approx(-x)); }

void activate(const float* __restrict in, std::size_t n, int act, float* __restrict out) {
  switch (act) {
    case kRelu:
#pragma omp simd
      for (std::size_t j = 0; j < n; ++j) out[j] = in[j] < 0.0f ? 0.0f : in[j];  // NaN stays
      break;
    case kTanh:
#pragma omp simd
      for (std::size_t j = 0; j < n; ++j) out[j] = tanh_approx(in[j]);
      break;
    case kSigmoid:
#pragma omp simd
      for (std::size_t j = 0; j < n; ++j) out[j] = sigmoid_approx(in[j]);
      break;
    case kGelu:
      // 0.5 h (1 + tanh(u)) == h * sigmoid(2u), u = sqrt(2/pi) (h + 0.044715 h^3): no
      // cancellation for negative h.
#pragma omp simd
      for (std::size_t j = 0; j < n; ++j) {
        const float h = in[j];
        const float u = 0.7978845608028654f * (h + 0.044715f * h * h * h);
        out[j] = h * sigmoid_approx(2.0f * u);
      }
      break;
    default:
#pragma omp simd
      for (std::size_t j = 0; j < n; ++j) out[j] = in[j];
  }
  // NaN in, NaN out (the clamps in exp_approx would otherwise turn it into a number).
  if (act == kNone || act == kRelu) return;
  for (std::size_t j = 0; j < n; ++j) {
    if (in[j] != in[j]) out[j] = in[j];
  }
}

}  // namespace

namespace {
// The common row in one pass: a contiguous source plus bias, bias noise and a rank-1
// correction (each term rounded on its own, in the order of the passes below: the same bits),
// through relu or no activation straight into dst.
template <bool kBias, bool kNoise, bool kRank1>
void fused_chunk(const RowEpilogue& a, std::size_t j0, std::size_t len, float* __restrict dst) {
  const float* __restrict s = a.src + j0;
  const float* __restrict b = kBias ? a.bias + j0 : nullptr;
  const float* __restrict e = kNoise ? a.bias_noise + j0 : nullptr;
  const float* __restrict v = kRank1 ? a.v + j0 : nullptr;
  const float bs = a.bias_s, c = a.bias_coef, t = kRank1 ? a.t[0] : 0.0f;
  const float floor = a.act == kRelu ? 0.0f : -INFINITY;
#pragma omp simd
  for (std::size_t j = 0; j < len; ++j) {
    float h = s[j] + bs;
    if constexpr (kBias) h += b[j];
    if constexpr (kNoise) h += c * e[j];
    if constexpr (kRank1) h += t * v[j];
    dst[j] = h < floor ? floor : h;  // relu (NaN stays), or nothing below -inf
  }
}

template <bool kBias, bool kNoise>
void fused_chunk(const RowEpilogue& a, std::size_t j0, std::size_t len, float* dst) {
  if (a.r == 1) {
    fused_chunk<kBias, kNoise, true>(a, j0, len, dst);
  } else {
    fused_chunk<kBias, kNoise, false>(a, j0, len, dst);
  }
}
}  // namespace

void epilogue_row(const RowEpilogue& a) {
  alignas(64) float buf[kChunk];
  const bool direct = a.act == kNone || a.act == kRelu;  // no separate activation pass
  for (std::size_t j0 = 0; j0 < a.n; j0 += kChunk) {
    const std::size_t len = std::min(kChunk, a.n - j0);
    if (a.src_stride == 1 && (a.r == 0 || (a.r == 1 && a.vj == 1))) {
      float* dst = direct ? a.out + j0 : buf;
      if (a.bias != nullptr && a.bias_noise != nullptr) {
        fused_chunk<true, true>(a, j0, len, dst);
      } else if (a.bias != nullptr) {
        fused_chunk<true, false>(a, j0, len, dst);
      } else if (a.bias_noise != nullptr) {
        fused_chunk<false, true>(a, j0, len, dst);
      } else {
        fused_chunk<false, false>(a, j0, len, dst);
      }
      if (!direct) activate(buf, len, a.act, a.out + j0);
      continue;
    }
    const float bs = a.bias_s;
    if (a.src_stride == 1) {
      const float* s = a.src + j0;
#pragma omp simd
      for (std::size_t j = 0; j < len; ++j) buf[j] = s[j] + bs;
    } else {
      const float* s = a.src + static_cast<std::ptrdiff_t>(j0) * a.src_stride;
      for (std::size_t j = 0; j < len; ++j) buf[j] = s[static_cast<std::ptrdiff_t>(j) * a.src_stride] + bs;
    }
    if (a.bias != nullptr) {
      const float* b = a.bias + j0;
#pragma omp simd
      for (std::size_t j = 0; j < len; ++j) buf[j] += b[j];
    }
    if (a.bias_noise != nullptr) {
      const float* e = a.bias_noise + j0;
      const float c = a.bias_coef;
#pragma omp simd
      for (std::size_t j = 0; j < len; ++j) buf[j] += c * e[j];
    }
    if (a.r > 0 && a.vj == 1) {  // rows of v contiguous: one axpy per rank (r == 1: just one)
      for (std::size_t q = 0; q < a.r; ++q) {
        const float tq = a.t[q];
        const float* v = a.v + static_cast<std::ptrdiff_t>(q) * a.vq + static_cast<std::ptrdiff_t>(j0);
#pragma omp simd
        for (std::size_t j = 0; j < len; ++j) buf[j] += tq * v[j];
      }
    } else if (a.r > 0) {  // v (n, r)-like: a short dot product per value
      for (std::size_t j = 0; j < len; ++j) {
        const float* v = a.v + static_cast<std::ptrdiff_t>(j0 + j) * a.vj;
        float s = 0.0f;
        for (std::size_t q = 0; q < a.r; ++q) s += a.t[q] * v[static_cast<std::ptrdiff_t>(q) * a.vq];
        buf[j] += s;
      }
    }
    activate(buf, len, a.act, a.out + j0);
  }
}

}  // namespace EGG_ISA
}  // namespace egg
