// int8_cases.h: the integer leaves' CUDA cases of the host emulator (included by
// host_emulation.cpp; ops int8_gemm, int8_linear, int8_epilogue, int8_xa, int8_contract). int8.cu
// is compiled unchanged: packing, grid sizes, the grid-stride loops and the fused epilogues run
// as on the GPU, and the tensor-core step mma.m16n8k32 is emulated warp-wide with the PTX
// fragment layout (lanes.h), so a wrong fragment index gives wrong numbers here too. Each case
// reads NAME.<operand>.bin and writes NAME.out.bin, which tests/test_cuda_int8_emulation.py
// compares with the int64 NumPy reference.
#pragma once

#include <sstream>
#include <string>
#include <vector>

namespace int8_cases {

template <class T>
inline void write_vec(const std::string& path, const std::vector<T>& v) {
  write_bin(path, v.data(), v.size() * sizeof(T));
}

// An optional operand: its file's values, or an empty vector (a null pointer) when count is 0.
template <class T>
inline std::vector<T> maybe(const std::string& path, std::size_t count, bool present) {
  return present ? read_bin<T>(path, count) : std::vector<T>();
}

template <class T>
inline T* ptr(std::vector<T>& v) {
  return v.empty() ? nullptr : v.data();
}

// Workspaces exactly as large as int8.cuh documents (AddressSanitizer catches an overrun).
inline std::vector<int8_t> work(std::size_t bytes) { return std::vector<int8_t>(bytes); }

// Runs the case `op` (without its "int8_" prefix) on the inputs at path prefix p; false when op is
// not an int8 case.
inline bool run(const std::string& op, const std::string& p, std::istringstream& in) {
  if (op == "gemm") {
    std::size_t M, K, N;
    in >> M >> K >> N;
    auto x = read_bin<int8_t>(p + ".x.bin", M * K), w = read_bin<int8_t>(p + ".w.bin", K * N);
    std::vector<int32_t> out(M * N, -1);
    auto wa = work(egg_cuda::int8_packed_rows(M, K)), wb = work(egg_cuda::int8_packed_cols(N, K));
    egg_cuda::int8_gemm(x.data(), w.data(), out.data(), M, K, N, ptr(wa), ptr(wb), nullptr);
    write_vec(p + ".out.bin", out);
  } else if (op == "linear") {
    std::size_t N, B, m, n, X, K, r;
    int w_pm, has_keys, has_signs, lr_shift, bias_kind, bias_shift, out_shift, relu;
    in >> N >> B >> m >> n >> X >> w_pm >> K >> r >> has_keys >> has_signs >> lr_shift >>
        bias_kind >> bias_shift >> out_shift >> relu;
    auto x = read_bin<int8_t>(p + ".x.bin", X * B * m);
    auto w = read_bin<int8_t>(p + ".w.bin", (w_pm ? N : 1) * m * n);
    auto a = maybe<int8_t>(p + ".a.bin", K * m * r, r > 0);
    auto b = maybe<int8_t>(p + ".b.bin", K * n * r, r > 0);
    auto keys = maybe<uint32_t>(p + ".keys.bin", N, has_keys);
    auto signs = maybe<int8_t>(p + ".signs.bin", N, has_signs);
    auto bias = maybe<int8_t>(p + ".bias.bin", bias_kind == 2 ? N * n : n, bias_kind > 0);
    auto bias_noise = maybe<int8_t>(p + ".bias_noise.bin", K * n, bias_kind == 3);
    std::vector<int8_t> out(N * B * n, 99);
    auto wa = work(w_pm ? X * egg_cuda::int8_packed_rows(B, m) : egg_cuda::int8_packed_rows(X * B, m));
    auto wb = work((w_pm ? N : 1) * egg_cuda::int8_packed_cols(n, m));
    std::vector<int32_t> wxa(r > 0 ? (X == 1 ? K : N) * B * r : 0);
    const egg_cuda::Int8Terms t{out.data(), N,       B,         n,         X,
                                w_pm != 0,  nullptr, ptr(b),    K,         r,
                                ptr(keys),  ptr(signs), lr_shift, ptr(bias), bias_kind == 2,
                                ptr(bias_noise), bias_shift, out_shift, relu != 0};
    egg_cuda::int8_linear(x.data(), w.data(), ptr(a), m, t, ptr(wa), ptr(wb), ptr(wxa), nullptr);
    write_vec(p + ".out.bin", out);
  } else if (op == "epilogue") {
    // out from acc (N, B, n) and xa (N, B, r) given, xa_rows = identity.
    std::size_t N, B, n, K, r;
    int lr_shift, out_shift, relu;
    in >> N >> B >> n >> K >> r >> lr_shift >> out_shift >> relu;
    auto acc = read_bin<int32_t>(p + ".acc.bin", N * B * n);
    auto xa = read_bin<int32_t>(p + ".xa.bin", N * B * r);
    auto b = read_bin<int8_t>(p + ".b.bin", K * n * r);
    auto keys = read_bin<uint32_t>(p + ".keys.bin", N);
    auto signs = read_bin<int8_t>(p + ".signs.bin", N);
    auto bias = read_bin<int8_t>(p + ".bias.bin", N * n);
    std::vector<int8_t> out(N * B * n, 99);
    const egg_cuda::Int8Terms t{out.data(), N, B, n, 0, false, xa.data(), b.data(), K, r,
                                keys.data(), signs.data(), lr_shift, bias.data(), true, nullptr,
                                0, out_shift, relu != 0};
    egg_cuda::int8_epilogue(acc.data(), true, nullptr, N, t, nullptr);
    write_vec(p + ".out.bin", out);
  } else if (op == "xa") {
    std::size_t N, X, K, B, m, r;
    in >> N >> X >> K >> B >> m >> r;
    auto x = read_bin<int8_t>(p + ".x.bin", X * B * m);
    auto a = read_bin<int8_t>(p + ".a.bin", K * m * r);
    auto keys = read_bin<uint32_t>(p + ".keys.bin", N);
    std::vector<int32_t> out(N * B * r, -1);
    egg_cuda::int8_xa(x.data(), X, a.data(), keys.data(), N, K, B, m, r, out.data(), nullptr);
    write_vec(p + ".out.bin", out);
  } else if (op == "contract") {
    std::size_t K, m, n, r;
    long long tau;
    int update;
    in >> K >> m >> n >> r >> tau >> update;
    auto a = read_bin<int8_t>(p + ".a.bin", K * m * r), b = read_bin<int8_t>(p + ".b.bin", K * n * r);
    auto c = read_bin<int8_t>(p + ".c.bin", K), q = read_bin<int8_t>(p + ".q.bin", m * n);
    auto wa = work(egg_cuda::int8_packed_rows(m, K * r));
    auto wb = work(egg_cuda::int8_packed_cols(n, K * r));
    if (update) {
      std::vector<int8_t> out(m * n, 99);
      egg_cuda::int8_contract(a.data(), b.data(), c.data(), K, m, n, r, nullptr, q.data(), tau,
                              out.data(), ptr(wa), ptr(wb), nullptr);
      write_vec(p + ".out.bin", out);
    } else {
      std::vector<int32_t> out(m * n, -1);
      egg_cuda::int8_contract(a.data(), b.data(), c.data(), K, m, n, r, out.data(), nullptr, 0,
                              nullptr, ptr(wa), ptr(wb), nullptr);
      write_vec(p + ".out.bin", out);
    }
  } else {
    return false;
  }
  return true;
}


}  // namespace int8_cases
