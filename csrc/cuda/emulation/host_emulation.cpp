// host_emulation.cpp: runs the CUDA kernels AND their launch code on the CPU, for machines
// without a GPU.
//
// noise.cu, lowrank.cu, contract.cu, optim.cu, layers.cu, fused.cu and int8.cu are compiled
// unchanged with EGG_HOST_EMULATION defined: their launch
// decisions (aligned or scalar paths, float4 or scalar stores, the rank chunk, the fast divisor,
// the batched noise job table, grid sizes) run as on the GPU, and `egg_cuda::launch` hands each
// kernel to run_grid (lanes.h) instead of the driver. run_grid executes every CUDA thread of the
// grid: one host thread per thread of a block, blocks one after another; the lanes of a warp meet
// at a barrier in __shfl_xor_sync, the block in __syncthreads. The emulated device has 2 SMs, so
// grids are capped at 64 blocks and the kernels' grid-stride loops take many turns.
//
// It checks indexing, grid-stride loops, alignment handling, the float4 and scalar paths, NaN
// poisoning of bad keys and float16 input; op `layers` runs the population layers' epilogue
// cases (layers_cases.h), which check themselves against double-precision loops; op `fused` the
// fused linear layer (fused_cases.h): generated == held factors == the plain epilogue, bit for
// bit. It cannot check timing, memory ordering, occupancy or
// what nvcc's code generation does to float rounding (the PTX check in
// tests/test_cuda_plumbing.py covers contraction): only a GPU run can.
//
// tests/test_cuda_emulation.py builds it with the system C++ compiler and the CUDA headers (and
// with -fsanitize=address,undefined where available, so out-of-bounds kernel accesses stop it):
//   c++ -std=c++20 -O1 -ffp-contract=off -Wno-attributes -Wno-unknown-pragmas -Icsrc
//     -I/usr/local/cuda/include csrc/cuda/emulation/host_emulation.cpp -o host_emulation -lpthread
// and runs `host_emulation selftest` (the fast divisor) and `host_emulation DIR`, where DIR holds
// cases.txt (one case per line, see main) and each case's inputs as raw binary files; outputs are
// written beside them and compared with NumPy by the test.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/emulation/lanes.h"

#include "cuda/contract.cu"
#include "cuda/fused.cu"
#include "cuda/int8.cu"
#include "cuda/layers.cu"
#include "cuda/lowrank.cu"
#include "cuda/noise.cu"
#include "cuda/optim.cu"

namespace {

template <class T>
std::vector<T> read_bin(const std::string& path, std::size_t count) {
  std::vector<T> v(count);
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(count * sizeof(T)));
  if (static_cast<std::size_t>(f.gcount()) != count * sizeof(T)) {
    throw std::runtime_error(path + ": too short");
  }
  return v;
}

void write_bin(const std::string& path, const void* data, std::size_t bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  if (!f) throw std::runtime_error("cannot write " + path);
}

// A buffer whose data() starts `shift` elements past a 64-byte boundary (shift = 1: a view at a
// 4-byte offset, as a CuPy slice can be), with a guard value after the end.
template <class T>
struct Shifted {
  std::vector<T> raw;
  std::size_t shift, count;
  Shifted(std::size_t n, std::size_t s, T fill)
      : raw(n + s + 64 / sizeof(T) + 1, fill), shift(s), count(n) {}
  T* data() {
    auto p = reinterpret_cast<std::uintptr_t>(raw.data());
    const std::size_t pad = ((64 - p % 64) % 64) / sizeof(T);
    return raw.data() + pad + shift;
  }
  bool guard_intact(T fill) { return std::memcmp(&data()[count], &fill, sizeof(T)) == 0; }
};

int failures = 0;

void fail(const std::string& what) {
  ++failures;
  std::printf("FAIL %s\n", what.c_str());
}

}  // namespace

#include "cuda/emulation/int8_cases.h"
#include "cuda/emulation/layers_cases.h"
#include "cuda/emulation/fused_cases.h"

namespace {

int selftest() {
  std::mt19937_64 g(1);
  std::vector<std::size_t> divisors = {1, 2, 3, 5, 7, 10, 31, 32, 33, 127, 128, 129, 1000, 4096,
                                       65535, 65536, 65537, 1u << 20, 1000003, 0x7FFFFFFFu,
                                       0x80000000u, 0x80000001u, 0xFFFFFFFEu, 0xFFFFFFFFu,
                                       (std::size_t{1} << 32) + 5};
  for (int i = 0; i < 200; ++i) divisors.push_back(1 + g() % 0xFFFFFFFFull);
  for (std::size_t d : divisors) {
    const egg_cuda::FastDivmod f(d);
    std::vector<std::size_t> ns = {0, 1, d - 1, d, d + 1, 2 * d - 1, 0xFFFFFFFFull, 0xFFFFFFFEull,
                                   (std::size_t{1} << 32), (std::size_t{1} << 40) + 12345};
    for (int i = 0; i < 2000; ++i) ns.push_back(g() % (std::size_t{1} << 32));
    for (int i = 0; i < 50; ++i) ns.push_back(g() >> 20);
    for (std::size_t n : ns) {
      std::size_t q, r;
      f.divmod(n, q, r);
      if (q != n / d || r != n % d) {
        fail("divmod " + std::to_string(n) + " / " + std::to_string(d));
        return 1;
      }
    }
  }
  std::printf("ok   selftest: fast divmod on %zu divisors\n", divisors.size());
  return failures != 0;
}

void run_case(const std::string& dir, std::istringstream& in) {
  std::string op, name;
  in >> op >> name;
  const std::string p = dir + "/" + name;
  if (op == "philox") {
    std::size_t n, shift;
    uint32_t k0, k1;
    in >> n >> k0 >> k1 >> shift;
    const auto counters = read_bin<uint32_t>(p + ".counters.bin", 4 * n);
    Shifted<uint32_t> c(4 * n, shift, 0), out(4 * n, shift, 0xDEADBEEFu);
    std::memcpy(c.data(), counters.data(), 4 * n * sizeof(uint32_t));
    egg_cuda::philox_blocks(c.data(), n, k0, k1, out.data(), nullptr);
    if (!out.guard_intact(0xDEADBEEFu)) fail(name + ": wrote past the end");
    write_bin(p + ".out.bin", out.data(), 4 * n * sizeof(uint32_t));
  } else if (op == "normals") {
    uint64_t seed, offset;
    uint32_t leaf, epoch;
    std::size_t count, rows, shift;
    in >> seed >> leaf >> epoch >> offset >> count >> rows >> shift;
    const auto keys = read_bin<uint32_t>(p + ".keys.bin", rows);
    Shifted<float> out(rows * count, shift, -99.0f);
    egg_cuda::fill_normals_many(seed, epoch, keys.data(), rows, {leaf}, {offset},
                                {static_cast<uint64_t>(count)}, {out.data()}, nullptr);
    if (!out.guard_intact(-99.0f)) fail(name + ": wrote past the end");
    write_bin(p + ".out.bin", out.data(), rows * count * sizeof(float));
  } else if (op == "many") {
    uint64_t seed;
    uint32_t epoch;
    std::size_t rows, jobs;
    in >> seed >> epoch >> rows >> jobs;
    std::vector<uint32_t> leaves(jobs);
    std::vector<uint64_t> offsets(jobs), counts(jobs);
    for (std::size_t j = 0; j < jobs; ++j) in >> leaves[j] >> offsets[j] >> counts[j];
    const auto keys = read_bin<uint32_t>(p + ".keys.bin", rows);
    std::vector<std::unique_ptr<Shifted<float>>> bufs;
    std::vector<float*> outs;
    for (std::size_t j = 0; j < jobs; ++j) {
      bufs.push_back(std::make_unique<Shifted<float>>(rows * counts[j], j % 3, -99.0f));
      outs.push_back(bufs.back()->data());
    }
    egg_cuda::fill_normals_many(seed, epoch, keys.data(), rows, leaves, offsets, counts, outs,
                                nullptr);
    std::vector<float> all;
    for (std::size_t j = 0; j < jobs; ++j) {
      if (!bufs[j]->guard_intact(-99.0f)) fail(name + ": job wrote past the end");
      all.insert(all.end(), outs[j], outs[j] + rows * counts[j]);
    }
    write_bin(p + ".out.bin", all.data(), all.size() * sizeof(float));
  } else if (op == "lowrank") {
    std::string xtype;
    int per_member, use_base;
    std::size_t members, batch, m, n, rank, keys_n, shift;
    in >> xtype >> per_member >> members >> batch >> m >> n >> rank >> keys_n >> use_base >> shift;
    const bool half = xtype == "f16";
    const std::size_t xs = (per_member ? members : 1) * batch * m;
    const auto xraw = read_bin<uint16_t>(p + ".x.bin", half ? xs : 2 * xs);
    const auto left = read_bin<float>(p + ".left.bin", keys_n * rank * m);
    const auto right = read_bin<float>(p + ".right.bin", keys_n * rank * n);
    const auto keys = read_bin<uint32_t>(p + ".keys.bin", members);
    const auto coef = read_bin<float>(p + ".coef.bin", members);
    const auto base = read_bin<float>(p + ".base.bin", batch * n);
    const auto start = read_bin<float>(p + ".out.bin", members * batch * n);
    Shifted<float> out(members * batch * n, shift, -99.0f), bs(batch * n, shift, 0.0f);
    std::memcpy(out.data(), start.data(), start.size() * sizeof(float));
    std::memcpy(bs.data(), base.data(), base.size() * sizeof(float));
    std::vector<float> xa(members * batch * rank);
    const egg_cuda::LowrankShape shape{members, batch, m, n, rank, keys_n};
    const auto xtype_id = half ? egg_cuda::XType::kFloat16 : egg_cuda::XType::kFloat32;
    egg_cuda::lowrank_correction(xraw.data(), xtype_id,
                                 per_member != 0, left.data(), right.data(), keys.data(),
                                 coef.data(), shape, xa.data(), use_base ? bs.data() : nullptr,
                                 out.data(), nullptr);
    if (!out.guard_intact(-99.0f)) fail(name + ": wrote past the end");
    write_bin(p + ".result.bin", out.data(), members * batch * n * sizeof(float));
  } else if (op == "contract") {
    std::size_t keys_n, rank, m, n, shift;
    int tile;
    in >> keys_n >> rank >> m >> n >> tile >> shift;
    Shifted<float> left(keys_n * rank * m, shift, 0.0f), right(keys_n * rank * n, shift, 0.0f);
    const auto l = read_bin<float>(p + ".left.bin", keys_n * rank * m);
    const auto r = read_bin<float>(p + ".right.bin", keys_n * rank * n);
    const auto w = read_bin<float>(p + ".w.bin", keys_n);
    std::copy(l.begin(), l.end(), left.data());  // (std::copy: the no-key case is empty)
    std::copy(r.begin(), r.end(), right.data());
    Shifted<float> out(m * n, shift, -99.0f);
    const int ran = egg_cuda::contract(left.data(), right.data(), w.data(),
                                       {keys_n, rank, m, n}, out.data(), tile, nullptr);
    if (!out.guard_intact(-99.0f)) fail(name + ": wrote past the end");
    write_bin(p + ".result.bin", out.data(), m * n * sizeof(float));
    std::printf("tile %s %d\n", name.c_str(), ran);
  } else if (op == "adam") {
    std::size_t n;
    double lr, b1, b2, eps, wd;
    int64_t count;
    in >> n >> lr >> b1 >> b2 >> eps >> wd >> count;
    const auto theta = read_bin<float>(p + ".theta.bin", n), g = read_bin<float>(p + ".g.bin", n);
    const auto mu = read_bin<float>(p + ".mu.bin", n), nu = read_bin<float>(p + ".nu.bin", n);
    std::vector<float> out(3 * n + 1, -99.0f);  // theta, mu, nu, then a guard
    std::vector<double> partials(egg_cuda::adam_partials(n) + 1, -99.0);
    egg_cuda::adam_step(theta.data(), g.data(), mu.data(), nu.data(), n,
                        egg::adam_scalars(lr, b1, b2, eps, wd, count), out.data(),
                        out.data() + n, out.data() + 2 * n, partials.data(), nullptr);
    if (out[3 * n] != -99.0f || partials.back() != -99.0) fail(name + ": wrote past the end");
    out.pop_back();
    out.resize(3 * n);
    write_bin(p + ".result.bin", out.data(), out.size() * sizeof(float));
    write_bin(p + ".norm.bin", &partials[partials.size() - 2], sizeof(double));
  } else if (op.rfind("int8_", 0) == 0) {
    if (!int8_cases::run(op.substr(5), p, in)) {
      throw std::runtime_error("unknown case kind '" + op + "'");
    }
  } else if (op == "fused") {
    fused_cases::run(name, p, in);  // self-checking against the separate pass, writes outputs
  } else if (op == "layers") {
    layer_cases::run_all();  // self-checking: prints a line per case, counts failures
  } else {
    throw std::runtime_error("unknown case kind '" + op + "'");
  }
  if (const long bad = egg_emu::g_misaligned.exchange(0)) {
    fail(name + ": " + std::to_string(bad) + " misaligned 16-byte accesses (a fault on a GPU)");
  }
  std::printf("ran  %s %s\n", op.c_str(), name.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: host_emulation selftest | host_emulation DIR\n");
    return 2;
  }
  const std::string arg = argv[1];
  if (arg == "selftest") return selftest();
  std::ifstream cases(arg + "/cases.txt");
  if (!cases) {
    std::fprintf(stderr, "cannot read %s/cases.txt\n", arg.c_str());
    return 2;
  }
  try {
    for (std::string line; std::getline(cases, line);) {
      if (line.empty()) continue;
      std::istringstream in(line);
      run_case(arg, in);
    }
  } catch (const std::exception& e) {
    std::printf("FAIL %s\n", e.what());
    return 1;
  }
  std::printf("%d failure(s)\n", failures);
  return failures != 0;
}
