// kernels.cpp: SIMD-friendly Philox and Box-Muller loops; compiled once per ISA (EGG_ISA).
//
// The loops work on 16 counters at a time in structure-of-arrays form so that the compiler
// turns every line of philox.h into one vector instruction (vpmuludq for the 32x32->64 products,
// vdivps/vsqrtps and our polynomials for Box-Muller).
#include <algorithm>
#include <cstring>

#include "core/isa_unit.h"
#include "core/kernels.h"
#include "philox.h"

namespace egg {
namespace EGG_ISA {

namespace {
constexpr int kLanes = 32;  // counters per batch: two AVX-512 registers of 32-bit words

// Philox over kLanes counters held as four arrays. With AVX-512/AVX2 the 32x32->64 products are
// done with vpmuludq on even and odd lanes (compilers otherwise widen to 64-bit lanes and use the
// slow vpmullq); the scalar loop is the portable fallback. Tests check all three bit for bit.
#if defined(__AVX512F__)
inline void mulhilo(__m512i a, __m512i m, __m512i& hi, __m512i& lo) {
  const __m512i even = _mm512_mul_epu32(a, m);                        // lanes 0,2,..: 64-bit
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);  // lanes 1,3,..
  hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
  lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
}

inline void philox_soa(uint32_t* __restrict c0, uint32_t* __restrict c1, uint32_t* __restrict c2,
                       uint32_t* __restrict c3, uint32_t k0, uint32_t k1) {
  // kLanes / 16 independent chains of rounds, interleaved: one chain's multiplies wait ~5 cycles
  // for the last round's, and the other's fill them (one chain ran at about 1 IPC).
  constexpr int kChains = kLanes / 16;
  __m512i x0[kChains], x1[kChains], x2[kChains], x3[kChains];
#pragma GCC unroll 4
  for (int h = 0; h < kChains; ++h) {
    x0[h] = _mm512_load_si512(c0 + 16 * h);
    x1[h] = _mm512_load_si512(c1 + 16 * h);
    x2[h] = _mm512_load_si512(c2 + 16 * h);
    x3[h] = _mm512_load_si512(c3 + 16 * h);
  }
  const __m512i m0 = _mm512_set1_epi32(static_cast<int>(kPhiloxM0));
  const __m512i m1 = _mm512_set1_epi32(static_cast<int>(kPhiloxM1));
  for (int r = 0; r < 10; ++r) {
    const __m512i key0 = _mm512_set1_epi32(static_cast<int>(k0));
    const __m512i key1 = _mm512_set1_epi32(static_cast<int>(k1));
#pragma GCC unroll 4
    for (int h = 0; h < kChains; ++h) {
      __m512i hi0, lo0, hi1, lo1;
      mulhilo(x0[h], m0, hi0, lo0);
      mulhilo(x2[h], m1, hi1, lo1);
      // 0x96 is three-way XOR.
      x0[h] = _mm512_ternarylogic_epi32(hi1, x1[h], key0, 0x96);
      x1[h] = lo1;
      x2[h] = _mm512_ternarylogic_epi32(hi0, x3[h], key1, 0x96);
      x3[h] = lo0;
    }
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
#pragma GCC unroll 4
  for (int h = 0; h < kChains; ++h) {
    _mm512_store_si512(c0 + 16 * h, x0[h]);
    _mm512_store_si512(c1 + 16 * h, x1[h]);
    _mm512_store_si512(c2 + 16 * h, x2[h]);
    _mm512_store_si512(c3 + 16 * h, x3[h]);
  }
}
#elif defined(__AVX2__)
inline void mulhilo(__m256i a, __m256i m, __m256i& hi, __m256i& lo) {
  const __m256i even = _mm256_mul_epu32(a, m);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
  hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}

inline void philox_soa(uint32_t* __restrict c0, uint32_t* __restrict c1, uint32_t* __restrict c2,
                       uint32_t* __restrict c3, uint32_t k0, uint32_t k1) {
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(kPhiloxM0));
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(kPhiloxM1));
  for (int half = 0; half < kLanes; half += 8) {
    auto ld = [half](const uint32_t* p) {
      return _mm256_load_si256(reinterpret_cast<const __m256i*>(p + half));
    };
    __m256i x0 = ld(c0), x1 = ld(c1), x2 = ld(c2), x3 = ld(c3);
    uint32_t a = k0, b = k1;
    for (int r = 0; r < 10; ++r) {
      __m256i hi0, lo0, hi1, lo1;
      mulhilo(x0, m0, hi0, lo0);
      mulhilo(x2, m1, hi1, lo1);
      x0 = _mm256_xor_si256(_mm256_xor_si256(hi1, x1), _mm256_set1_epi32(static_cast<int>(a)));
      x1 = lo1;
      x2 = _mm256_xor_si256(_mm256_xor_si256(hi0, x3), _mm256_set1_epi32(static_cast<int>(b)));
      x3 = lo0;
      a += kPhiloxW0;
      b += kPhiloxW1;
    }
    auto st = [half](uint32_t* p, __m256i v) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(p + half), v);
    };
    st(c0, x0);
    st(c1, x1);
    st(c2, x2);
    st(c3, x3);
  }
}
#else
inline void philox_soa(uint32_t* __restrict c0, uint32_t* __restrict c1, uint32_t* __restrict c2,
                       uint32_t* __restrict c3, uint32_t k0, uint32_t k1) {
  for (int j = 0; j < kLanes; ++j) philox4x32_10(c0[j], c1[j], c2[j], c3[j], k0, k1);
}
#endif

// kLanes consecutive blocks starting at `block` -> 4 * kLanes consecutive stream values in `out`.
inline void normals_batch(uint32_t block, uint32_t leaf, uint32_t member_key, uint32_t epoch,
                              uint32_t k0, uint32_t k1, float* __restrict out) {
  alignas(64) uint32_t c0[kLanes], c1[kLanes], c2[kLanes], c3[kLanes];
  for (int j = 0; j < kLanes; ++j) {
    c0[j] = block + static_cast<uint32_t>(j);
    c1[j] = leaf;
    c2[j] = member_key;
    c3[j] = epoch;
  }
  philox_soa(c0, c1, c2, c3, k0, k1);
  alignas(64) float z0[kLanes], z1[kLanes], z2[kLanes], z3[kLanes];
#pragma GCC ivdep
  for (int j = 0; j < kLanes; ++j) {
    box_muller(c0[j], c1[j], z0[j], z1[j]);
    box_muller(c2[j], c3[j], z2[j], z3[j]);
  }
  for (int j = 0; j < kLanes; ++j) {
    out[4 * j + 0] = z0[j];
    out[4 * j + 1] = z1[j];
    out[4 * j + 2] = z2[j];
    out[4 * j + 3] = z3[j];
  }
}
}  // namespace

void philox_blocks(const uint32_t* counters, std::size_t n, uint32_t k0, uint32_t k1,
                   uint32_t* out) {
  alignas(64) uint32_t c0[kLanes], c1[kLanes], c2[kLanes], c3[kLanes];
  for (std::size_t base = 0; base < n; base += kLanes) {
    const std::size_t len = std::min<std::size_t>(kLanes, n - base);
    for (std::size_t j = 0; j < kLanes; ++j) {
      const std::size_t src = base + (j < len ? j : 0);
      c0[j] = counters[4 * src + 0];
      c1[j] = counters[4 * src + 1];
      c2[j] = counters[4 * src + 2];
      c3[j] = counters[4 * src + 3];
    }
    philox_soa(c0, c1, c2, c3, k0, k1);
    for (std::size_t j = 0; j < len; ++j) {
      out[4 * (base + j) + 0] = c0[j];
      out[4 * (base + j) + 1] = c1[j];
      out[4 * (base + j) + 2] = c2[j];
      out[4 * (base + j) + 3] = c3[j];
    }
  }
}

void fill_normals(uint64_t seed, uint32_t leaf, uint32_t member_key, uint32_t epoch,
                  uint64_t offset, std::size_t count, float* out) {
  const uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  constexpr uint64_t kChunk = 4 * kLanes;  // values per batch of kLanes blocks
  const uint64_t end = offset + count;
  uint64_t pos = offset;
  alignas(64) float tmp[kChunk];
  // Head: a partial batch up to the next kChunk-value boundary of the stream.
  if (pos % kChunk != 0 && pos < end) {
    const uint64_t start = pos - pos % kChunk;
    normals_batch(static_cast<uint32_t>(start / 4), leaf, member_key, epoch, k0, k1, tmp);
    const uint64_t stop = std::min(end, start + kChunk);
    std::memcpy(out, tmp + (pos - start), (stop - pos) * sizeof(float));
    out += stop - pos;
    pos = stop;
  }
  // Body: whole batches written straight into the output.
  for (; pos + kChunk <= end; pos += kChunk, out += kChunk) {
    normals_batch(static_cast<uint32_t>(pos / 4), leaf, member_key, epoch, k0, k1, out);
  }
  // Tail.
  if (pos < end) {
    normals_batch(static_cast<uint32_t>(pos / 4), leaf, member_key, epoch, k0, k1, tmp);
    std::memcpy(out, tmp, (end - pos) * sizeof(float));
  }
}

}  // namespace EGG_ISA
}  // namespace egg
