// contract.cu: the update's contraction sum_k w_k A_k B_k^T on the device, in the C++ core's order.
//
// cuBLAS's SGEMM picks its blocking, its k-splitting and its kernel by GPU model, library version
// and shape, so its bits move with them. This kernel keeps the one sequence the CPU runs
// (`_core.contract`): each entry of out is a register that adds its terms in (key, rank) order
// with one fmaf each, and the contracted index is never split across threads or blocks. Inside
// that rule it is a plain SIMT SGEMM: square tiles of out per block, 8 x 8 (or 4 x 4) entries per
// thread, the contracted index staged through shared memory 8 rows at a time, two stages deep.
//
// The tile is chosen so that the grid covers the multiprocessors: without split-k, a small out
// has few tiles, and a smaller tile is the only way to give every SM work. Outputs narrower than
// 32 take the column kernel (one thread per entry). The scale w_k is applied while staging (one
// rounded product per value, as the CPU's packing does), so the factors are read in place.
#include <stdexcept>
#include <string>

#include "cuda/contract.cuh"
#include "cuda/contract_kernels.cuh"
#include "cuda/launch.cuh"

namespace egg_cuda {

namespace {

using contract_detail::Tiling;

template <class T>
void launch_tiled(const float* left, const float* right, const float* w, const ContractShape& s,
                  float* out, cudaStream_t stream) {
  const std::size_t rows = (s.m + T::kTile - 1) / T::kTile;
  const std::size_t cols = (s.n + T::kTile - 1) / T::kTile;
  if (rows > kMaxGridY) throw std::invalid_argument("contract: m is too large for one launch");
  const dim3 grid(static_cast<unsigned>(cols), static_cast<unsigned>(rows), 1);
  const dim3 block(T::kThreads, 1, 1);
  const bool vec = s.m % 4 == 0 && s.n % 4 == 0 && aligned16(left) && aligned16(right) &&
                   aligned16(out);
  const char* what = "contract kernel launch";
  if (vec) {
    launch(what, contract_detail::tiled_kernel<T, true>, grid, block, stream, left, right, w, s,
           FastDivmod(s.rank), out);
  } else {
    launch(what, contract_detail::tiled_kernel<T, false>, grid, block, stream, left, right, w, s,
           FastDivmod(s.rank), out);
  }
}

// The largest tile whose grid covers every multiprocessor (the smallest when none does); the
// column kernel below 32.
int pick_tile(const ContractShape& s) {
  const std::size_t narrow = s.m < s.n ? s.m : s.n;
  if (narrow < 32) return kContractColumns;
  const std::size_t sms = static_cast<std::size_t>(sm_count());
  for (int tile : {128, 64}) {
    const std::size_t t = static_cast<std::size_t>(tile);
    if (narrow >= t && ((s.m + t - 1) / t) * ((s.n + t - 1) / t) >= sms) return tile;
  }
  return 32;
}

}  // namespace

int contract(const float* left, const float* right, const float* w, const ContractShape& s,
             float* out, int tile, cudaStream_t stream) {
  if (tile == kContractAuto) tile = pick_tile(s);
  if (s.m == 0 || s.n == 0) return tile;
  switch (tile) {
    case kContractColumns: {
      const unsigned grid = grid_1d(s.m * s.n, kBlockThreads);
      launch("contract kernel launch", contract_detail::column_kernel, dim3(grid),
             dim3(kBlockThreads), stream, left, right, w, s, FastDivmod(s.n), out);
      break;
    }
    case 32:
      launch_tiled<Tiling<32, 4>>(left, right, w, s, out, stream);
      break;
    case 64:
      launch_tiled<Tiling<64, 8>>(left, right, w, s, out, stream);
      break;
    case 128:
      launch_tiled<Tiling<128, 8>>(left, right, w, s, out, stream);
      break;
    default:
      throw std::invalid_argument("contract: tile must be 0, 1, 32, 64 or 128, got " +
                                  std::to_string(tile));
  }
  return tile;
}

}  // namespace egg_cuda
