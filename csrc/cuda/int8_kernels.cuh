// int8_kernels.cuh: device code of the integer leaves' kernels (launches in int8.cu).
//
// The GEMM: one warp per block, a 64 x 32 output tile per warp (4 x 4 tensor-core tiles of
// 16 x 8), fragments loaded straight from the packed operands (32-bit loads, every row of a and
// of b^T is kp bytes, kp % 32 == 0); the int32 result then goes through the mode's epilogue in
// registers, so the layer's int32 intermediate never reaches memory. Integer sums are exact, so
// the tile shapes and the order of the tensor-core steps change no bit. Kept apart from the
// launches so that csrc/cuda/emulation runs the same kernels on the CPU (it supplies the
// warp-wide mma step).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "cuda/int8.cuh"

namespace egg_cuda {
namespace int8_detail {

constexpr int kTileRows = 64, kTileCols = 32;  // one warp's output tile

// d = c + A (16 x 32, row-major fragments) @ B (32 x 8, column fragments), int32 accumulation.
__device__ __forceinline__ void mma_s8(int32_t d[4], const uint32_t a[4], const uint32_t b[2],
                                       const int32_t c[4]) {
#if defined(EGG_HOST_EMULATION)
  egg_emu::mma_s8_16x8x32(d, a, b, c);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%10, %11, %12, %13};\n"
      : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(c[0]), "r"(c[1]),
        "r"(c[2]), "r"(c[3]));
#else
  (void)d, (void)a, (void)b, (void)c;  // built for sm_80 and later only (CMakeLists.txt)
#endif
}

__device__ __forceinline__ uint32_t load32(const int8_t* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

__device__ __forceinline__ int clip8(long long v, bool relu) {
  const long long lo = relu ? 0 : -127;
  return static_cast<int>(v < lo ? lo : (v > 127 ? 127 : v));
}

// Member i's output at (row t, column j) from its GEMM value acc (Int8Terms' formula).
__device__ __forceinline__ void emit(const Int8Terms& p, std::size_t i, std::size_t t,
                                     std::size_t j, long long acc, const int32_t* xa) {
  const uint32_t k = p.keys != nullptr ? p.keys[i] : 0u;
  int8_t* out = p.out + (i * p.B + t) * p.n + j;
  if ((p.right != nullptr || p.bias_noise != nullptr) && k >= p.K) {
    *out = -128;
    return;
  }
  const long long s = p.signs != nullptr ? p.signs[i] : 1;
  long long v = acc;
  if (p.right != nullptr) {
    const int8_t* w = p.right + (static_cast<std::size_t>(k) * p.n + j) * p.r;
    long long lr = 0;
    for (std::size_t q = 0; q < p.r; ++q) lr += static_cast<long long>(xa[q]) * w[q];
    v += (s * lr) >> p.lr_shift;
  }
  long long b = 0;
  if (p.bias != nullptr) {
    b = p.bias[(p.bias_per_member ? i * p.n : 0) + j];
    if (p.bias_noise != nullptr) {
      b = clip8(b + ((s * p.bias_noise[static_cast<std::size_t>(k) * p.n + j]) >> p.bias_shift),
                false);
    }
  }
  *out = static_cast<int8_t>(clip8((v >> p.out_shift) + b, p.relu));
}

// The xa row of set `set` at row t (null without a low-rank term).
__device__ __forceinline__ const int32_t* xa_row(const Int8Terms& p, std::size_t set,
                                                 std::size_t t) {
  return p.right != nullptr ? p.xa + (set * p.B + t) * p.r : nullptr;
}

// GEMM row rho (of group g) and column j of the layer: the members it feeds.
__device__ __forceinline__ void linear_finish(const Int8Terms& p, std::size_t g, std::size_t rho,
                                              std::size_t j, long long acc) {
  if (p.w_per_member) {
    const std::size_t key = p.keys != nullptr ? p.keys[g] : 0;
    const std::size_t set = p.X != 1 ? g : (key < p.K ? key : 0);
    emit(p, g, rho, j, acc, xa_row(p, set, rho));
  } else if (p.X != 1) {
    const std::size_t i = rho / p.B, t = rho % p.B;
    emit(p, i, t, j, acc, xa_row(p, i, t));
  } else {
    for (std::size_t i = 0; i < p.N; ++i) {
      const std::size_t key = p.keys != nullptr ? p.keys[i] : 0;
      emit(p, i, rho, j, acc, xa_row(p, key < p.K ? key : 0, rho));
    }
  }
}

__global__ void gemm_kernel(Int8Gemm g) {
  const int lane = static_cast<int>(threadIdx.x);
  const int gid = lane >> 2, tig = lane & 3;
  const std::size_t row_tiles = (g.rows + kTileRows - 1) / kTileRows;
  const std::size_t col_tiles = (g.n + kTileCols - 1) / kTileCols;
  // Every loop bound is the same for the 32 lanes: the warp stays converged for mma.sync.
  for (std::size_t grp = blockIdx.z; grp < g.groups; grp += gridDim.z)
    for (std::size_t rt = blockIdx.y; rt < row_tiles; rt += gridDim.y)
      for (std::size_t ct = blockIdx.x; ct < col_tiles; ct += gridDim.x) {
        const int8_t* A = g.a + (g.a_groups == 1 ? 0 : grp) * g.rows * g.kp;
        const int8_t* Bt = g.bt + grp * g.n * g.kp;
        const std::size_t row0 = rt * kTileRows, col0 = ct * kTileCols;
        int32_t acc[4][4][4] = {};
        for (std::size_t k0 = 0; k0 < g.kp; k0 += 32) {
          uint32_t af[4][4], bf[4][2];
#pragma unroll
          for (int mt = 0; mt < 4; ++mt) {
            const std::size_t r0 = row0 + mt * 16 + gid, r1 = r0 + 8;
            const std::size_t k = k0 + 4 * tig;
            af[mt][0] = r0 < g.rows ? load32(A + r0 * g.kp + k) : 0u;
            af[mt][1] = r1 < g.rows ? load32(A + r1 * g.kp + k) : 0u;
            af[mt][2] = r0 < g.rows ? load32(A + r0 * g.kp + k + 16) : 0u;
            af[mt][3] = r1 < g.rows ? load32(A + r1 * g.kp + k + 16) : 0u;
          }
#pragma unroll
          for (int nt = 0; nt < 4; ++nt) {
            const std::size_t c = col0 + nt * 8 + gid, k = k0 + 4 * tig;
            bf[nt][0] = c < g.n ? load32(Bt + c * g.kp + k) : 0u;
            bf[nt][1] = c < g.n ? load32(Bt + c * g.kp + k + 16) : 0u;
          }
#pragma unroll
          for (int mt = 0; mt < 4; ++mt)
#pragma unroll
            for (int nt = 0; nt < 4; ++nt) mma_s8(acc[mt][nt], af[mt], bf[nt], acc[mt][nt]);
        }
#pragma unroll
        for (int mt = 0; mt < 4; ++mt)
#pragma unroll
          for (int nt = 0; nt < 4; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              const std::size_t row = row0 + mt * 16 + gid + (e >= 2 ? 8 : 0);
              const std::size_t col = col0 + nt * 8 + 2 * tig + (e & 1);
              if (row >= g.rows || col >= g.n) continue;
              const int32_t v = acc[mt][nt][e];
              if (g.mode == kInt8Raw) {
                g.c[row * g.n + col] = v;
              } else if (g.mode == kInt8Update) {
                const long long z = v, a = z < 0 ? -z : z;
                const int step = a >= g.tau ? (z > 0) - (z < 0) : 0;
                g.q_out[row * g.n + col] =
                    static_cast<int8_t>(clip8(g.q[row * g.n + col] + step, false));
              } else {
                linear_finish(g.terms, grp, row, col, v);
              }
            }
      }
}

// dst (blocks * rows, kp)[row, p] = src[row * lds + p] for p < k, else 0.
__global__ void pack_rows_kernel(int8_t* dst, const int8_t* src, std::size_t rows,
                                 std::size_t k, std::size_t lds, std::size_t kp) {
  const std::size_t total = rows * kp, step = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t idx = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       idx < total; idx += step) {
    const std::size_t row = idx / kp, p = idx % kp;
    dst[idx] = p < k ? src[row * lds + p] : static_cast<int8_t>(0);
  }
}

// dst (G, n, kp)[g, j, p] = src[g][p][j] (src (G, k, n)) for p < k, else 0.
__global__ void pack_cols_kernel(int8_t* dst, const int8_t* src, std::size_t G, std::size_t k,
                                 std::size_t n, std::size_t kp) {
  const std::size_t total = G * n * kp, step = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t idx = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       idx < total; idx += step) {
    const std::size_t p = idx % kp, j = (idx / kp) % n, grp = idx / (kp * n);
    dst[idx] = p < k ? src[(grp * k + p) * n + j] : static_cast<int8_t>(0);
  }
}

// The update's operands over p = kk * r + q: a' (m, kp) = c[kk] * a[kk, i, q] (with c) and
// b'^T (n, kp) = b[kk, j, q] (c null), zero for p >= K * r.
__global__ void pack_factor_kernel(int8_t* dst, const int8_t* f, const int8_t* c, std::size_t K,
                                   std::size_t d, std::size_t r, std::size_t kp) {
  const std::size_t total = d * kp, step = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t idx = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       idx < total; idx += step) {
    const std::size_t i = idx / kp, p = idx % kp;
    int v = 0;
    if (p < K * r) {
      const std::size_t kk = p / r, q = p % r;
      v = f[(kk * d + i) * r + q];
      if (c != nullptr) v *= c[kk];
    }
    dst[idx] = static_cast<int8_t>(v);
  }
}

// xa[(s, t, q)] = x[xi, t] . a[key, :, q] for s < sets: by_key (shared x): key = s, xi = 0;
// else member s: key = keys[s] (0 rows for a key >= K), xi = (X == 1 ? 0 : s).
__global__ void xa_kernel(int32_t* xa, const int8_t* x, std::size_t X, const int8_t* a,
                          const uint32_t* keys, bool by_key, std::size_t sets, std::size_t K,
                          std::size_t B, std::size_t m, std::size_t r) {
  const std::size_t total = sets * B * r, step = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t idx = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       idx < total; idx += step) {
    const std::size_t q = idx % r, t = (idx / r) % B, s = idx / (r * B);
    const std::size_t key = by_key ? s : (keys != nullptr ? keys[s] : 0);
    const std::size_t xi = by_key || X == 1 ? 0 : s;
    int32_t sum = 0;
    if (key < K) {
      const int8_t* xr = x + (xi * B + t) * m;
      const int8_t* ak = a + key * m * r + q;
      for (std::size_t p = 0; p < m; ++p) sum += static_cast<int32_t>(xr[p]) * ak[p * r];
    }
    xa[idx] = sum;
  }
}

// The epilogue alone: out[i, t, j] from acc[(i,) t, j] and xa[(xa_rows[i] or i), t].
__global__ void epilogue_kernel(Int8Terms p, const int32_t* acc, bool acc_per_member,
                                const uint32_t* xa_rows, std::size_t xa_count) {
  const std::size_t total = p.N * p.B * p.n, step = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t idx = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       idx < total; idx += step) {
    const std::size_t j = idx % p.n, t = (idx / p.n) % p.B, i = idx / (p.n * p.B);
    const std::size_t set = xa_rows != nullptr ? xa_rows[i] : i;
    if (p.right != nullptr && set >= xa_count) {
      p.out[idx] = -128;
      continue;
    }
    const long long v = acc[((acc_per_member ? i * p.B : 0) + t) * p.n + j];
    emit(p, i, t, j, v, xa_row(p, set, t));
  }
}

}  // namespace int8_detail
}  // namespace egg_cuda
