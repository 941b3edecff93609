// kernels.cpp: SIMD-friendly Philox and Box-Muller loops; compiled once per ISA (EGG_ISA).
//
// The loops work on 16 counters at a time in structure-of-arrays form so that the compiler
// turns every line of philox.h into one vector instruction (vpmuludq for the 32x32->64 products,
// vdivps/vsqrtps and our polynomials for Box-Muller).
#include <algorithm>
#include <cstring>

#include "core/kernels.h"
#include "philox.h"

#ifndef EGG_ISA
#error "EGG_ISA must name the instruction set this file is compiled for"
#endif

namespace egg {
namespace EGG_ISA {

namespace {
constexpr int kLanes = 16;  // counters per vector batch: 16 x 32-bit = one AVX-512 register

// Philox over kLanes counters held as four arrays.
inline void philox_soa(uint32_t* __restrict c0, uint32_t* __restrict c1, uint32_t* __restrict c2,
                       uint32_t* __restrict c3, uint32_t k0, uint32_t k1) {
#pragma GCC unroll 10
  for (int r = 0; r < 10; ++r) {
#pragma GCC ivdep
    for (int j = 0; j < kLanes; ++j) {
      uint32_t a = c0[j], b = c1[j], c = c2[j], d = c3[j];
      philox_round(a, b, c, d, k0, k1);
      c0[j] = a;
      c1[j] = b;
      c2[j] = c;
      c3[j] = d;
    }
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
}

// 16 consecutive blocks starting at `block` -> 64 consecutive stream values in `out`.
inline void normals_16_blocks(uint32_t block, uint32_t leaf, uint32_t member_key, uint32_t epoch,
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
  constexpr uint64_t kChunk = 4 * kLanes;  // values per 16-block batch
  const uint64_t end = offset + count;
  uint64_t pos = offset;
  alignas(64) float tmp[kChunk];
  // Head: a partial batch up to the next 64-value boundary of the stream.
  if (pos % kChunk != 0 && pos < end) {
    const uint64_t start = pos - pos % kChunk;
    normals_16_blocks(static_cast<uint32_t>(start / 4), leaf, member_key, epoch, k0, k1, tmp);
    const uint64_t stop = std::min(end, start + kChunk);
    std::memcpy(out, tmp + (pos - start), (stop - pos) * sizeof(float));
    out += stop - pos;
    pos = stop;
  }
  // Body: whole batches written straight into the output.
  for (; pos + kChunk <= end; pos += kChunk, out += kChunk) {
    normals_16_blocks(static_cast<uint32_t>(pos / 4), leaf, member_key, epoch, k0, k1, out);
  }
  // Tail.
  if (pos < end) {
    normals_16_blocks(static_cast<uint32_t>(pos / 4), leaf, member_key, epoch, k0, k1, tmp);
    std::memcpy(out, tmp, (end - pos) * sizeof(float));
  }
}

}  // namespace EGG_ISA
}  // namespace egg
