// noise.cuh: device noise entry points (raw device pointers, caller's stream).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace egg_cuda {

// out (n, 4) = Philox4x32-10 of counters (n, 4) under key (k0, k1); any 4-byte alignment.
void philox_blocks(const uint32_t* counters, std::size_t n, uint32_t k0, uint32_t k1,
                   uint32_t* out, cudaStream_t stream);

// Request j: outs[j] (rows, counts[j]) = values [offsets[j], offsets[j] + counts[j]) of stream
// (leaves[j], member_keys[row], epoch). One launch per 32 requests; a single fill is the
// one-request case.
void fill_normals_many(uint64_t seed, uint32_t epoch, const uint32_t* member_keys,
                       std::size_t rows, const std::vector<uint32_t>& leaves,
                       const std::vector<uint64_t>& offsets, const std::vector<uint64_t>& counts,
                       const std::vector<float*>& outs, cudaStream_t stream);

}  // namespace egg_cuda
