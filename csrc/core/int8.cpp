// int8.cpp: the integer leaves' drivers: packing, threading and the fused passes around the
// per-ISA micro-kernels of int8_kernels.cpp.
//
// Both operands are packed once (a in tiles of mr rows, b in panels of nr columns); the work
// items are (panel, tile) pairs, and each item finishes its output tile at once: the int32 tile
// stays in L1 while the epilogue (low-rank term, shifts, bias, clip, relu, or the update's
// threshold) turns it into int8. All arithmetic is exact integer arithmetic, so neither the
// thread split nor the tile shape (which differs per ISA) changes a bit.
#include "core/int8.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "core/kernels.h"
#include "core/parallel.h"

namespace egg {

namespace {

constexpr std::size_t kAlign = 64;

std::size_t round_up(std::size_t v, std::size_t to) { return (v + to - 1) / to * to; }

// Packed tiles or panels of one ISA's layout, `bytes` apart.
struct Packed {
  std::unique_ptr<unsigned char[]> buf;
  std::size_t count = 0, bytes = 0;
  const unsigned char* at(std::size_t i) const { return buf.get() + i * bytes; }
  unsigned char* at(std::size_t i) { return buf.get() + i * bytes; }
};

Packed alloc(std::size_t count, std::size_t bytes) {
  Packed p;
  p.count = count;
  p.bytes = round_up(std::max<std::size_t>(bytes, 1), kAlign);
  p.buf.reset(new unsigned char[p.count * p.bytes]);
  return p;
}

// `blocks` blocks of `rows` rows of a, block b starting at a + b * block_stride: tiles of mr rows
// that never straddle two blocks (block b's tiles are [b * per, (b + 1) * per)).
Packed pack_rows(const Int8Kernels& ik, const int8_t* a, std::size_t lda, std::size_t blocks,
                 std::size_t block_stride, std::size_t rows, std::size_t k) {
  const std::size_t per = (rows + ik.mr - 1) / ik.mr;
  Packed p = alloc(blocks * per, ik.a_tile_bytes(k));
  parallel_for(p.count, std::max<std::size_t>(1, (1 << 16) / (ik.mr * k + 1)),
               [&](std::size_t lo, std::size_t hi) {
    for (std::size_t t = lo; t < hi; ++t) {
      const std::size_t blk = t / per, r0 = (t % per) * ik.mr;
      ik.pack_a(a + blk * block_stride + r0 * lda, lda, std::min(ik.mr, rows - r0), k, p.at(t));
    }
  });
  return p;
}

// `blocks` matrices (k, n), block b at b + blk * block_stride, as panels of nr columns.
Packed pack_cols(const Int8Kernels& ik, const int8_t* b, std::size_t ldb, std::size_t blocks,
                 std::size_t block_stride, std::size_t k, std::size_t n) {
  const std::size_t per = (n + ik.nr - 1) / ik.nr;
  Packed p = alloc(blocks * per, ik.b_panel_bytes(k));
  parallel_for(p.count, std::max<std::size_t>(1, (1 << 16) / (ik.nr * k + 1)),
               [&](std::size_t lo, std::size_t hi) {
    for (std::size_t t = lo; t < hi; ++t) {
      const std::size_t blk = t / per, c0 = (t % per) * ik.nr;
      ik.pack_b(b + blk * block_stride + c0, ldb, k, std::min(ik.nr, n - c0), p.at(t));
    }
  });
  return p;
}

// Runs fn(g, panel, tile, c) for every (g, panel, tile) of `groups` GEMMs of `panels` x `tiles`
// items, c the tile's mr x nr int32 result; a_of(g, tile) / b_of(g, panel) give the operands.
template <class AOf, class BOf, class Fn>
void gemm_items(const Int8Kernels& ik, std::size_t groups, std::size_t panels, std::size_t tiles,
                std::size_t k, std::size_t epilogue_work, AOf a_of, BOf b_of, Fn fn) {
  const std::size_t items = groups * panels * tiles;
  const std::size_t work = ik.mr * ik.nr * (k + 1) + epilogue_work;
  parallel_for(items, std::max<std::size_t>(1, (1 << 18) / work), [&](std::size_t lo, std::size_t hi) {
    std::unique_ptr<int32_t[]> c(new int32_t[ik.mr * ik.nr]);
    for (std::size_t item = lo; item < hi; ++item) {
      const std::size_t g = item / (panels * tiles), rest = item % (panels * tiles);
      const std::size_t p = rest / tiles, t = rest % tiles;
      ik.tile(a_of(g, t), b_of(g, p), k, c.get());
      fn(g, p, t, c.get());
    }
  });
}

// f (K, d, r) -> (K, r, d): each rank's column as one contiguous row (r == 1: f as it is).
struct Transposed {
  std::vector<int8_t> buf;
  const int8_t* p = nullptr;
};

Transposed transpose_factors(const int8_t* f, std::size_t K, std::size_t d, std::size_t r) {
  Transposed out;
  if (r == 1) {
    out.p = f;
    return out;
  }
  out.buf.resize(K * r * d);
  int8_t* t = out.buf.data();
  parallel_for(K, std::max<std::size_t>(1, (1 << 15) / (d * r + 1)), [&](std::size_t lo, std::size_t hi) {
    for (std::size_t k = lo; k < hi; ++k)
      for (std::size_t p = 0; p < d; ++p)
        for (std::size_t q = 0; q < r; ++q) t[(k * r + q) * d + p] = f[(k * d + p) * r + q];
  });
  out.p = t;
  return out;
}

// xa[(s * B + row) * r + q] = x[xi, row] . at[key, q] for s < sets: with keys null, set s is
// key s of a shared x (xi = 0); else set s is member s with x row block xi = (X == 1 ? 0 : s)
// and key keys[s].
void project(const Int8Kernels& ik, const int8_t* x, std::size_t X, std::size_t B, std::size_t m,
             const int8_t* at, std::size_t r, std::size_t sets, const uint32_t* keys,
             int32_t* xa) {
  parallel_for(sets * B, std::max<std::size_t>(1, (1 << 15) / (m * r + 1)),
               [&](std::size_t lo, std::size_t hi) {
    for (std::size_t item = lo; item < hi; ++item) {
      const std::size_t set = item / B, row = item % B;
      const std::size_t key = keys == nullptr ? set : keys[set];
      const std::size_t xi = keys == nullptr || X == 1 ? 0 : set;
      const int8_t* xr = x + (xi * B + row) * m;
      for (std::size_t q = 0; q < r; ++q) xa[item * r + q] = ik.dot(xr, at + (key * r + q) * m, m);
    }
  });
}

}  // namespace

void int8_xa(const int8_t* x, std::size_t X, const int8_t* a, const uint32_t* keys,
             std::size_t N, std::size_t K, std::size_t B, std::size_t m, std::size_t r,
             int32_t* xa) {
  if (N == 0 || B == 0 || r == 0) return;
  const Int8Kernels& ik = *kernels().int8;
  const Transposed at = transpose_factors(a, K, m, r);
  project(ik, x, X, B, m, at.p, r, N, keys, xa);
}

void int8_epilogue(const Int8Epilogue& E) {
  const std::size_t N = E.N, B = E.B, n = E.n, r = E.right != nullptr ? E.r : 0;
  if (N == 0 || B == 0 || n == 0) return;
  const Int8Kernels& ik = *kernels().int8;
  Transposed bt;
  if (r > 0) bt = transpose_factors(E.right, E.K, n, r);
  parallel_for(N * B, std::max<std::size_t>(1, (1 << 15) / (n * (r + 2) + 1)),
               [&](std::size_t lo, std::size_t hi) {
    for (std::size_t item = lo; item < hi; ++item) {
      const std::size_t i = item / B, row = item % B;
      const std::size_t key = E.keys != nullptr ? E.keys[i] : 0;
      Int8Row e{};
      e.gemm = E.acc + ((E.acc_per_member ? i * B : 0) + row) * n;
      e.width = n;
      e.r = r;
      if (r > 0) {
        const std::size_t set = E.xa_rows != nullptr ? E.xa_rows[i] : i;
        e.t = E.xa + (set * B + row) * r;
        e.bt = bt.p + key * r * n;
        e.ldbt = n;
      }
      e.sign = E.signs != nullptr ? E.signs[i] : 1;
      e.lr_shift = E.shift_lr;
      e.bias = E.bias != nullptr ? E.bias + (E.bias_per_member ? i * n : 0) : nullptr;
      e.out_shift = E.shift_out;
      e.relu = E.relu;
      e.out = E.out + item * n;
      ik.linear_row(e);
    }
  });
}

void gemm_s8s8s32(const int8_t* a, std::size_t lda, const int8_t* b, std::size_t ldb,
                  std::size_t M, std::size_t K, std::size_t N, int32_t* c, std::size_t ldc) {
  if (M == 0 || N == 0) return;
  const Int8Kernels& ik = *kernels().int8;
  const Packed pa = pack_rows(ik, a, lda, 1, 0, M, K);
  const Packed pb = pack_cols(ik, b, ldb, 1, 0, K, N);
  gemm_items(ik, 1, pb.count, pa.count, K, 0, [&](std::size_t, std::size_t t) { return pa.at(t); },
             [&](std::size_t, std::size_t p) { return pb.at(p); },
             [&](std::size_t, std::size_t p, std::size_t t, const int32_t* tile) {
               const std::size_t i0 = t * ik.mr, j0 = p * ik.nr;
               const std::size_t rows = std::min(ik.mr, M - i0), cols = std::min(ik.nr, N - j0);
               for (std::size_t i = 0; i < rows; ++i) {
                 std::memcpy(c + (i0 + i) * ldc + j0, tile + i * ik.nr, cols * sizeof(int32_t));
               }
             });
}

void int8_linear(const Int8Linear& L) {
  const std::size_t N = L.N, B = L.B, m = L.m, n = L.n, K = L.K;
  if (N == 0 || B == 0 || n == 0) return;
  const Int8Kernels& ik = *kernels().int8;
  const std::size_t r = L.a != nullptr ? L.r : 0;
  auto key_of = [&](std::size_t i) -> std::size_t { return L.keys != nullptr ? L.keys[i] : 0; };
  // The factors transposed, at (key, q): a row of m (for x . a_q) and a row of n (the epilogue
  // streams b's rank-q column contiguously); then t = x @ a_k per batch row, once per key when
  // x is shared, once per member otherwise.
  Transposed bt;
  std::vector<int32_t> xa;
  if (r > 0) {
    bt = transpose_factors(L.b, K, n, r);
    const Transposed at = transpose_factors(L.a, K, m, r);
    xa.resize((L.X == 1 ? K : N) * B * r);
    project(ik, L.x, L.X, B, m, at.p, r, L.X == 1 ? K : N, L.X == 1 ? nullptr : L.keys,
            xa.data());
  }
  // A shared w is one GEMM over all X * B rows of x; per-member weights are N GEMMs of B rows.
  const bool shared = !L.w_per_member;
  const std::size_t a_blocks = shared ? 1 : L.X, a_rows = shared ? L.X * B : B;
  const Packed pa = pack_rows(ik, L.x, m, a_blocks, B * m, a_rows, m);
  const Packed pb = pack_cols(ik, L.w, n, shared ? 1 : N, m * n, m, n);
  const std::size_t tiles = pa.count / a_blocks, panels = pb.count / (shared ? 1 : N);
  const std::size_t groups = shared ? 1 : N;
  // Members one GEMM row feeds: all N when x and w are shared, else one.
  const std::size_t fan = shared && L.X == 1 ? N : 1;
  auto finish = [&](std::size_t i, std::size_t row, std::size_t j0, std::size_t width,
                    const int32_t* g) {
    const std::size_t key = key_of(i);
    Int8Row e{};
    e.gemm = g;
    e.width = width;
    e.r = r;
    if (r > 0) {
      e.t = xa.data() + ((L.X == 1 ? key : i) * B + row) * r;
      e.bt = bt.p + key * r * n + j0;
      e.ldbt = n;
    }
    e.sign = L.signs != nullptr ? L.signs[i] : 1;
    e.lr_shift = L.lr_shift;
    e.bias = L.bias != nullptr ? L.bias + (L.bias_per_member ? i * n : 0) + j0 : nullptr;
    e.bias_noise = L.bias_noise != nullptr ? L.bias_noise + key * n + j0 : nullptr;
    e.bias_shift = L.bias_shift;
    e.out_shift = L.out_shift;
    e.relu = L.relu;
    e.out = L.out + (i * B + row) * n + j0;
    ik.linear_row(e);
  };
  gemm_items(
      ik, groups, panels, tiles, m, fan * ik.mr * ik.nr * (r + 2),
      [&](std::size_t g, std::size_t t) { return pa.at((shared || L.X == 1 ? 0 : g) * tiles + t); },
      [&](std::size_t g, std::size_t p) { return pb.at(g * panels + p); },
      [&](std::size_t g, std::size_t p, std::size_t t, const int32_t* tile) {
        const std::size_t j0 = p * ik.nr, width = std::min(ik.nr, n - j0);
        const std::size_t rho0 = t * ik.mr, rows = std::min(ik.mr, a_rows - rho0);
        for (std::size_t ii = 0; ii < rows; ++ii) {
          const std::size_t rho = rho0 + ii;
          const int32_t* src = tile + ii * ik.nr;
          if (!shared) {
            finish(g, rho, j0, width, src);
          } else if (L.X != 1) {
            finish(rho / B, rho % B, j0, width, src);
          } else {
            for (std::size_t i = 0; i < N; ++i) finish(i, rho, j0, width, src);
          }
        }
      });
}

void int8_contract(const int8_t* a, const int8_t* b, const int8_t* c, std::size_t K,
                   std::size_t m, std::size_t n, std::size_t r, int32_t* z, const int8_t* q,
                   int64_t tau, int8_t* q_out) {
  if (m == 0 || n == 0) return;
  const Int8Kernels& ik = *kernels().int8;
  // Only the pairs with c != 0 contribute: a' (m, P) = c_k * a_k and b' (P, n) = b_k^T over
  // them, P = (pairs kept) * r; then z = a' @ b', one exact GEMM (never K dense products).
  std::vector<std::size_t> kept;
  for (std::size_t k = 0; k < K; ++k) {
    if (c[k] != 0) kept.push_back(k);
  }
  const std::size_t P = kept.size() * r;
  std::vector<int8_t> ap(m * P), bp(P * n);
  parallel_for(m, std::max<std::size_t>(1, (1 << 15) / (P + 1)), [&](std::size_t lo, std::size_t hi) {
    for (std::size_t i = lo; i < hi; ++i)
      for (std::size_t j = 0; j < kept.size(); ++j) {
        const std::size_t k = kept[j];
        for (std::size_t qq = 0; qq < r; ++qq)
          ap[i * P + j * r + qq] = static_cast<int8_t>(c[k] * a[(k * m + i) * r + qq]);
      }
  });
  parallel_for(P, std::max<std::size_t>(1, (1 << 15) / (n + 1)), [&](std::size_t lo, std::size_t hi) {
    for (std::size_t p = lo; p < hi; ++p) {
      const std::size_t k = kept[p / r], qq = p % r;
      for (std::size_t j = 0; j < n; ++j) bp[p * n + j] = b[(k * n + j) * r + qq];
    }
  });
  const Packed pa = pack_rows(ik, ap.data(), P, 1, 0, m, P);
  const Packed pb = pack_cols(ik, bp.data(), n, 1, 0, P, n);
  gemm_items(ik, 1, pb.count, pa.count, P, 0, [&](std::size_t, std::size_t t) { return pa.at(t); },
             [&](std::size_t, std::size_t p) { return pb.at(p); },
             [&](std::size_t, std::size_t p, std::size_t t, const int32_t* tile) {
               const std::size_t i0 = t * ik.mr, j0 = p * ik.nr;
               const std::size_t rows = std::min(ik.mr, m - i0), cols = std::min(ik.nr, n - j0);
               for (std::size_t i = 0; i < rows; ++i) {
                 const int32_t* zt = tile + i * ik.nr;
                 if (q == nullptr) {
                   std::memcpy(z + (i0 + i) * n + j0, zt, cols * sizeof(int32_t));
                   continue;
                 }
                 const int8_t* qr = q + (i0 + i) * n + j0;
                 int8_t* qo = q_out + (i0 + i) * n + j0;
                 for (std::size_t j = 0; j < cols; ++j) {
                   const int64_t v = zt[j];
                   const int step = (v >= tau || -v >= tau) ? (v > 0) - (v < 0) : 0;
                   qo[j] = static_cast<int8_t>(std::min(127, std::max(-127, qr[j] + step)));
                 }
               }
             });
}

}  // namespace egg
