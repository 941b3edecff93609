// contract.cuh: the update's contraction on the device in the C++ core's fixed order (raw pointers,
// caller's stream).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace egg_cuda {

struct ContractShape {
  std::size_t keys;  // K
  std::size_t rank;  // r
  std::size_t m;     // rows of out (columns of left)
  std::size_t n;     // columns of out (columns of right)
};

// Tile sizes `contract` takes: 0 picks one from the shape and the device's multiprocessors; 1 is
// the column kernel (one thread per entry of out); 32, 64 and 128 the tiled kernel's square tiles.
constexpr int kContractAuto = 0, kContractColumns = 1;

// out[i, j] = sum over (k, q) in ascending order, starting from +0, of
//   fmaf(w[k] * left[k, q, i] (rounded to float32), right[k, q, j], sum)
// -- one FMA per term, k never split across threads or blocks: `_core.contract`'s operation
// sequence, so the same bits as the CPU on any GPU and launch shape.
//   left:  (K, r, m) float32, C order (the factors (K, m, r) stored rank-major)
//   right: (K, r, n) float32, C order
//   w:     (K,) float32
//   out:   (m, n) float32, C order
// Returns the tile that ran (see kContractAuto); throws std::invalid_argument for another `tile`.
int contract(const float* left, const float* right, const float* w, const ContractShape& shape,
             float* out, int tile, cudaStream_t stream);

}  // namespace egg_cuda
