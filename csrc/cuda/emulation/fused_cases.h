// fused_cases.h: the fused linear layer's cases of the host emulator (included by
// host_emulation.cpp, op `fused`). One case runs, on the same inputs:
//   held      fused.cu's kernels reading A, B and the bias noise that noise.cu's normals kernel
//             wrote to memory (the separate pass the fused path replaces);
//   generated fused.cu's kernels making those values from Philox inside the kernels;
//   plain     layers.cu's epilogue (the existing kernel) on the held run's projections.
// The three outputs must be the same bits (checked here); the generated run's output and
// projections are written for tests/test_cuda_fused.py, which compares them bit for bit with a
// NumPy statement of the contract and of the kernels' summation order.
#pragma once

#include <cstring>
#include <numeric>
#include <string>
#include <vector>

namespace fused_cases {

using namespace egg_cuda;

inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

inline void run(const std::string& name, const std::string& p, std::istringstream& in) {
  uint64_t seed, lo, ro;
  uint32_t epoch, leaf_w, leaf_b;
  int per_member, use_bias, noisy, act, tiny;
  std::size_t N, rows, m, n, r, K;
  in >> seed >> epoch >> leaf_w >> leaf_b >> per_member >> use_bias >> noisy >> act >> N >> rows >>
      m >> n >> r >> K >> lo >> ro >> tiny;
  const auto x = read_bin<float>(p + ".x.bin", (per_member ? N : 1) * rows * m);
  const auto src = read_bin<float>(p + ".src.bin", (per_member ? N : 1) * rows * n);
  const auto ukeys = read_bin<uint32_t>(p + ".ukeys.bin", K);
  const auto local = read_bin<uint32_t>(p + ".local.bin", N);
  const auto coef = read_bin<float>(p + ".coef.bin", N);
  const auto bias = read_bin<float>(p + ".bias.bin", n);
  const auto bcoef = read_bin<float>(p + ".bcoef.bin", N);
  // The separate pass: the contract's values in memory, (K, m, r), (K, n, r), (K, n).
  std::vector<float> left(K * m * r), right(K * n * r), bnoise(K * n);
  fill_normals_many(seed, epoch, ukeys.data(), K, {leaf_w, leaf_w, leaf_b}, {lo, ro, 0},
                    {m * r, n * r, n}, {left.data(), right.data(), bnoise.data()}, nullptr);
  std::vector<uint32_t> stream_keys(N), slots(K);
  for (std::size_t i = 0; i < N; ++i) stream_keys[i] = ukeys[local[i]];
  std::iota(slots.begin(), slots.end(), 0u);
  const std::size_t S = per_member ? N : K;
  const long long lr = static_cast<long long>(r);
  auto run_fused = [&](bool generate, std::vector<float>& out, std::vector<float>& xa) {
    out.assign(per_member ? src.begin() : src.end(), src.end());
    out.resize(N * rows * n, -7.0f);
    xa.assign(S * rows * r, -9.0f);
    FusedLinear a{};
    a.out = out.data();
    a.base = per_member ? nullptr : src.data();
    a.x = x.data();
    a.xa = xa.data();
    a.slot_keys = per_member ? nullptr : (generate ? ukeys.data() : slots.data());
    a.xa_rows = per_member ? nullptr : local.data();
    a.keys = generate ? stream_keys.data() : local.data();
    a.coef = coef.data();
    a.bias = use_bias ? bias.data() : nullptr;
    a.bias_coef = bcoef.data();
    a.left = {generate ? nullptr : left.data(), {static_cast<long long>(m) * lr, lr, 1}, leaf_w, lo};
    a.right = {generate ? nullptr : right.data(), {static_cast<long long>(n) * lr, lr, 1}, leaf_w,
               ro};
    a.bias_noise = {generate ? nullptr : bnoise.data(), {static_cast<long long>(n), 1, 0}, leaf_b, 0};
    a.generate = generate;
    a.bias_noisy = use_bias && noisy;
    a.seed = seed, a.epoch = epoch, a.act = act;
    a.members = N, a.rows = rows, a.m = m, a.n = n, a.rank = r, a.slots = S, a.keys_bound = K;
    const layer_cases::GridCap cap(tiny ? 1 : 6);
    linear_fused(a, nullptr);
  };
  std::vector<float> held, held_xa, gen, gen_xa;
  run_fused(false, held, held_xa);
  run_fused(true, gen, gen_xa);
  // The existing epilogue kernel on the held run's projections and the separate pass's factors.
  std::vector<float> plain(per_member ? src : std::vector<float>(N * rows * n, -7.0f));
  const bool nb = use_bias && noisy;
  const MemberTerms terms{local.data(), coef.data(), use_bias ? bias.data() : nullptr,
                          nb ? bnoise.data() : nullptr, bcoef.data(), act, K};
  const LinearEpilogue e{plain.data(), per_member ? nullptr : src.data(), held_xa.data(),
                         per_member ? nullptr : local.data(), false, right.data(), terms,
                         N, rows, n, r, S};
  linear_epilogue(e, nullptr);
  const bool ok = same_bits(held, gen) && same_bits(held_xa, gen_xa) && same_bits(plain, gen);
  layer_cases::report(ok, ("fused " + name + ": generated == held == plain epilogue").c_str(), 0);
  write_bin(p + ".out.bin", gen.data(), gen.size() * sizeof(float));
  write_bin(p + ".xa.bin", gen_xa.data(), gen_xa.size() * sizeof(float));
  // Held factors with a key past them: that member's rows are NaN, nothing is read out of bounds.
  std::vector<uint32_t> bad = local;
  bad[N - 1] = static_cast<uint32_t>(K + 3);
  std::vector<float> out(per_member ? src : std::vector<float>(N * rows * n)), xa(S * rows * r);
  FusedLinear a{};
  a.out = out.data(), a.base = per_member ? nullptr : src.data(), a.x = x.data(), a.xa = xa.data();
  a.slot_keys = per_member ? nullptr : slots.data();
  a.xa_rows = per_member ? nullptr : local.data();
  a.keys = bad.data(), a.coef = coef.data(), a.bias_coef = bcoef.data();
  a.left = {left.data(), {static_cast<long long>(m) * lr, lr, 1}, leaf_w, lo};
  a.right = {right.data(), {static_cast<long long>(n) * lr, lr, 1}, leaf_w, ro};
  a.bias_noise = {bnoise.data(), {static_cast<long long>(n), 1, 0}, leaf_b, 0};
  a.bias_noisy = nb, a.act = act, a.members = N, a.rows = rows, a.m = m, a.n = n, a.rank = r;
  a.slots = S, a.keys_bound = K;
  linear_fused(a, nullptr);
  bool poisoned = true;
  for (std::size_t c = 0; c < rows * n; ++c) poisoned &= std::isnan(out[(N - 1) * rows * n + c]);
  layer_cases::report(poisoned, ("fused " + name + ": a held key out of range is NaN").c_str(), 0);
}

}  // namespace fused_cases
