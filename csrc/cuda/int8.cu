// int8.cu: launches of the integer leaves' kernels (int8_kernels.cuh): packing into the
// caller's workspace, the low-rank projections, then one tensor-core GEMM whose epilogue writes
// the final values.
#include "cuda/cuda_check.h"
#include "cuda/int8.cuh"
#include "cuda/int8_kernels.cuh"
#include "cuda/launch.cuh"

namespace egg_cuda {

namespace {

using namespace int8_detail;

void run_gemm(const Int8Gemm& g, cudaStream_t stream) {
  if (g.rows == 0 || g.n == 0 || g.groups == 0) return;
  const std::size_t row_tiles = (g.rows + kTileRows - 1) / kTileRows;
  const std::size_t col_tiles = (g.n + kTileCols - 1) / kTileCols;
  const std::size_t cap = static_cast<std::size_t>(sm_count()) * kBlocksPerSM;
  const dim3 grid(static_cast<unsigned>(std::min(col_tiles, cap)),
                  static_cast<unsigned>(std::min<std::size_t>(row_tiles, kMaxGridY)),
                  static_cast<unsigned>(std::min<std::size_t>(g.groups, kMaxGridZ)));
  launch("int8 tensor-core gemm", gemm_kernel, grid, dim3(32, 1, 1), stream, g);
}

unsigned blocks_for(std::size_t total) { return grid_1d(total, kBlockThreads); }

// `blocks` blocks of `rows` x k read by src into packed a (int8_packed_rows each).
template <class Src>
void pack_a(int8_t* dst, Src src, std::size_t blocks, std::size_t rows, std::size_t k,
            cudaStream_t stream) {
  const std::size_t kp = int8_depth(k), total = blocks * int8_packed_rows(rows, kp);
  if (total == 0) return;
  launch("int8 pack a", pack_a_kernel<Src>, dim3(blocks_for(total)), dim3(kBlockThreads), stream,
         dst, src, blocks, rows, k, kp);
}

// `blocks` blocks of `cols` x k (b^T) read by src into packed b (int8_packed_cols each).
template <class Src>
void pack_b(int8_t* dst, Src src, std::size_t blocks, std::size_t cols, std::size_t k,
            cudaStream_t stream) {
  const std::size_t kp = int8_depth(k), total = blocks * int8_packed_cols(cols, kp);
  if (total == 0) return;
  launch("int8 pack b", pack_b_kernel<Src>, dim3(blocks_for(total)), dim3(kBlockThreads), stream,
         dst, src, blocks, cols, k, kp);
}

}  // namespace

void int8_gemm(const int8_t* x, const int8_t* w, int32_t* out, std::size_t M, std::size_t K,
               std::size_t N, int8_t* work_a, int8_t* work_b, cudaStream_t stream) {
  const std::size_t kp = int8_depth(K);
  pack_a(work_a, RowMajor{x, K, 0}, 1, M, K, stream);
  pack_b(work_b, Transposed{w, K, N}, 1, N, K, stream);
  Int8Gemm g{};
  g.a = work_a, g.a_groups = 1, g.bt = work_b;
  g.rows = M, g.n = N, g.kp = kp, g.groups = 1;
  g.mode = kInt8Raw, g.c = out;
  run_gemm(g, stream);
}

void int8_xa(const int8_t* x, std::size_t X, const int8_t* a, const uint32_t* keys,
             std::size_t N, std::size_t K, std::size_t B, std::size_t m, std::size_t r,
             int32_t* xa, cudaStream_t stream) {
  const std::size_t total = N * B * r;
  if (total == 0) return;
  launch("int8 xa", xa_kernel, dim3(blocks_for(total)), dim3(kBlockThreads), stream, xa, x, X,
         a, keys, false, N, K, B, m, r);
}

void int8_linear(const int8_t* x, const int8_t* w, const int8_t* a, std::size_t m,
                 const Int8Terms& t, int8_t* work_a, int8_t* work_b, int32_t* work_xa,
                 cudaStream_t stream) {
  if (t.N == 0 || t.B == 0 || t.n == 0) return;
  Int8Terms terms = t;
  if (t.right != nullptr) {
    // x @ a_k once per key for a shared x, once per member otherwise.
    const bool by_key = t.X == 1;
    const std::size_t sets = by_key ? t.K : t.N, total = sets * t.B * t.r;
    if (total > 0) {
      launch("int8 xa", xa_kernel, dim3(blocks_for(total)), dim3(kBlockThreads), stream,
             work_xa, x, t.X, a, t.keys, by_key, sets, t.K, t.B, m, t.r);
    }
    terms.xa = work_xa;
  }
  const std::size_t groups = t.w_per_member ? t.N : 1;
  Int8Gemm g{};
  g.bt = work_b, g.kp = int8_depth(m), g.n = t.n, g.groups = groups;
  // A shared w: one GEMM over all X * B rows; per-member w: N GEMMs of B rows (x block i or 0).
  g.rows = t.w_per_member ? t.B : t.X * t.B;
  g.a_groups = t.w_per_member ? t.X : 1;
  pack_a(work_a, RowMajor{x, m, t.B * m}, g.a_groups, g.rows, m, stream);
  pack_b(work_b, Transposed{w, m, t.n}, groups, t.n, m, stream);
  g.a = work_a;
  g.mode = kInt8Linear, g.terms = terms;
  run_gemm(g, stream);
}

void int8_epilogue(const int32_t* acc, bool acc_per_member, const uint32_t* xa_rows,
                   std::size_t xa_count, const Int8Terms& t, cudaStream_t stream) {
  const std::size_t total = t.N * t.B * t.n;
  if (total == 0) return;
  launch("int8 epilogue", epilogue_kernel, dim3(blocks_for(total)), dim3(kBlockThreads), stream,
         t, acc, acc_per_member, xa_rows, xa_count);
}

void int8_contract(const int8_t* a, const int8_t* b, const int8_t* c, std::size_t K,
                   std::size_t m, std::size_t n, std::size_t r, int32_t* z, const int8_t* q,
                   long long tau, int8_t* q_out, int8_t* work_a, int8_t* work_b,
                   cudaStream_t stream) {
  if (m == 0 || n == 0) return;
  const std::size_t kp = int8_depth(K * r);
  // Pairs with c = 0 are packed as zeros rather than compacted: no host round trip for c.
  pack_a(work_a, Factor{a, c, m, r}, 1, m, K * r, stream);
  pack_b(work_b, Factor{b, nullptr, n, r}, 1, n, K * r, stream);
  Int8Gemm g{};
  g.a = work_a, g.a_groups = 1, g.bt = work_b;
  g.rows = m, g.n = n, g.kp = kp, g.groups = 1;
  g.mode = q != nullptr ? kInt8Update : kInt8Raw;
  g.c = z, g.q = q, g.q_out = q_out, g.tau = tau;
  run_gemm(g, stream);
}

}  // namespace egg_cuda
