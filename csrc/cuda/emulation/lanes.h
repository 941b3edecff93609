// lanes.h: the CUDA emulators' grid runner: every CUDA thread of a launch on the CPU, all the
// threads of a block at the same time (one host thread per CUDA thread), blocks one after another.
//
// Include it first (it defines EGG_HOST_EMULATION and CUDA's thread indices), then the .cu/.cuh
// files whose kernels it runs: egg_cuda::launch (launch.cuh) hands each grid to run_grid. The
// lanes of a warp meet at a barrier in __shfl_xor_sync, __syncwarp and the int8 tensor-core
// step (mma_s8_16x8x32), the whole block in __syncthreads, so warp- and block-level code runs as
// on the GPU. A kernel's shared memory is written `static __shared__` (one array, as on the
// device): blocks run one at a time here, and every thread of a block finishes it before any
// starts the next, so the array is the running block's.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <barrier>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "cuda/emulation/thread_index.h"
#define EGG_HOST_EMULATION 1

namespace egg_emu {

constexpr int kLanes = 32;
// The most threads a block may have here (launch.cuh's kBlockThreads).
constexpr int kMaxThreads = 256;
constexpr int kMaxWarps = kMaxThreads / kLanes;

// One warp of the running block: __shfl_xor_sync exchanges through `vals`.
struct WarpCtx {
  std::barrier<> bar{kLanes};
  float vals[kLanes];
};

thread_local int tl_lane, tl_warp;
WarpCtx g_warps[kMaxWarps];
std::barrier<>* g_block = nullptr;  // the running launch's block barrier (__syncthreads)

// kMaxThreads host threads, thread t running CUDA thread t of every block of a grid in turn.
class LanePool {
 public:
  LanePool() {
    for (int t = 0; t < kMaxThreads; ++t) {
      threads_.emplace_back([this, t] {
        for (;;) {
          start_.arrive_and_wait();
          if (stop_) return;
          job_(t);
          done_.arrive_and_wait();
        }
      });
    }
  }
  ~LanePool() {
    stop_ = true;
    start_.arrive_and_wait();
    for (auto& t : threads_) t.join();
  }
  void run(std::function<void(int)> job) {
    job_ = std::move(job);
    start_.arrive_and_wait();
    done_.arrive_and_wait();
  }

 private:
  std::barrier<> start_{kMaxThreads + 1}, done_{kMaxThreads + 1};
  std::function<void(int)> job_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

LanePool& pool() {
  static LanePool p;
  return p;
}

std::atomic<long> g_misaligned{0};

// The capped grids' block limit (launch.cuh's grid_cap): kSMs (2) * kBlocksPerSM (32) as on a
// 2-SM device; a case may lower it (one block) so that grid-stride loops take many turns.
constexpr unsigned kDefaultMaxBlocks = 64;
unsigned g_max_blocks = kDefaultMaxBlocks;
unsigned max_blocks() { return g_max_blocks; }

void vector_access(const void* p) {
  if (reinterpret_cast<std::uintptr_t>(p) % 16 != 0) g_misaligned.fetch_add(1);
}

template <class Body>
void run_grid(dim3 grid, dim3 block, Body&& body) {
  const unsigned nt = block.x * block.y * block.z;
  if (nt % kLanes != 0) throw std::logic_error("emulated blocks must be whole warps");
  if (nt > kMaxThreads) throw std::logic_error("emulated blocks have at most 256 threads");
  std::barrier<> block_barrier(nt);
  g_block = &block_barrier;
  pool().run([&](int t) {
    if (static_cast<unsigned>(t) >= nt) return;
    tl_lane = t % kLanes;
    tl_warp = t / kLanes;
    const unsigned plane = block.x * block.y;
    emu_threadIdx = make_uint3(t % block.x, (t / block.x) % block.y, t / plane);
    emu_blockDim = block;
    emu_gridDim = grid;
    for (unsigned bz = 0; bz < grid.z; ++bz)
      for (unsigned by = 0; by < grid.y; ++by)
        for (unsigned bx = 0; bx < grid.x; ++bx) {
          emu_blockIdx = make_uint3(bx, by, bz);
          body();
          block_barrier.arrive_and_wait();  // the block is done before its shared memory is reused
        }
  });
  g_block = nullptr;
}

}  // namespace egg_emu

inline float __shfl_xor_sync(unsigned, float v, int s) {
  using egg_emu::tl_lane;
  egg_emu::WarpCtx& g_warp = egg_emu::g_warps[egg_emu::tl_warp];
  g_warp.vals[tl_lane] = v;
  g_warp.bar.arrive_and_wait();
  const float r = g_warp.vals[tl_lane ^ s];
  g_warp.bar.arrive_and_wait();
  return r;
}

inline void __syncwarp(unsigned = 0xFFFFFFFFu) {
  egg_emu::g_warps[egg_emu::tl_warp].bar.arrive_and_wait();
}
inline void __syncthreads() { egg_emu::g_block->arrive_and_wait(); }

namespace egg_emu {
// The int8 tensor-core step mma.m16n8k32.row.col.s32.s8.s8.s32 of the whole warp, with the PTX
// ISA's fragment layout (g = lane / 4, t = lane % 4): a[0] holds A[g][4t .. 4t+3], a[1]
// A[g+8][4t ..], a[2] A[g][16+4t ..], a[3] A[g+8][16+4t ..]; b[0] holds B[4t .. 4t+3][g], b[1]
// B[16+4t ..][g]; c/d[0..1] are C[g][2t], C[g][2t+1], c/d[2..3] the same in row g+8.
inline void mma_s8_16x8x32(int32_t d[4], const uint32_t a[4], const uint32_t b[2], const int32_t c[4]) {
  const int lane = tl_lane, g = lane / 4, t = lane % 4;
  auto byte = [](uint32_t v, int i) { return static_cast<int8_t>((v >> (8 * i)) & 0xFF); };
  static int8_t AA[kMaxWarps][16][32], BB[kMaxWarps][32][8];  // each warp's operands
  auto& A = AA[tl_warp];
  auto& B = BB[tl_warp];
  for (int i = 0; i < 4; ++i) {
    A[g][4 * t + i] = byte(a[0], i);
    A[g + 8][4 * t + i] = byte(a[1], i);
    A[g][16 + 4 * t + i] = byte(a[2], i);
    A[g + 8][16 + 4 * t + i] = byte(a[3], i);
    B[4 * t + i][g] = byte(b[0], i);
    B[16 + 4 * t + i][g] = byte(b[1], i);
  }
  WarpCtx& g_warp = g_warps[tl_warp];
  g_warp.bar.arrive_and_wait();
  for (int e = 0; e < 4; ++e) {
    const int row = g + (e >= 2 ? 8 : 0), col = 2 * t + (e % 2);
    int32_t s = c[e];
    for (int k = 0; k < 32; ++k) s += static_cast<int32_t>(A[row][k]) * B[k][col];
    d[e] = s;
  }
  g_warp.bar.arrive_and_wait();
}
}  // namespace egg_emu
