// philox.h: the noise contract (docs/noise-contract.md) in one header, shared by the C++ and
// CUDA builds.
//
// Philox4x32-10 (Salmon et al., SC'11) maps a 128-bit counter and a 64-bit key to 128 random
// bits. eggroll_np uses counter = (block, leaf, member_key, epoch) and key = (seed lo, seed hi);
// value k of a stream comes from block k / 4, lane k % 4. Uniforms and Box-Muller normals are
// computed here with branch-free float32 code (our own log and sin/cos polynomials) so that the
// same arithmetic vectorises on the host and runs unchanged on the device.
//
// What is defined once, and what that guarantees: the float32 operation sequence of the normals
// (uniform, log, sin/cos, Box-Muller) exists only here; the CPU kernels (csrc/core/kernels.cpp,
// every SIMD level) and the CUDA kernels (csrc/cuda/noise_kernels.cuh) both call it. Philox is
// defined here too, but kernels.cpp restates its rounds with AVX2/AVX-512 intrinsics for speed;
// tests compare those bit for bit with this definition and with the NumPy reference. One
// definition alone does not give equal bits: a compiler that contracts a * b + c into an FMA
// rounds once where this code rounds twice, so every build of this header must forbid
// contraction. noise.cu is compiled with --fmad=false (CMakeLists.txt; tests/test_cuda_plumbing.py
// checks that the noise kernels' PTX holds no fma), the CPU kernel objects need -ffp-contract=off
// (GCC's gnu++17 default is to contract where the ISA has FMA), and `python -m
// eggroll_np.gpu_check` compares the GPU's normals with the CPU's at every SIMD level bit for bit.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define EGG_HD __host__ __device__ __forceinline__
#else
#define EGG_HD inline __attribute__((always_inline))
#endif

namespace egg {

constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;

EGG_HD void philox_round(uint32_t& c0, uint32_t& c1, uint32_t& c2, uint32_t& c3, uint32_t k0,
                         uint32_t k1) {
  const uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * c0;
  const uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * c2;
  const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
  const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
  c0 = hi1 ^ c1 ^ k0;
  c1 = lo1;
  c2 = hi0 ^ c3 ^ k1;
  c3 = lo0;
}

// Philox4x32 with 10 rounds; the key is bumped by the Weyl constants between rounds.
EGG_HD void philox4x32_10(uint32_t& c0, uint32_t& c1, uint32_t& c2, uint32_t& c3, uint32_t k0,
                          uint32_t k1) {
#pragma unroll
  for (int r = 0; r < 10; ++r) {
    philox_round(c0, c1, c2, c3, k0, k1);
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
}

EGG_HD float bits_to_float(uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(b);
#else
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
#endif
}

EGG_HD uint32_t float_to_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
#endif
}

// u = ((x >> 9) + 0.5) * 2^-23: exact in float32 and strictly inside (0, 1).
EGG_HD float uniform_open01(uint32_t x) {
  return static_cast<float>(static_cast<int32_t>(x >> 9)) * 1.1920928955078125e-07f +
         5.9604644775390625e-08f;
}

// Natural log for u in (0, 1), about 1 ulp. The mantissa is centred on [sqrt(1/2), sqrt(2)) so
// that f = m - 1 is exact; this keeps full relative precision of ln(u) as u -> 1, where
// sqrt(-2 ln u) is most sensitive. Classic odd series in s = f / (2 + f).
EGG_HD float log_open01(float u) {
  const int32_t ix = static_cast<int32_t>(float_to_bits(u)) - 0x3f3504f3;
  const int32_t k = ix >> 23;  // arithmetic shift: the binary exponent relative to sqrt(1/2)
  const float m = bits_to_float(static_cast<uint32_t>((ix & 0x007fffff) + 0x3f3504f3));
  const float f = m - 1.0f;
  const float s = f / (2.0f + f);
  const float z = s * s;
  const float w = z * z;
  const float t1 = w * (0.40000972152f + w * 0.24279078841f);
  const float t2 = z * (0.66666662693f + w * 0.28498786688f);
  const float r = t1 + t2;
  const float hfsq = 0.5f * f * f;
  const float dk = static_cast<float>(k);
  return s * (hfsq + r) + dk * 9.0580006145e-06f - hfsq + f + dk * 6.9313812256e-01f;
}

// sin(2 pi u) and cos(2 pi u) for u in (0, 1). Reduction is exact: u has 24 significant bits, so
// t = u - round(u) and f = t - q/4 are exact and |2 pi f| <= pi/4, where short Taylor
// polynomials are accurate to ~2e-8.
EGG_HD void sincos_2pi(float u, float& s_out, float& c_out) {
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding then subtracting rounds to int
  const float t = u - ((u + kRound) - kRound);
  const float qf = (4.0f * t + kRound) - kRound;
  const int32_t q = static_cast<int32_t>(qf);
  const float x = (t - 0.25f * qf) * 6.28318530717958647692f;
  const float x2 = x * x;
  const float sn =
      x * (1.0f + x2 * (-1.6666667163e-01f +
                        x2 * (8.3333337680e-03f + x2 * (-1.9841270114e-04f + x2 * 2.7557314297e-06f))));
  const float cs =
      1.0f + x2 * (-0.5f + x2 * (4.1666667908e-02f + x2 * (-1.3888889225e-03f + x2 * 2.4801587642e-05f)));
  // Rotate by q quarter turns: q odd swaps sin and cos; the signs follow bits of q and q + 1.
  const bool swap = (q & 1) != 0;
  float sv = swap ? cs : sn;
  float cv = swap ? sn : cs;
  sv = (q & 2) ? -sv : sv;
  cv = ((q + 1) & 2) ? -cv : cv;
  s_out = sv;
  c_out = cv;
}

EGG_HD float sqrt_f32(float x) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(x);
#else
  return __builtin_sqrtf(x);
#endif
}

// Box-Muller on one pair of 32-bit words: (x_a, x_b) -> (z_a, z_b).
EGG_HD void box_muller(uint32_t xa, uint32_t xb, float& za, float& zb) {
  const float ua = uniform_open01(xa);
  const float ub = uniform_open01(xb);
  const float r = sqrt_f32(-2.0f * log_open01(ua));
  float s, c;
  sincos_2pi(ub, s, c);
  za = r * c;
  zb = r * s;
}

// The four normals of block `block` of the stream (leaf, member_key, epoch) under key (k0, k1).
EGG_HD void normals_block(uint32_t block, uint32_t leaf, uint32_t member_key, uint32_t epoch,
                          uint32_t k0, uint32_t k1, float out[4]) {
  uint32_t c0 = block, c1 = leaf, c2 = member_key, c3 = epoch;
  philox4x32_10(c0, c1, c2, c3, k0, k1);
  box_muller(c0, c1, out[0], out[1]);
  box_muller(c2, c3, out[2], out[3]);
}

}  // namespace egg
