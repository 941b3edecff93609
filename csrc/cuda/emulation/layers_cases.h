// layers_cases.h: the population layers' epilogue cases of the host emulator (included by
// host_emulation.cpp, op `layers`). Each case runs egg_cuda::linear_epilogue / conv_epilogue --
// layers.cu's launch code and kernels, unchanged -- on random inputs and compares every output
// with a double-precision loop of the documented formula (layers.cuh), including NaN poisoning of
// out-of-range keys and strided sources. "tiny" cases cap the grid at one block so that the
// grid-stride loops take many turns.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

namespace layer_cases {

using namespace egg_cuda;

// Caps the emulated grids (launch.cuh's grid_cap) for one launch, so that grid-stride loops
// take several turns; the default comes back however the block is left.
struct GridCap {
  explicit GridCap(unsigned blocks) { egg_emu::g_max_blocks = blocks; }
  ~GridCap() { egg_emu::g_max_blocks = egg_emu::kDefaultMaxBlocks; }
  GridCap(const GridCap&) = delete;
  GridCap& operator=(const GridCap&) = delete;
};

inline double act_ref(double h, int act) {
  switch (act) {
    case 1: return h < 0 ? 0 : h;
    case 2: return std::tanh(h);
    case 3: return 1 / (1 + std::exp(-h));
    case 4: return 0.5 * h * (1 + std::tanh(std::sqrt(2 / M_PI) * (h + 0.044715 * h * h * h)));
    default: return h;
  }
}

inline void report(bool ok, const char* what, double err) {
  if (!ok) ++failures;
  std::printf("%s %s err=%.2e\n", ok ? "ok  " : "FAIL", what, err);
}

inline void linear_case(std::size_t n, std::size_t r, bool use_base, bool use_rows, bool scaled,
                 bool use_bias, int act, bool bad_key, bool tiny) {
  const std::size_t N = 5, rows = 3, K = 3, R = use_rows ? 4 : N;
  std::mt19937 g(static_cast<unsigned>(n * 31 + r * 7 + act));
  std::normal_distribution<float> d;
  auto fill = [&](std::size_t c) { std::vector<float> v(c); for (auto& x : v) x = d(g); return v; };
  std::vector<float> out = fill(N * rows * n), base = fill(rows * n), xa = fill(R * rows * r);
  std::vector<float> right = fill(K * n * r), coef = fill(N), bias = fill(n), bn = fill(K * n);
  std::vector<float> bc = fill(N);
  std::vector<uint32_t> keys = {0, 0, 2, 1, 2}, xr = {3, 1, 0, 2, 3};
  if (bad_key) keys[3] = 7;
  const std::vector<float> start = out;
  const MemberTerms terms{keys.data(), coef.data(), use_bias ? bias.data() : nullptr,
                          use_bias ? bn.data() : nullptr, bc.data(), act, K};
  LinearEpilogue a{out.data(), use_base ? base.data() : nullptr, xa.data(),
                   use_rows ? xr.data() : nullptr, scaled, r ? right.data() : nullptr,
                   terms, N, rows, n, r, R};
  {
    const GridCap cap(tiny ? 1 : 6);
    egg_cuda::linear_epilogue(a, nullptr);
  }
  double worst = 0;
  bool ok = true;
  for (std::size_t i = 0; i < N; ++i)
    for (std::size_t j = 0; j < rows; ++j)
      for (std::size_t c = 0; c < n; ++c) {
        const float got = out[(i * rows + j) * n + c];
        if (keys[i] >= K && (r || use_bias)) {
          ok &= std::isnan(got);
          continue;
        }
        double h = use_base ? base[j * n + c] : start[(i * rows + j) * n + c];
        if (r) {
          const std::size_t x = use_rows ? xr[i] : i;
          double s = 0;
          for (std::size_t q = 0; q < r; ++q)
            s += double(xa[(x * rows + j) * r + q]) * right[(keys[i] * n + c) * r + q];
          h += scaled ? s : coef[i] * s;
        }
        if (use_bias) h += bias[c] + double(bc[i]) * bn[keys[i] * n + c];
        const double want = act_ref(h, act);
        worst = std::max(worst, std::abs(want - got) / (1 + std::abs(want)));
      }
  char what[160];
  std::snprintf(what, sizeof what, "linear n=%zu r=%zu base=%d rows=%d scaled=%d bias=%d act=%d "
                "bad_key=%d tiny=%d", n, r, use_base, use_rows, scaled, use_bias, act, bad_key, tiny);
  report(ok && worst < 1e-5, what, worst);
}

inline void conv_case(std::size_t O, std::size_t P, std::size_t r, bool shared, bool channels_last,
               bool use_bias, int act, bool bad_key, bool tiny) {
  const std::size_t N = 4, Bt = 2, K = 3, X = 5;
  std::mt19937 g(static_cast<unsigned>(O * 13 + P * 5 + r + act));
  std::normal_distribution<float> d;
  auto fill = [&](std::size_t c) { std::vector<float> v(c); for (auto& x : v) x = d(g); return v; };
  const std::size_t S = shared ? 1 : N;
  std::vector<float> out(N * Bt * O * P), src = fill(S * Bt * O * P), A = fill(K * O * r);
  std::vector<float> v = fill(X * Bt * P * r), coef = fill(N), bias = fill(O), bn = fill(K * O);
  std::vector<float> bc = fill(N);
  std::vector<uint32_t> keys = {1, 1, 0, 2}, vi = {4, 0, 2, 3};
  if (bad_key) keys[2] = 9;
  ConvEpilogue e{};
  e.out = out.data();
  e.src = src.data();
  // src (S, Bt, O, P): C order, or stored channels-last (S, Bt, P, O) and read transposed.
  const long long so[4] = {(long long)(Bt * O * P), (long long)(O * P),
                           channels_last ? 1 : (long long)P, channels_last ? (long long)O : 1};
  // v (X, Bt, r, P) stored as (X, Bt, P, r): the per-member projection layout.
  const long long vs[4] = {(long long)(Bt * P * r), (long long)(P * r), 1, (long long)r};
  for (int k = 0; k < 4; ++k) e.src_stride[k] = so[k], e.v_stride[k] = vs[k];
  e.src_shared = shared;
  e.a = r ? A.data() : nullptr;
  e.v = v.data();
  e.v_index = vi.data();
  e.m = MemberTerms{keys.data(), coef.data(), use_bias ? bias.data() : nullptr,
                    use_bias ? bn.data() : nullptr, bc.data(), act, K};
  e.members = N, e.batch = Bt, e.channels = O, e.positions = P, e.rank = r;
  e.v_count = X;
  {
    const GridCap cap(tiny ? 1 : 6);
    egg_cuda::conv_epilogue(e, nullptr);
  }
  double worst = 0;
  bool ok = true;
  for (std::size_t i = 0; i < N; ++i)
    for (std::size_t b = 0; b < Bt; ++b)
      for (std::size_t o = 0; o < O; ++o)
        for (std::size_t p = 0; p < P; ++p) {
          const float got = out[((i * Bt + b) * O + o) * P + p];
          if (keys[i] >= K && (r || use_bias)) {
            ok &= std::isnan(got);
            continue;
          }
          const std::size_t s = shared ? 0 : i;
          double h = src[s * so[0] + b * so[1] + o * so[2] + p * so[3]];
          if (r) {
            double acc = 0;
            for (std::size_t q = 0; q < r; ++q)
              acc += double(A[(keys[i] * O + o) * r + q]) * v[vi[i] * vs[0] + b * vs[1] + q * vs[2] + p * vs[3]];
            h += coef[i] * acc;
          }
          if (use_bias) h += bias[o] + double(bc[i]) * bn[keys[i] * O + o];
          const double want = act_ref(h, act);
          worst = std::max(worst, std::abs(want - got) / (1 + std::abs(want)));
        }
  char what[160];
  std::snprintf(what, sizeof what, "conv O=%zu P=%zu r=%zu shared=%d channels_last=%d bias=%d "
                "act=%d bad_key=%d tiny=%d", O, P, r, shared, channels_last, use_bias, act,
                bad_key, tiny);
  report(ok && worst < 1e-5, what, worst);
}


// Every case; returns after printing one "ok  "/"FAIL" line per case (failures counted by report).
inline void run_all() {

  for (int act = 0; act <= 4; ++act)
    for (std::size_t r : {0, 1, 3})
      for (bool base : {false, true}) {
        linear_case(13, r, base, true, false, true, act, false, false);
        linear_case(70, r, base, false, r == 1, act % 2 == 0, act, false, act == 2);
      }
  linear_case(9, 2, true, true, false, true, 1, true, false);
  linear_case(9, 0, false, false, false, true, 0, true, true);
  for (int act = 0; act <= 4; ++act)
    for (std::size_t r : {0, 1, 2})
      for (bool shared : {false, true}) {
        conv_case(3, 10, r, shared, !shared, true, act, false, false);
        conv_case(5, 7, r, shared, false, act % 2 == 1, act, false, true);
      }
  conv_case(2, 9, 1, false, true, true, 4, true, false);
}

}  // namespace layer_cases
