// noise.cuh: device noise entry points (raw device pointers, caller's stream).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "cuda/cuda_check.h"

namespace egg_cuda {

void philox_blocks(const uint32_t* counters, std::size_t n, uint32_t k0, uint32_t k1,
                   uint32_t* out, cudaStream_t stream);

void fill_normals(uint64_t seed, uint32_t leaf, const uint32_t* member_keys, uint32_t epoch,
                  uint64_t offset, std::size_t rows, std::size_t count, float* out,
                  cudaStream_t stream);

}  // namespace egg_cuda
