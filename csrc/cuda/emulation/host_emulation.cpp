// host_emulation.cpp: runs the CUDA kernels on the CPU, for machines without a GPU.
//
// Every CUDA thread becomes a std::thread; the 32 threads of a warp share a barrier that
// implements __shfl_xor_sync. The kernels come unchanged from lowrank_kernels.cuh and
// noise_kernels.cuh and the launch geometry from launch.cuh, so this checks their indexing,
// grid-stride loops, float4 and scalar paths, NaN poisoning of bad keys and float16 input.
// The low-rank kernels are compared with double-precision loops, the noise kernel bit for bit
// with philox.h's normals_block. It does not check timing, memory ordering or occupancy: only a
// GPU run can. Build and run from the repository root (about 15 s), as one command line:
//   g++ -std=c++20 -O1 -Wno-attributes -Wno-unknown-pragmas -Icsrc -I/usr/local/cuda/include
//     csrc/cuda/emulation/host_emulation.cpp -o /tmp/host_emulation
//     -L/usr/local/cuda/lib64 -lcudart_static -ldl -lrt -lpthread && /tmp/host_emulation
#include <cuda_runtime.h>
#include <cuda_fp16.h>

#include <barrier>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

thread_local uint3 emu_threadIdx, emu_blockIdx;
thread_local dim3 emu_blockDim, emu_gridDim;
#define threadIdx emu_threadIdx
#define blockIdx emu_blockIdx
#define blockDim emu_blockDim
#define gridDim emu_gridDim

struct WarpCtx {
  std::barrier<> bar{32};
  float vals[32];
};
thread_local WarpCtx* tl_warp;
thread_local int tl_lane;
inline float __shfl_xor_sync(unsigned, float v, int s) {
  tl_warp->vals[tl_lane] = v;
  tl_warp->bar.arrive_and_wait();
  const float r = tl_warp->vals[tl_lane ^ s];
  tl_warp->bar.arrive_and_wait();
  return r;
}

#include "cuda/launch.cuh"
#include "cuda/lowrank_kernels.cuh"
#include "cuda/noise_kernels.cuh"

template <class F>
void launch(dim3 grid, dim3 block, F f) {
  const unsigned nt = block.x * block.y * block.z;
  for (unsigned by = 0; by < grid.y; ++by)
    for (unsigned bx = 0; bx < grid.x; ++bx) {
      std::vector<WarpCtx> warps((nt + 31) / 32);
      std::vector<std::thread> th;
      for (unsigned t = 0; t < nt; ++t)
        th.emplace_back([&, t] {
          emu_threadIdx = make_uint3(t % block.x, t / block.x, 0);
          emu_blockIdx = make_uint3(bx, by, 0);
          emu_blockDim = block;
          emu_gridDim = grid;
          tl_warp = &warps[t / 32];
          tl_lane = t % 32;
          f();
        });
      for (auto& x : th) x.join();
    }
}

using namespace egg_cuda;
static int failures = 0;

template <class T>
void lowrank_case(bool per_member, std::size_t m, std::size_t n, std::size_t r, bool use_base,
                  bool bad_key, bool tiny_grid = false) {
  const std::size_t N = 6, Bt = 3, K = 4;  // members, rows per member, factor sets
  std::mt19937 g(static_cast<unsigned>(m * 131 + n * 7 + r));
  std::normal_distribution<float> d;
  std::vector<float> A(K * m * r), B(K * n * r), coef(N), base(Bt * n), out(N * Bt * n), xa(N * Bt * r);
  std::vector<T> x((per_member ? N : 1) * Bt * m);
  for (auto& v : A) v = d(g);
  for (auto& v : B) v = d(g);
  for (auto& v : coef) v = d(g);
  for (auto& v : base) v = d(g);
  for (auto& v : out) v = d(g);
  std::vector<float> xf(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    x[i] = T(d(g));
    xf[i] = float(x[i]);
  }
  std::vector<uint32_t> keys = {0, 0, 3, 3, 1, 2};
  if (bad_key) keys[4] = 9;
  const std::vector<float> start = out;
  LowrankShape s{N, Bt, m, n, r, K};
  const std::size_t rows = N * Bt;
  // tiny_grid: one block per kernel, so every grid-stride loop takes several turns.
  const unsigned pgrid = tiny_grid ? 1 : grid_1d(rows * 32, 256);
  launch(dim3(pgrid), dim3(256), [&] {
    lowrank_detail::project_kernel<T>(x.data(), per_member, A.data(), keys.data(), coef.data(), s,
                                      xa.data());
  });
  const bool vec = n % 4 == 0;
  const float* bp = use_base ? base.data() : nullptr;
  if (vec) {
    Launch l = grid_cols_rows(n / 4, rows, 256);
    if (tiny_grid) l = {dim3(1, 1, 1), dim3(2, 4, 1)};
    launch(l.grid, l.block, [&] {
      lowrank_detail::expand_kernel<4>(xa.data(), B.data(), keys.data(), s, bp, out.data());
    });
  } else {
    Launch l = grid_cols_rows(n, rows, 256);
    if (tiny_grid) l = {dim3(1, 1, 1), dim3(2, 4, 1)};
    launch(l.grid, l.block, [&] {
      lowrank_detail::expand_kernel<1>(xa.data(), B.data(), keys.data(), s, bp, out.data());
    });
  }
  double worst = 0;
  for (std::size_t i = 0; i < N; ++i)
    for (std::size_t b = 0; b < Bt; ++b) {
      const float* xr = xf.data() + ((per_member ? i * Bt : 0) + b) * m;
      for (std::size_t c = 0; c < n; ++c) {
        const float got = out[(i * Bt + b) * n + c];
        if (keys[i] >= K) {
          if (!std::isnan(got)) ++failures, std::printf("expected NaN\n");
          continue;
        }
        double acc = 0;
        for (std::size_t q = 0; q < r; ++q) {
          double dot = 0;
          for (std::size_t j = 0; j < m; ++j) dot += double(xr[j]) * A[(keys[i] * m + j) * r + q];
          acc += dot * B[(keys[i] * n + c) * r + q];
        }
        const double want =
            (use_base ? base[b * n + c] : start[(i * Bt + b) * n + c]) + coef[i] * acc;
        worst = std::max(worst, std::abs(want - got) / (1 + std::abs(want)));
      }
    }
  const bool ok = worst < 1e-5;
  if (!ok) ++failures;
  std::printf("%s lowrank %s per_member=%d m=%zu n=%zu r=%zu base=%d bad_key=%d vec=%d tiny=%d "
              "err=%.2e\n", ok ? "ok  " : "FAIL", sizeof(T) == 2 ? "f16" : "f32", per_member, m, n,
              r, use_base, bad_key, vec, tiny_grid, worst);
}

void noise_case(uint64_t offset, std::size_t count, std::size_t rows, bool tiny_grid = false) {
  std::vector<uint32_t> keys(rows);
  for (std::size_t i = 0; i < rows; ++i) keys[i] = static_cast<uint32_t>(i * 7 + 1);
  std::vector<float> out(rows * count + 1, -99.0f);
  const std::size_t blocks = (offset + count + 3) / 4 - offset / 4;
  // The launch geometry of noise.cu (short rows packed into blocks), or a tiny grid whose
  // grid-stride loops must cover everything.
  const Launch l = tiny_grid ? Launch{dim3(1, 2, 1), dim3(256, 1, 1)}
                             : grid_cols_rows(blocks, rows, 256);
  const dim3 grid = l.grid;
  const bool aligned = offset % 4 == 0 && count % 4 == 0;
  const uint64_t seed = 0x123456789abcdefULL;
  const uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  launch(grid, l.block, [&] {
    if (aligned)
      noise_detail::normals_kernel<true>(k0, k1, 5, keys.data(), 2, offset, rows, count, out.data());
    else
      noise_detail::normals_kernel<false>(k0, k1, 5, keys.data(), 2, offset, rows, count, out.data());
  });
  int bad = 0;
  for (std::size_t row = 0; row < rows; ++row)
    for (std::size_t j = 0; j < count; ++j) {
      const uint64_t k = offset + j;
      float z[4];
      egg::normals_block(uint32_t(k / 4), 5, keys[row], 2, k0, k1, z);
      if (std::memcmp(&z[k % 4], &out[row * count + j], 4) != 0) ++bad;
    }
  if (out[rows * count] != -99.0f) ++bad;  // nothing written past the end
  if (bad) ++failures;
  std::printf("%s noise offset=%llu count=%zu rows=%zu aligned=%d grid=(%u,%u) block=(%u,%u) "
              "bad=%d\n", bad ? "FAIL" : "ok  ", (unsigned long long)offset, count, rows, aligned,
              grid.x, grid.y, l.block.x, l.block.y, bad);
}

int main() {
  for (bool pm : {false, true})
    for (auto [m, n] : {std::pair<std::size_t, std::size_t>{37, 20}, {64, 13}, {5, 3}, {300, 16}})
      for (std::size_t r : {1, 3, 9})
        for (bool base : {false, true}) lowrank_case<float>(pm, m, n, r, base, false);
  lowrank_case<float>(true, 40, 8, 1, false, true);
  lowrank_case<float>(true, 40, 20, 1, false, false, true);
  lowrank_case<float>(false, 33, 7, 10, true, false, true);
  lowrank_case<float>(false, 40, 7, 2, true, true);
  lowrank_case<__half>(true, 70, 12, 1, false, false);
  lowrank_case<__half>(false, 70, 9, 2, true, false);
  noise_case(0, 64, 3);
  noise_case(3, 61, 2);
  noise_case(8, 6, 5);
  noise_case(0, 300000, 1);
  noise_case(5, 1, 4);
  noise_case(0, 2052, 5, true);
  noise_case(2, 2050, 5, true);
  noise_case(0, 16, 70);   // short rows: several rows per thread block
  noise_case(1, 9, 33);    // short unaligned rows
  noise_case(4, 12, 9, true);
  std::printf("%d failure(s)\n", failures);
  return failures != 0;
}
