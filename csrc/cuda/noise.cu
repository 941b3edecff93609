// noise.cu: Philox4x32-10 and Box-Muller on the device, from the same philox.h as the CPU core.
//
// The math lives in philox.h; this file decides how threads map onto Philox blocks. One thread
// computes one block (4 normals) because Philox is compute-bound and a block is its natural
// unit; rows (members) map to the y dimension so no thread divides 64-bit integers to find its
// row, and short rows share a thread block (grid_cols_rows) instead of idling it. When a row's
// values start on a block boundary and the row is 16-byte aligned, every block is stored with
// one float4 store.
//
// CMakeLists.txt compiles this file with --fmad=false: nvcc would otherwise fuse philox.h's
// products and sums into FMAs, and the normals would differ from the CPU's (which is built
// without contraction) by an ulp in a few values in a thousand. tests/test_cuda_plumbing.py reads
// the kernels' PTX out of the built module to check that no fma.rn.f32 is left.
#include <algorithm>
#include <cstdint>
#include <stdexcept>

#include "cuda/launch.cuh"
#include "cuda/noise.cuh"
#include "cuda/noise_kernels.cuh"

namespace egg_cuda {

using noise_detail::kMaxJobs;
using noise_detail::NormalsJob;
using noise_detail::NormalsJobs;

namespace {

uint64_t philox_blocks_of(const NormalsJob& job) {
  return (job.offset + job.count + 3) / 4 - job.offset / 4;
}

NormalsJob make_job(uint32_t leaf, uint64_t offset, uint64_t count, float* out) {
  const bool aligned = offset % 4 == 0 && count % 4 == 0 && aligned16(out);
  return {out, offset, count, leaf, aligned ? 1u : 0u};
}

}  // namespace

void philox_blocks(const uint32_t* counters, std::size_t n, uint32_t k0, uint32_t k1,
                   uint32_t* out, cudaStream_t stream) {
  if (n == 0) return;
  const unsigned grid = grid_1d(n, kBlockThreads);
  if (aligned16(counters) && aligned16(out)) {
    launch("philox kernel launch", noise_detail::philox_kernel<true>, dim3(grid),
           dim3(kBlockThreads), stream, counters, n, k0, k1, out);
  } else {
    launch("philox kernel launch", noise_detail::philox_kernel<false>, dim3(grid),
           dim3(kBlockThreads), stream, counters, n, k0, k1, out);
  }
}

void fill_normals_many(uint64_t seed, uint32_t epoch, const uint32_t* member_keys,
                       std::size_t rows, const std::vector<uint32_t>& leaves,
                       const std::vector<uint64_t>& offsets, const std::vector<uint64_t>& counts,
                       const std::vector<float*>& outs, cudaStream_t stream) {
  const std::size_t n = leaves.size();
  if (offsets.size() != n || counts.size() != n || outs.size() != n) {
    throw std::invalid_argument("leaves, offsets, counts and outs must have the same length");
  }
  if (rows == 0) return;
  const uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  NormalsJobs table{};
  int used = 0;
  uint64_t widest = 0;
  auto flush = [&] {
    if (used == 0) return;
    // Sized for the longest request; the blocks past a shorter one's end exit at once.
    const Launch l = grid_cols_rows(widest, rows, kBlockThreads);
    launch("normals kernel launch", noise_detail::normals_many_kernel,
           dim3(l.grid.x, l.grid.y, static_cast<unsigned>(used)), l.block, stream, k0, k1, table,
           member_keys, epoch, rows);
    used = 0;
    widest = 0;
  };
  for (std::size_t j = 0; j < n; ++j) {
    if (counts[j] == 0) continue;
    table.job[used] = make_job(leaves[j], offsets[j], counts[j], outs[j]);
    widest = std::max(widest, philox_blocks_of(table.job[used]));
    if (++used == kMaxJobs) flush();
  }
  flush();
}

}  // namespace egg_cuda
