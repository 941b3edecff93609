// contract_kernels.cuh: device code of the exact contraction (see contract.cu for the design).
//
// Kept apart from the launch code so that the kernels have one definition whichever way they run:
// contract.cu launches them on the GPU, csrc/cuda/emulation/host_emulation.cpp runs them on the CPU.
//
// Every entry of out is one thread's register, fed its terms in ascending (key, rank) order with
// one fmaf each: the tiles and stages below decide only where the operands come from, never the
// order of a sum, so any tile size gives the same bits. contract.cu is compiled with
// --fmad=false, so the product w * left is rounded on its own before its fmaf, as on the CPU.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "cuda/contract.cuh"
#include "cuda/launch.cuh"

namespace egg_cuda {
namespace contract_detail {

// Rows of the contracted index (key, rank) staged in shared memory at a time.
constexpr int kDepth = 8;

// A square tile of out, kTile x kTile, computed by (kTile / kMicro)^2 threads, each holding a
// kMicro x kMicro block of it in registers. A thread's rows (and columns) are kMicro / 4 runs of 4,
// kStride apart, so that the lanes of a warp read consecutive float4s of a stage (no bank
// conflicts) and write consecutive float4s of out.
template <int kTile_, int kMicro_>
struct Tiling {
  static constexpr int kTile = kTile_, kMicro = kMicro_;
  static constexpr int kSide = kTile / kMicro;  // threads along each axis
  static constexpr int kThreads = kSide * kSide;
  static constexpr int kRuns = kMicro / 4;
  static constexpr int kStride = kTile / kRuns;
  // Values of each operand one thread stages per stage: kDepth rows of kTile, in runs of kLoads.
  static constexpr int kLoads = kDepth * kTile / kThreads;
  static constexpr int kRunsPerRow = kTile / kLoads;
  static_assert(kMicro % 4 == 0 && kLoads % 4 == 0 && kThreads % 32 == 0, "whole float4s, warps");
  static_assert(kRunsPerRow * kDepth == kThreads, "one run of each operand per thread per stage");
};

// One thread's share of a stage: kLoads consecutive values of row kappa0 + row of src (rows of
// length ld, columns col0 ... of the tile starting at `base`), scaled by w[kappa / rank] when
// kScale (w * left, rounded to float32 as the CPU rounds it). Columns past `cols` read as 0:
// they only feed entries of out that are never stored. Rows past the end are not read.
template <class T, bool kVec, bool kScale>
__device__ __forceinline__ void fetch(const float* __restrict__ src, std::size_t ld,
                                      std::size_t cols, std::size_t base, std::size_t kappa0,
                                      std::size_t kappas, const float* __restrict__ w,
                                      const FastDivmod& by_rank, float (&reg)[T::kLoads]) {
  const int t = static_cast<int>(threadIdx.x);
  const std::size_t kappa = kappa0 + t / T::kRunsPerRow;
  const std::size_t c0 = base + static_cast<std::size_t>(t % T::kRunsPerRow) * T::kLoads;
  if (kappa >= kappas) {  // a row past the end: staged, never multiplied
#pragma unroll
    for (int e = 0; e < T::kLoads; ++e) reg[e] = 0.0f;
    return;
  }
  const float* p = src + kappa * ld;
  if (kVec) {  // cols % 4 == 0 and every row 16-byte aligned: a float4 is all in or all out
#pragma unroll
    for (int v = 0; v < T::kLoads / 4; ++v) {
      const std::size_t c = c0 + 4 * v;
      float4 f = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      if (c < cols) {
        EGG_VEC_ACCESS(p + c);
        f = *reinterpret_cast<const float4*>(p + c);
      }
      reg[4 * v] = f.x;
      reg[4 * v + 1] = f.y;
      reg[4 * v + 2] = f.z;
      reg[4 * v + 3] = f.w;
    }
  } else {
#pragma unroll
    for (int e = 0; e < T::kLoads; ++e) reg[e] = c0 + e < cols ? p[c0 + e] : 0.0f;
  }
  if (kScale) {
    std::size_t k, q;
    by_rank.divmod(kappa, k, q);
    const float wk = w[k];
#pragma unroll
    for (int e = 0; e < T::kLoads; ++e) reg[e] = reg[e] * wk;  // --fmad=false: rounded
  }
}

// The thread's run into the stage as float4 stores (scalar stores of consecutive runs would hit
// the same banks four ways).
template <class T>
__device__ __forceinline__ void stash(float (*stage)[T::kTile], const float (&reg)[T::kLoads]) {
  const int t = static_cast<int>(threadIdx.x);
  float* dst = &stage[t / T::kRunsPerRow][(t % T::kRunsPerRow) * T::kLoads];
#pragma unroll
  for (int v = 0; v < T::kLoads / 4; ++v) {
    reinterpret_cast<float4*>(dst)[v] =
        make_float4(reg[4 * v], reg[4 * v + 1], reg[4 * v + 2], reg[4 * v + 3]);
  }
}

// acc[a][b] = fmaf(left[kk][row a], right[kk][column b], acc[a][b]) for kk = 0 .. depth-1 in order.
template <class T, int kFixedDepth>
__device__ __forceinline__ void accumulate(const float (*lt)[T::kTile], const float (*rt)[T::kTile],
                                           int depth, float (&acc)[T::kMicro][T::kMicro]) {
  const int ty = static_cast<int>(threadIdx.x) / T::kSide;
  const int tx = static_cast<int>(threadIdx.x) % T::kSide;
  const int n = kFixedDepth > 0 ? kFixedDepth : depth;
#pragma unroll
  for (int kk = 0; kk < n; ++kk) {
    float a[T::kMicro], b[T::kMicro];
#pragma unroll
    for (int u = 0; u < T::kRuns; ++u) {
      const float4 la = *reinterpret_cast<const float4*>(&lt[kk][4 * ty + u * T::kStride]);
      const float4 rb = *reinterpret_cast<const float4*>(&rt[kk][4 * tx + u * T::kStride]);
      a[4 * u] = la.x, a[4 * u + 1] = la.y, a[4 * u + 2] = la.z, a[4 * u + 3] = la.w;
      b[4 * u] = rb.x, b[4 * u + 1] = rb.y, b[4 * u + 2] = rb.z, b[4 * u + 3] = rb.w;
    }
#pragma unroll
    for (int i = 0; i < T::kMicro; ++i) {
#pragma unroll
      for (int j = 0; j < T::kMicro; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
  }
}

// One block per kTile x kTile tile of out (blockIdx.y: rows, blockIdx.x: columns); the contracted
// index runs through shared memory kDepth rows at a time, two stages deep: the next stage's
// global loads are in flight while this one is multiplied.
template <class T, bool kVec>
__global__ void tiled_kernel(const float* __restrict__ left, const float* __restrict__ right,
                             const float* __restrict__ w, ContractShape s, FastDivmod by_rank,
                             float* __restrict__ out) {
  alignas(16) static __shared__ float lt[2][kDepth][T::kTile];
  alignas(16) static __shared__ float rt[2][kDepth][T::kTile];
  const std::size_t row0 = static_cast<std::size_t>(blockIdx.y) * T::kTile;
  const std::size_t col0 = static_cast<std::size_t>(blockIdx.x) * T::kTile;
  const std::size_t kappas = s.keys * s.rank;
  float acc[T::kMicro][T::kMicro];
#pragma unroll
  for (int i = 0; i < T::kMicro; ++i) {
#pragma unroll
    for (int j = 0; j < T::kMicro; ++j) acc[i][j] = 0.0f;
  }
  float la[T::kLoads], rb[T::kLoads];
  fetch<T, kVec, true>(left, s.m, s.m, row0, 0, kappas, w, by_rank, la);
  fetch<T, kVec, false>(right, s.n, s.n, col0, 0, kappas, w, by_rank, rb);
  stash<T>(lt[0], la);
  stash<T>(rt[0], rb);
  __syncthreads();
  int cur = 0;
  for (std::size_t k0 = 0; k0 < kappas; k0 += kDepth) {  // the same trip count in every thread
    const bool more = k0 + kDepth < kappas;
    if (more) {
      fetch<T, kVec, true>(left, s.m, s.m, row0, k0 + kDepth, kappas, w, by_rank, la);
      fetch<T, kVec, false>(right, s.n, s.n, col0, k0 + kDepth, kappas, w, by_rank, rb);
    }
    if (kappas - k0 >= static_cast<std::size_t>(kDepth)) {
      accumulate<T, kDepth>(lt[cur], rt[cur], kDepth, acc);
    } else {
      accumulate<T, 0>(lt[cur], rt[cur], static_cast<int>(kappas - k0), acc);
    }
    if (more) {  // the other stage was last read before the previous barrier
      stash<T>(lt[cur ^ 1], la);
      stash<T>(rt[cur ^ 1], rb);
    }
    __syncthreads();
    cur ^= 1;
  }
  const int ty = static_cast<int>(threadIdx.x) / T::kSide;
  const int tx = static_cast<int>(threadIdx.x) % T::kSide;
#pragma unroll
  for (int u = 0; u < T::kRuns; ++u) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const std::size_t i = row0 + 4 * ty + u * T::kStride + e;
      if (i >= s.m) continue;
      float* o = out + i * s.n;
#pragma unroll
      for (int v = 0; v < T::kRuns; ++v) {
        const std::size_t j = col0 + 4 * tx + v * T::kStride;
        const float* a = &acc[4 * u + e][4 * v];
        if (kVec && j < s.n) {
          EGG_VEC_ACCESS(o + j);
          *reinterpret_cast<float4*>(o + j) = make_float4(a[0], a[1], a[2], a[3]);
        } else if (!kVec) {
#pragma unroll
          for (int f = 0; f < 4; ++f) {
            if (j + f < s.n) o[j + f] = a[f];
          }
        }
      }
    }
  }
}

// One thread per entry of out (grid-stride), for outputs too narrow to tile: consecutive threads
// take consecutive columns (coalesced reads of right, one broadcast value of left).
__global__ void column_kernel(const float* __restrict__ left, const float* __restrict__ right,
                              const float* __restrict__ w, ContractShape s, FastDivmod by_n,
                              float* __restrict__ out) {
  const std::size_t total = s.m * s.n;
  const std::size_t step = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t idx = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
       idx < total; idx += step) {
    std::size_t i, j;
    by_n.divmod(idx, i, j);
    float acc = 0.0f;
    for (std::size_t k = 0; k < s.keys; ++k) {
      const float wk = w[k];
      for (std::size_t q = 0; q < s.rank; ++q) {
        const std::size_t kappa = k * s.rank + q;
        acc = fmaf(left[kappa * s.m + i] * wk, right[kappa * s.n + j], acc);
      }
    }
    out[idx] = acc;
  }
}

}  // namespace contract_detail
}  // namespace egg_cuda
