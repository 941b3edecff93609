// contract.cpp: packing and threading around the per-ISA tiles of contract_kernels.cpp.
//
// Both operands are packed once per call: the left one (w * a, p = k * r + q) into panels of
// contract_rows rows, the right one (b) into panels of one column tile each. The work items are
// (group of row tiles, column tile) pairs; an item runs every row tile of its group over its
// column tile's panel, kc terms at a time. An output element is produced by exactly one tile,
// which adds its terms in ascending p, resuming from its stored sum at each block, so neither
// the thread split, the groups, the block size nor the tile width changes its bits. A narrow out
// (n below one column tile, m above it) runs transposed, b on the left and w * a on the right:
// each term is the same product (an FMA's two factors commute exactly) added in the same order.
#include "core/contract.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/kernels.h"
#include "core/parallel.h"

namespace egg {

namespace {
// Bytes of b's packed block per column tile: two thirds of a 48 KiB L1 data cache, one half
// of a 32 KiB one (the rest holds a's panel and the tile's sums).
constexpr std::size_t kL1PanelBytes = std::size_t{1} << 15;
// Bytes of the left operand's panels one group of row tiles holds: a quarter of a 2 MiB L2, a
// half of a 1 MiB one (1024 x 512 x 1024 with two threads: 4.56 ms whole, 4.37 ms in groups of
// 512 KiB, 4.32-4.49 ms from 128 KiB to 1 MiB).
constexpr std::size_t kL2PanelBytes = std::size_t{1} << 19;

template <class T>
struct Tiles;
template <>
struct Tiles<float> {
  static std::size_t cols(const KernelTable& k) { return k.contract_cols_f32; }
  static auto fn(const KernelTable& k) { return k.contract_tile_f32; }
};
template <>
struct Tiles<double> {
  static std::size_t cols(const KernelTable& k) { return k.contract_cols_f64; }
  static auto fn(const KernelTable& k) { return k.contract_tile_f64; }
};

// The packed operands, kept by the calling thread from one call to the next: a generation makes
// the same contractions every time, and fresh buffers of a few MiB each came back from the
// kernel page by page in every call (2000 page faults a call for rl's 1024 x 1024 layers). A
// buffer above kKeepBytes is given back after its call.
template <class T>
struct Packed {
  static constexpr std::size_t kKeepBytes = std::size_t{32} << 20;
  std::vector<T> left, right;
  T* take(std::vector<T>& v, std::size_t count) {
    if (v.size() < count) v.resize(count);
    return v.data();
  }
  void trim() {
    for (std::vector<T>* v : {&left, &right}) {
      if (v->capacity() * sizeof(T) > kKeepBytes) std::vector<T>().swap(*v);
    }
  }
};

template <class T>
Packed<T>& packed_buffers() {
  thread_local Packed<T> packed;
  return packed;
}

// One operand: value (k, x, q) = v[(k * extent + x) * r + q] (x < extent), times w[k] when
// w is given (rounded to T once, before it meets the other operand).
template <class T>
struct Side {
  const T* v;
  const T* w;
  std::size_t extent;
  T at(std::size_t k, std::size_t x, std::size_t q, std::size_t r) const {
    const T value = v[(k * extent + x) * r + q];
    return w ? w[k] * value : value;
  }
};

// out[i * row_step + j * col_step] = sum over p = k * r + q in order of left(k, i, q) *
// right(k, j, q), for i < left.extent, j < right.extent.
template <class T>
void run(const Side<T>& left, const Side<T>& right, std::size_t K, std::size_t r, T* out,
         std::size_t row_step, std::size_t col_step) {
  const std::size_t m = left.extent, n = right.extent, np = K * r;
  const KernelTable& k = kernels();
  const auto tile = Tiles<T>::fn(k);
  const std::size_t nr = Tiles<T>::cols(k);
  const std::size_t rows = m == 1 ? 1 : k.contract_rows;  // a row vector (full-rank leaves): 1
  const std::size_t row_tiles = (m + rows - 1) / rows;
  // pa[(t * np + k * r + q) * rows + i] = left(k, t * rows + i, q), zero past row m. Blocks of
  // kPackK keys: the rows they read stay in cache while every row tile takes its part.
  constexpr std::size_t kPackK = 16;
  Packed<T>& packed = packed_buffers<T>();
  T* pa = packed.take(packed.left, row_tiles * np * rows);  // every value is written below
  parallel_for(row_tiles, 16, [&](std::size_t t0, std::size_t t1) {
    for (std::size_t k0 = 0; k0 < K; k0 += kPackK) {
      const std::size_t k1 = std::min(K, k0 + kPackK);
      for (std::size_t t = t0; t < t1; ++t) {
        const std::size_t row0 = t * rows, live = std::min(rows, m - row0);
        T* dst = pa + (t * np + k0 * r) * rows;
        for (std::size_t kk = k0; kk < k1; ++kk) {
          if (r == 1 && live == rows && left.w) {  // the common case, without a test per value
            const T wk = left.w[kk];
            const T* src = left.v + kk * m + row0;
            for (std::size_t i = 0; i < rows; ++i) dst[i] = wk * src[i];
            dst += rows;
            continue;
          }
          for (std::size_t q = 0; q < r; ++q, dst += rows) {
            std::size_t i = 0;
            for (; i < live; ++i) dst[i] = left.at(kk, row0 + i, q, r);
            for (; i < rows; ++i) dst[i] = T(0);
          }
        }
      }
    }
  });
  // Blocks of kc terms (BLIS's kc): a column tile's packed block of the right operand, kc x nr
  // values, stays in L1 while every row tile streams its panel past it. Each block resumes from
  // the sums the previous block stored, so an element still adds its terms in one chain.
  const std::size_t kc = std::max<std::size_t>(16, kL1PanelBytes / (nr * sizeof(T)));
  const std::size_t col_tiles = (n + nr - 1) / nr;
  // Groups of row tiles whose panels (about kL2PanelBytes) stay in L2 while a thread takes one
  // column tile after another: the whole of pa, streamed again for every column tile, came from
  // L3 (1.2x SGEMM's time with two threads). Each group reads the right operand's blocks again,
  // so at most one group per 4 column tiles.
  const std::size_t pa_bytes = row_tiles * rows * np * sizeof(T);
  const std::size_t groups = std::min(
      row_tiles, std::max<std::size_t>(1, std::min((pa_bytes + kL2PanelBytes - 1) / kL2PanelBytes,
                                                   col_tiles / 4)));
  const std::size_t group_tiles = (row_tiles + groups - 1) / groups;
  const std::size_t per_item = np * group_tiles * rows * nr;
  const std::size_t min_items = std::max<std::size_t>(1, (std::size_t{1} << 18) / per_item);
  // pb[(c * np + p) * nr + j] = right(k, c * nr + j, q), zero past column n: every column tile's
  // panel packed once, in one pass that reads the right operand's rows in order (packing block
  // by block for each group read 256-byte pieces of rows 4 KiB apart, once per group). A row
  // vector's contraction (rows == 1) uses each value once and reads whole tiles in place.
  const bool in_place = rows == 1 && r == 1 && !right.w;
  T* pb = nullptr;
  if (!in_place) {
    pb = packed.take(packed.right, col_tiles * np * nr);  // every value is written below
    parallel_for(np, 64, [&](std::size_t p0, std::size_t p1) {
      for (std::size_t p = p0; p < p1; ++p) {
        const std::size_t kk = p / r, qq = p % r;
        for (std::size_t c = 0; c < col_tiles; ++c) {
          const std::size_t j0 = c * nr, width = std::min(nr, n - j0);
          T* dst = pb + (c * np + p) * nr;
          if (r == 1 && !right.w) {
            std::memcpy(dst, right.v + kk * n + j0, width * sizeof(T));
          } else {
            for (std::size_t j = 0; j < width; ++j) dst[j] = right.at(kk, j0 + j, qq, r);
          }
          std::fill(dst + width, dst + nr, T(0));
        }
      }
    });
  }
  // Items group-major: the items a thread takes in turn share their group's panels.
  parallel_for(groups * col_tiles, min_items, [&](std::size_t i0, std::size_t i1) {
    // strip: the item's running sums, rows nr apart, between blocks. The blocks resume from it
    // in L2; out's own rows, n apart (often a multiple of 4 KiB), would come back from memory
    // at each block and collide in the same L1 sets.
    std::vector<T> pq, strip(group_tiles * rows * nr);
    for (std::size_t item = i0; item < i1; ++item) {
      const std::size_t c = item % col_tiles, g = item / col_tiles;
      const std::size_t t_lo = g * group_tiles, t_hi = std::min(row_tiles, t_lo + group_tiles);
      const std::size_t j0 = c * nr, width = std::min(nr, n - j0);
      const bool direct = width == nr && col_step == 1;
      for (std::size_t p0 = 0; p0 < np; p0 += kc) {
        const std::size_t pn = std::min(kc, np - p0);
        const T* q = pb + (c * np + p0) * nr;
        std::size_t ldq = nr;
        if (in_place && width == nr) {
          q = right.v + p0 * n + j0;  // each value is used once: read it in place, no copy
          ldq = n;
        } else if (in_place) {  // the last, partial column tile: whole vectors need a copy
          pq.assign(pn * nr, T(0));
          for (std::size_t p = p0; p < p0 + pn; ++p) {
            std::memcpy(pq.data() + (p - p0) * nr, right.v + p * n + j0, width * sizeof(T));
          }
          q = pq.data();
        }
        // The last block stores whole row tiles of a whole column tile straight into out
        // (stores only: no set of out's rows is read back); the others resume from the strip.
        const bool last = p0 + pn == np;
        for (std::size_t t = t_lo; t < t_hi; ++t) {
          T* sums = strip.data() + (t - t_lo) * rows * nr;
          const T* from = p0 > 0 ? sums : nullptr;
          const T* panel = pa + (t * np + p0) * rows;
          if (last && direct && (t + 1) * rows <= m) {
            tile(panel, rows, q, ldq, pn, from, nr, out + t * rows * row_step + j0, row_step);
          } else {
            tile(panel, rows, q, ldq, pn, from, nr, sums, nr);
          }
        }
      }
      // What the last block left in the strip: a partial column tile's rows, those of a
      // partial last row tile, or (transposed) every value.
      const std::size_t row_end = std::min(m, t_hi * rows);
      for (std::size_t i = direct ? std::max(t_lo * rows, m / rows * rows) : t_lo * rows;
           i < row_end; ++i) {
        const T* src = strip.data() + (i - t_lo * rows) * nr;
        if (col_step == 1) {
          std::memcpy(out + i * row_step + j0, src, width * sizeof(T));
        } else {
          for (std::size_t j = 0; j < width; ++j) out[i * row_step + (j0 + j) * col_step] = src[j];
        }
      }
    }
  });
  packed.trim();
}
}  // namespace

template <class T>
void contract(const T* a, const T* b, const T* w, std::size_t K, std::size_t m, std::size_t n,
              std::size_t r, T* out) {
  if (m == 0 || n == 0) return;
  if (K * r == 0) {
    std::fill(out, out + m * n, T(0));
    return;
  }
  const Side<T> scaled{a, w, m}, plain{b, nullptr, n};
  if (n < Tiles<T>::cols(kernels()) && m > n && m > 1) {
    run(plain, scaled, K, r, out, 1, n);  // out^T: n rows of tiles, m columns
  } else {
    run(scaled, plain, K, r, out, n, 1);
  }
}

template void contract<float>(const float*, const float*, const float*, std::size_t, std::size_t,
                              std::size_t, std::size_t, float*);
template void contract<double>(const double*, const double*, const double*, std::size_t,
                               std::size_t, std::size_t, std::size_t, double*);

}  // namespace egg
