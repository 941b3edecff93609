// int8_kernels.cuh: device code of the integer leaves' kernels (launches in int8.cu).
//
// The GEMM: one warp per block, a 64 x 32 output tile per warp (4 x 4 tensor-core tiles of
// 16 x 8), fragments loaded straight from the packed operands, which the pack kernels store in
// fragment order (int8.cuh): one coalesced 16-byte load per lane per 16 x 32 tile of a, one
// 8-byte load per 32 x 8 tile of b. The int32 result then goes through the mode's epilogue in
// registers, so the layer's int32 intermediate never reaches memory. Integer sums are exact, so
// the tile shapes and the order of the tensor-core steps change no bit. Kept apart from the
// launches so that csrc/cuda/emulation runs the same kernels on the CPU (it supplies the
// warp-wide mma step).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "cuda/int8.cuh"
#include "cuda/launch.cuh"  // EGG_VEC_ACCESS

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
  const std::size_t kb_count = g.kp / 32;
  const std::size_t row_subs = (g.rows + 15) / 16, col_subs = (g.n + 7) / 8;
  const std::size_t row_tiles = (g.rows + kTileRows - 1) / kTileRows;
  const std::size_t col_tiles = (g.n + kTileCols - 1) / kTileCols;
  const std::size_t a_block = int8_packed_rows(g.rows, g.kp), b_block = int8_packed_cols(g.n, g.kp);
  // Every loop bound is the same for the 32 lanes: the warp stays converged for mma.sync.
  for (std::size_t grp = blockIdx.z; grp < g.groups; grp += gridDim.z)
    for (std::size_t rt = blockIdx.y; rt < row_tiles; rt += gridDim.y)
      for (std::size_t ct = blockIdx.x; ct < col_tiles; ct += gridDim.x) {
        const int8_t* A = g.a + (g.a_groups == 1 ? 0 : grp) * a_block;
        const int8_t* Bt = g.bt + grp * b_block;
        const std::size_t row0 = rt * kTileRows, col0 = ct * kTileCols;
        int32_t acc[4][4][4] = {};
        for (std::size_t kb = 0; kb < kb_count; ++kb) {
          uint32_t af[4][4], bf[4][2];
#pragma unroll
          for (int mt = 0; mt < 4; ++mt) {
            const std::size_t sub = rt * 4 + mt;
            if (sub < row_subs) {
              const int8_t* p = A + ((sub * kb_count + kb) * 32 + lane) * 16;
              EGG_VEC_ACCESS(p);
              const uint4 v = *reinterpret_cast<const uint4*>(p);
              af[mt][0] = v.x, af[mt][1] = v.y, af[mt][2] = v.z, af[mt][3] = v.w;
            } else {
              af[mt][0] = af[mt][1] = af[mt][2] = af[mt][3] = 0u;
            }
          }
#pragma unroll
          for (int nt = 0; nt < 4; ++nt) {
            const std::size_t sub = ct * 4 + nt;
            if (sub < col_subs) {
              const int8_t* p = Bt + ((sub * kb_count + kb) * 32 + lane) * 8;
              const uint2 v = *reinterpret_cast<const uint2*>(p);
              bf[nt][0] = v.x, bf[nt][1] = v.y;
            } else {
              bf[nt][0] = bf[nt][1] = 0u;
            }
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

// Where the packers read: a matrix (blocks of `rows` x `k`, row stride lds, block stride bs)...
struct RowMajor {
  const int8_t* p;
  std::size_t lds, bs;
  __device__ __forceinline__ int at(std::size_t blk, std::size_t row, std::size_t k) const {
    return p[blk * bs + row * lds + k];
  }
};
// ... a matrix (blocks of (k, n)) read transposed, as (n, k) ...
struct Transposed {
  const int8_t* p;
  std::size_t k, n;
  __device__ __forceinline__ int at(std::size_t blk, std::size_t j, std::size_t kk) const {
    return p[(blk * k + kk) * n + j];
  }
};
// ... or the update's factors over p = kk * r + q: f[kk, i, q] (times c[kk] when c is given).
struct Factor {
  const int8_t* f;
  const int8_t* c;
  std::size_t d, r;
  __device__ __forceinline__ int at(std::size_t, std::size_t i, std::size_t p) const {
    const std::size_t kk = p / r, q = p % r;
    const int v = f[(kk * d + i) * r + q];
    return c != nullptr ? v * c[kk] : v;
  }
};

// dst: `blocks` blocks of a in int8_packed_rows layout (int8.cuh): byte (sub, kb, lane, reg, i)
// holds a[row = 16 sub + 8 (reg & 1) + lane / 4][k = 32 kb + 16 (reg >> 1) + 4 (lane % 4) + i],
// zero past rows or k: lane's a0..a3 of the m16n8k32 step, 16 bytes.
template <class Src>
__global__ void pack_a_kernel(int8_t* dst, Src src, std::size_t blocks, std::size_t rows,
                              std::size_t k, std::size_t kp) {
  const std::size_t per = int8_packed_rows(rows, kp), kbs = kp / 32;
  const std::size_t total = blocks * per, step = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t idx = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       idx < total; idx += step) {
    const std::size_t blk = idx / per, rem = idx % per;
    const std::size_t sub = rem / (kbs * 512), kb = (rem / 512) % kbs, lane = (rem / 16) % 32;
    const std::size_t reg = (rem / 4) % 4, i = rem % 4;
    const std::size_t row = 16 * sub + 8 * (reg & 1) + lane / 4;
    const std::size_t kk = 32 * kb + 16 * (reg >> 1) + 4 * (lane % 4) + i;
    dst[idx] = static_cast<int8_t>(row < rows && kk < k ? src.at(blk, row, kk) : 0);
  }
}

// dst: `blocks` blocks of b^T in int8_packed_cols layout: byte (sub, kb, lane, reg, i) holds
// b[k = 32 kb + 16 reg + 4 (lane % 4) + i][col = 8 sub + lane / 4]: lane's b0, b1, 8 bytes.
template <class Src>
__global__ void pack_b_kernel(int8_t* dst, Src src, std::size_t blocks, std::size_t cols,
                              std::size_t k, std::size_t kp) {
  const std::size_t per = int8_packed_cols(cols, kp), kbs = kp / 32;
  const std::size_t total = blocks * per, step = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t idx = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       idx < total; idx += step) {
    const std::size_t blk = idx / per, rem = idx % per;
    const std::size_t sub = rem / (kbs * 256), kb = (rem / 256) % kbs, lane = (rem / 8) % 32;
    const std::size_t reg = (rem / 4) % 2, i = rem % 4;
    const std::size_t col = 8 * sub + lane / 4;
    const std::size_t kk = 32 * kb + 16 * reg + 4 * (lane % 4) + i;
    dst[idx] = static_cast<int8_t>(col < cols && kk < k ? src.at(blk, col, kk) : 0);
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
