// contract.cpp: packing and threading around the per-ISA tiles of contract_kernels.cpp.
//
// The left operand (w * a, p = k * r + q) is packed once into panels of contract_rows rows; each
// thread takes whole column tiles, packs its slice of b block by block (kc terms at a time) and
// runs every row tile over each block. An output element is produced by exactly one tile, which
// adds its terms in ascending p, resuming from its stored sum at each block, so neither the
// thread split, the block size nor the tile width changes its bits.
#include "core/contract.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "core/kernels.h"
#include "core/parallel.h"

namespace egg {

namespace {
// Bytes of b's packed block per column tile: two thirds of a 48 KiB L1 data cache, one half
// of a 32 KiB one (the rest holds a's panel and the tile's sums).
constexpr std::size_t kL1PanelBytes = std::size_t{1} << 15;

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
}  // namespace

template <class T>
void contract(const T* a, const T* b, const T* w, std::size_t K, std::size_t m, std::size_t n,
              std::size_t r, T* out) {
  if (m == 0 || n == 0) return;
  const std::size_t np = K * r;
  if (np == 0) {
    std::fill(out, out + m * n, T(0));
    return;
  }
  const KernelTable& k = kernels();
  const auto tile = Tiles<T>::fn(k);
  const std::size_t nr = Tiles<T>::cols(k);
  const std::size_t rows = m == 1 ? 1 : k.contract_rows;  // a row vector (full-rank leaves): 1
  const std::size_t row_tiles = (m + rows - 1) / rows;
  // pa[(t * np + k * r + q) * rows + i] = w[k] * a[k][t * rows + i][q], zero past row m.
  // Blocks of kPackK keys: the rows of a they read stay in cache while every row tile takes its
  // part. (Each value is one product, as before: packing does not touch the bits.)
  constexpr std::size_t kPackK = 16;
  std::unique_ptr<T[]> pa(new T[row_tiles * np * rows]);  // every value is written below
  parallel_for(row_tiles, 16, [&](std::size_t t0, std::size_t t1) {
    for (std::size_t k0 = 0; k0 < K; k0 += kPackK) {
      const std::size_t k1 = std::min(K, k0 + kPackK);
      for (std::size_t t = t0; t < t1; ++t) {
        const std::size_t row0 = t * rows, live = std::min(rows, m - row0);
        T* dst = pa.get() + (t * np + k0 * r) * rows;
        for (std::size_t kk = k0; kk < k1; ++kk) {
          const T wk = w[kk];
          const T* src = a + (kk * m + row0) * r;  // a[kk][row0 + i][q] = src[i * r + q]
          if (r == 1 && live == rows) {
            for (std::size_t i = 0; i < rows; ++i) dst[i] = wk * src[i];
            dst += rows;
            continue;
          }
          for (std::size_t q = 0; q < r; ++q, dst += rows) {
            std::size_t i = 0;
            for (; i < live; ++i) dst[i] = wk * src[i * r + q];
            for (; i < rows; ++i) dst[i] = T(0);
          }
        }
      }
    }
  });
  // Blocks of kc terms (BLIS's kc): a column tile's packed block of b, kc x nr values, stays in
  // L1 while every row tile streams its panel of a past it. Each block resumes from the sums
  // the previous block stored, so an element still adds its terms in one ascending chain.
  const std::size_t kc = std::max<std::size_t>(16, kL1PanelBytes / (nr * sizeof(T)));
  const std::size_t col_tiles = (n + nr - 1) / nr;
  const std::size_t per_tile = np * row_tiles * rows * nr;
  const std::size_t min_tiles = std::max<std::size_t>(1, (std::size_t{1} << 18) / per_tile);
  parallel_for(col_tiles, min_tiles, [&](std::size_t c0, std::size_t c1) {
    // strip: the column tile's running sums, rows nr apart, between blocks. The blocks resume
    // from it in L2; out's own rows, n apart (often a multiple of 4 KiB), would come back from
    // memory at each block and collide in the same L1 sets.
    std::vector<T> pq, strip(row_tiles * rows * nr);
    for (std::size_t c = c0; c < c1; ++c) {
      const std::size_t j0 = c * nr, width = std::min(nr, n - j0);
      const bool direct = width == nr;
      for (std::size_t p0 = 0; p0 < np; p0 += kc) {
        const std::size_t pn = std::min(kc, np - p0);
        const T* q;
        std::size_t ldq;
        if (rows == 1 && r == 1 && width == nr) {
          q = b + p0 * n + j0;  // each value is used once: read it in place rather than copy it
          ldq = n;
        } else {
          pq.assign(pn * nr, T(0));
          for (std::size_t p = p0; p < p0 + pn; ++p) {
            const std::size_t kk = p / r, qq = p % r;
            T* dst = pq.data() + (p - p0) * nr;
            if (r == 1) {
              std::memcpy(dst, b + kk * n + j0, width * sizeof(T));
            } else {
              for (std::size_t j = 0; j < width; ++j) dst[j] = b[(kk * n + j0 + j) * r + qq];
            }
          }
          q = pq.data();
          ldq = nr;
        }
        // The last block stores whole row tiles of a whole column tile straight into out
        // (stores only: no set of out's rows is read back); the others resume from the strip.
        const bool last = p0 + pn == np;
        for (std::size_t t = 0; t < row_tiles; ++t) {
          const T* from = p0 > 0 ? strip.data() + t * rows * nr : nullptr;
          if (last && direct && (t + 1) * rows <= m) {
            tile(pa.get() + (t * np + p0) * rows, rows, q, ldq, pn, from, nr,
                 out + t * rows * n + j0, n);
          } else {
            tile(pa.get() + (t * np + p0) * rows, rows, q, ldq, pn, from, nr,
                 strip.data() + t * rows * nr, nr);
          }
        }
      }
      // Rows the last block left in the strip: a partial column tile's, or the rows of a
      // partial last row tile.
      for (std::size_t i = direct ? m / rows * rows : 0; i < m; ++i) {
        std::memcpy(out + i * n + j0, strip.data() + i * nr, width * sizeof(T));
      }
    }
  });
}

template void contract<float>(const float*, const float*, const float*, std::size_t, std::size_t,
                              std::size_t, std::size_t, float*);
template void contract<double>(const double*, const double*, const double*, std::size_t,
                               std::size_t, std::size_t, std::size_t, double*);

}  // namespace egg
