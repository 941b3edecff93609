// drivers.cpp: the core's threaded drivers (see drivers.h): work split over the pool, kernels
// from the dispatched table. Called with the GIL released.
#include "core/drivers.h"

#include <algorithm>
#include <vector>

#include "core/parallel.h"

namespace egg {

void philox_many(const uint32_t* counters, std::size_t n, uint32_t k0, uint32_t k1,
                 uint32_t* out) {
  parallel_for(n, 1 << 16, [&](std::size_t b, std::size_t e) {
    kernels().philox_blocks(counters + 4 * b, e - b, k0, k1, out + 4 * b);
  });
}

namespace {

// Boundaries of `parts` contiguous ranges of items with about equal numbers of values, given
// each item's cumulative value count (value_end[i] = values up to and including item i).
std::vector<std::size_t> balanced_bounds(const std::vector<std::size_t>& value_end,
                                         std::size_t parts) {
  const std::size_t items = value_end.size();
  const std::size_t total = items ? value_end.back() : 0;
  std::vector<std::size_t> bound(parts + 1, items);
  bound[0] = 0;
  for (std::size_t t = 1; t < parts; ++t) {
    bound[t] = static_cast<std::size_t>(
        std::lower_bound(value_end.begin(), value_end.end(), total * t / parts) -
        value_end.begin());
  }
  return bound;
}

}  // namespace

void fill_normals_many(uint64_t seed, const uint32_t* keys, std::size_t rows, uint32_t epoch,
                       const std::vector<NormalsJob>& jobs) {
  // Work items are (job, row, chunk) triples so that a few long rows still use every thread.
  constexpr std::size_t kChunk = 1 << 14;
  std::vector<std::size_t> first_item{0};
  for (const NormalsJob& job : jobs) {
    first_item.push_back(first_item.back() + rows * ((job.count + kChunk - 1) / kChunk));
  }
  const std::size_t n_items = first_item.back();
  std::vector<std::size_t> item_end(n_items);
  {
    std::size_t acc = 0, j = 0;
    for (std::size_t item = 0; item < n_items; ++item) {
      while (item >= first_item[j + 1]) ++j;
      const std::size_t chunks = (jobs[j].count + kChunk - 1) / kChunk;
      const std::size_t start = ((item - first_item[j]) % chunks) * kChunk;
      acc += std::min(kChunk, jobs[j].count - start);
      item_end[item] = acc;
    }
  }
  const std::size_t total = n_items ? item_end.back() : 0;
  const std::vector<std::size_t> bound = balanced_bounds(item_end, work_parts(total, 1 << 15));
  parallel_for(bound.size() - 1, 1, [&](std::size_t p0, std::size_t p1) {
    const auto& k = kernels();
    for (std::size_t part = p0; part < p1; ++part) {
      std::size_t j = 0;
      for (std::size_t item = bound[part]; item < bound[part + 1]; ++item) {
        while (item >= first_item[j + 1]) ++j;
        const NormalsJob& job = jobs[j];
        const std::size_t chunks = (job.count + kChunk - 1) / kChunk;
        const std::size_t local = item - first_item[j];
        const std::size_t row = local / chunks, start = (local % chunks) * kChunk;
        const std::size_t len = std::min(kChunk, job.count - start);
        k.fill_normals(seed, job.leaf, keys[row], epoch, job.offset + start, len,
                       job.dst + row * job.count + start);
      }
    }
  });
}

void copy_rows(const std::vector<RowCopy>& rows) {
  std::vector<std::size_t> value_end(rows.size());
  std::size_t total = 0;
  for (std::size_t i = 0; i < rows.size(); ++i) value_end[i] = total += rows[i].len;
  const std::vector<std::size_t> bound = balanced_bounds(value_end, work_parts(total, 1 << 16));
  // A memory-bound copy: the table is larger than the caches.
  parallel_for(bound.size() - 1, 1, [&](std::size_t b, std::size_t e) {
    for (std::size_t r = bound[b]; r < bound[e]; ++r) {
      std::copy_n(rows[r].src, rows[r].len, rows[r].dst);
    }
  });
}

namespace {

// Members per parallel chunk: about 64 Ki multiply-adds each.
std::size_t members_per_chunk(std::size_t per_member) {
  return std::max<std::size_t>(1, (1 << 16) / std::max<std::size_t>(1, per_member));
}

}  // namespace

void lowrank_correction(const float* x, const float* a, const float* b, const uint32_t* keys,
                        const float* coef, const LowrankDims& d, std::size_t m, std::size_t n,
                        float* out) {
  parallel_for(d.members, members_per_chunk(d.rows * (m + n) * d.r),
               [&](std::size_t lo, std::size_t hi) {
                 const auto& k = kernels();
                 std::vector<float> xa(d.rows * d.r);
                 for (std::size_t i = lo; i < hi; ++i) {
                   const std::size_t key = keys[i];
                   k.lowrank_project(x + i * d.rows * m, d.rows, m, a + key * m * d.r, d.r,
                                     xa.data());
                   k.lowrank_expand(xa.data(), d.rows, d.r, b + key * n * d.r, n, coef[i],
                                    out + i * d.rows * n);
                 }
               });
}

void lowrank_expand(const float* xa, const uint32_t* xa_rows, const float* b,
                    const uint32_t* keys, const float* coef, const LowrankDims& d, std::size_t n,
                    float* out) {
  parallel_for(d.members, members_per_chunk(d.rows * n * d.r),
               [&](std::size_t lo, std::size_t hi) {
                 const auto& k = kernels();
                 for (std::size_t i = lo; i < hi; ++i) {
                   k.lowrank_expand(xa + xa_rows[i] * d.rows * d.r, d.rows, d.r,
                                    b + keys[i] * n * d.r, n, coef[i], out + i * d.rows * n);
                 }
               });
}

double adam_step(const float* theta, const float* g, const float* mu, const float* nu,
                 std::size_t n, const AdamScalars& s, float* theta_out, float* mu_out,
                 float* nu_out) {
  // Fixed blocks, partial sums added in block order: the norm does not depend on the threads.
  constexpr std::size_t kBlock = 1 << 16;
  const std::size_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> partial(blocks, 0.0);
  parallel_for(blocks, 2, [&](std::size_t lo, std::size_t hi) {
    for (std::size_t blk = lo; blk < hi; ++blk) {
      const std::size_t b = blk * kBlock, e = std::min(n, b + kBlock);
      partial[blk] = kernels().adam_step(theta + b, g + b, mu + b, nu + b, e - b, s,
                                         theta_out + b, mu_out + b, nu_out + b);
    }
  });
  double sq = 0.0;
  for (double p : partial) sq += p;
  return sq;
}

}  // namespace egg
