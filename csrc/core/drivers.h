// drivers.h: the core's threaded drivers. Each splits one operation's work over the pool
// (parallel_for) and calls the dispatched kernels; none knows of Python (the bindings check
// buffers and release the GIL before calling them).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/kernels.h"

namespace egg {

// Philox4x32-10 of n counter blocks (n, 4) under key (k0, k1) into out (n, 4).
void philox_many(const uint32_t* counters, std::size_t n, uint32_t k0, uint32_t k1,
                 uint32_t* out);

// One fill request: dst[i, :] = normals [offset, offset + count) of stream (leaf, keys[i], epoch)
// for each of the call's rows (dst is rows x count, row-major).
struct NormalsJob {
  uint32_t leaf;
  uint64_t offset;
  std::size_t count;
  float* dst;
};
// Every job in one parallel pass, the work split by VALUES (a 1024-wide factor next to a 16-wide
// bias). Each value depends only on its stream and position, so the split moves no bit.
void fill_normals_many(uint64_t seed, const uint32_t* keys, std::size_t rows, uint32_t epoch,
                       const std::vector<NormalsJob>& jobs);

// One row copy of the shared noise table: len floats from src to dst.
struct RowCopy {
  const float* src;
  float* dst;
  std::size_t len;
};
// All copies in one parallel pass, split by values like fill_normals_many.
void copy_rows(const std::vector<RowCopy>& rows);

// Shapes of a low-rank call: N members, K keys (the factors' first axis), rows per member, rank r.
struct LowrankDims {
  std::size_t members, keys, rows, r;
};
// out[i] += coef[i] * (x[i] @ a[keys[i]]) @ b[keys[i]]^T; x (N, rows, m), a (K, m, r),
// b (K, n, r), out (N, rows, n).
void lowrank_correction(const float* x, const float* a, const float* b, const uint32_t* keys,
                        const float* coef, const LowrankDims& d, std::size_t m, std::size_t n,
                        float* out);
// out[i] += coef[i] * xa[xa_rows[i]] @ b[keys[i]]^T; xa (R, rows, r), out (N, rows, n).
void lowrank_expand(const float* xa, const uint32_t* xa_rows, const float* b,
                    const uint32_t* keys, const float* coef, const LowrankDims& d, std::size_t n,
                    float* out);

// One fused Adam step over n float32 values (outputs separate from inputs); returns the squared
// norm of the step, summed in fixed blocks in block order (the same at every thread count).
double adam_step(const float* theta, const float* g, const float* mu, const float* nu,
                 std::size_t n, const AdamScalars& s, float* theta_out, float* mu_out,
                 float* nu_out);

}  // namespace egg
