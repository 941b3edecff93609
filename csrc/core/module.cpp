// module.cpp: pybind11 bindings of eggroll_np._core. Python validates arguments; this layer checks
// buffers (dtype, shape, contiguity), releases the GIL and calls the dispatched kernels.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>
#include <algorithm>
#include <cmath>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "core/contract.h"
#include "core/gil.h"
#include "core/kernels.h"
#include "core/parallel.h"

namespace py = pybind11;

namespace egg {
void register_layer_bindings(py::module_& m);  // layer_bindings.cpp
void register_int8_bindings(py::module_& m);   // int8_bindings.cpp
}  // namespace egg

namespace {

using U32Array = py::array_t<uint32_t, py::array::c_style>;
using F32Array = py::array_t<float, py::array::c_style>;

py::array_t<uint32_t> philox(const U32Array& counters, const U32Array& key) {
  if (counters.ndim() != 2 || counters.shape(1) != 4) {
    throw py::value_error("counters must have shape (n, 4)");
  }
  if (key.ndim() != 1 || key.shape(0) != 2) throw py::value_error("key must have shape (2,)");
  const std::size_t n = static_cast<std::size_t>(counters.shape(0));
  py::array_t<uint32_t> out({static_cast<py::ssize_t>(n), py::ssize_t{4}});
  const uint32_t* in = counters.data();
  uint32_t* dst = out.mutable_data();
  const uint32_t k0 = key.at(0), k1 = key.at(1);
  {
    egg::ReleaseGil release;
    egg::parallel_for(n, 1 << 16, [&](std::size_t b, std::size_t e) {
      egg::kernels().philox_blocks(in + 4 * b, e - b, k0, k1, dst + 4 * b);
    });
  }
  return out;
}

// out[i, :] = normals [offset, offset + count) of stream (leaf, member_keys[i], epoch).
F32Array writable_out(py::array out_obj);  // below, with the other buffer checks

void fill_normals(uint64_t seed, uint32_t leaf, const U32Array& member_keys, uint32_t epoch,
                  uint64_t offset, py::array out_obj) {
  F32Array out = writable_out(out_obj);
  if (member_keys.ndim() != 1) throw py::value_error("member_keys must be 1-D");
  if (out.ndim() != 2 || out.shape(0) != member_keys.shape(0)) {
    throw py::value_error("out must have shape (len(member_keys), count)");
  }
  const std::size_t rows = static_cast<std::size_t>(out.shape(0));
  const std::size_t count = static_cast<std::size_t>(out.shape(1));
  if (offset + count > (uint64_t{1} << 34)) {
    throw py::value_error("offset + count exceeds the 2^34 values of one Philox stream");
  }
  const uint32_t* keys = member_keys.data();
  float* dst = out.mutable_data();
  // Work items are (row, chunk) pairs so that a few large rows still use every thread.
  constexpr std::size_t kChunk = 1 << 14;
  const std::size_t chunks = count == 0 ? 0 : (count + kChunk - 1) / kChunk;
  egg::ReleaseGil release;
  egg::parallel_for(rows * chunks, 8, [&](std::size_t b, std::size_t e) {
    const auto& k = egg::kernels();
    for (std::size_t item = b; item < e; ++item) {
      const std::size_t row = item / chunks, chunk = item % chunks;
      const std::size_t start = chunk * kChunk;
      const std::size_t len = std::min(kChunk, count - start);
      k.fill_normals(seed, leaf, keys[row], epoch, offset + start, len, dst + row * count + start);
    }
  });
}

// Several fills in one parallel pass: outs[j][i, :] = values [offsets[j], ...) of stream
// (leaves[j], member_keys[i], epoch). One call per generation keeps both threads busy on one
// large job instead of waking them for many small ones.
void fill_normals_many(uint64_t seed, const std::vector<uint32_t>& leaves,
                       const U32Array& member_keys, uint32_t epoch,
                       const std::vector<uint64_t>& offsets, const py::list& outs) {
  const std::size_t jobs = leaves.size();
  if (offsets.size() != jobs || static_cast<std::size_t>(py::len(outs)) != jobs) {
    throw py::value_error("leaves, offsets and outs must have the same length");
  }
  if (member_keys.ndim() != 1) throw py::value_error("member_keys must be 1-D");
  const std::size_t rows = static_cast<std::size_t>(member_keys.shape(0));
  struct Job {
    uint32_t leaf;
    uint64_t offset;
    std::size_t count;
    float* dst;
  };
  std::vector<Job> spec;
  std::vector<F32Array> keep;  // hold references while the GIL is released
  constexpr std::size_t kChunk = 1 << 14;
  std::vector<std::size_t> first_item{0};
  for (std::size_t j = 0; j < jobs; ++j) {
    F32Array out = writable_out(outs[j]);
    if (out.ndim() != 2 || static_cast<std::size_t>(out.shape(0)) != rows) {
      throw py::value_error("each out must have shape (len(member_keys), count)");
    }
    const std::size_t count = static_cast<std::size_t>(out.shape(1));
    if (offsets[j] + count > (uint64_t{1} << 34)) {
      throw py::value_error("offset + count exceeds the 2^34 values of one Philox stream");
    }
    spec.push_back({leaves[j], offsets[j], count, out.mutable_data()});
    keep.push_back(out);
    const std::size_t chunks = (count + kChunk - 1) / kChunk;
    first_item.push_back(first_item.back() + rows * chunks);
  }
  const uint32_t* keys = member_keys.data();
  // Split the items into contiguous parts with about equal numbers of VALUES
  // (jobs differ widely in row length: a 1024-wide factor next to a 16-wide bias).
  const std::size_t n_items = first_item.back();
  std::vector<std::size_t> item_end(n_items);  // values up to and including each item
  {
    std::size_t acc = 0, j = 0;
    for (std::size_t item = 0; item < n_items; ++item) {
      while (item >= first_item[j + 1]) ++j;
      const std::size_t chunks = (spec[j].count + kChunk - 1) / kChunk;
      const std::size_t start = ((item - first_item[j]) % chunks) * kChunk;
      acc += std::min(kChunk, spec[j].count - start);
      item_end[item] = acc;
    }
  }
  const std::size_t total = n_items ? item_end.back() : 0;
  const std::size_t parts = egg::work_parts(total, 1 << 15);
  std::vector<std::size_t> bound(parts + 1, n_items);
  bound[0] = 0;
  for (std::size_t t = 1; t < parts; ++t) {
    const std::size_t target = total * t / parts;
    bound[t] = static_cast<std::size_t>(
        std::lower_bound(item_end.begin(), item_end.end(), target) - item_end.begin());
  }
  egg::ReleaseGil release;
  egg::parallel_for(parts, 1, [&](std::size_t p0, std::size_t p1) {
    const auto& k = egg::kernels();
    for (std::size_t part = p0; part < p1; ++part) {
      std::size_t j = 0;
      for (std::size_t item = bound[part]; item < bound[part + 1]; ++item) {
        while (item >= first_item[j + 1]) ++j;
        const Job& job = spec[j];
        const std::size_t chunks = (job.count + kChunk - 1) / kChunk;
        const std::size_t local = item - first_item[j];
        const std::size_t row = local / chunks, chunk = local % chunks;
        const std::size_t start = chunk * kChunk;
        const std::size_t len = std::min(kChunk, job.count - start);
        k.fill_normals(seed, job.leaf, keys[row], epoch, job.offset + start, len,
                       job.dst + row * job.count + start);
      }
    }
  });
}

// Checks shared by the low-rank entry points; returns (N, K, rows, r).
struct LowrankDims {
  std::size_t members, keys, rows, r;
};

LowrankDims check_lowrank(const F32Array& fac, const F32Array& other_fac, const U32Array& keys,
                          const F32Array& coef, const F32Array& out, std::size_t out_width) {
  if (fac.ndim() != 3 || other_fac.ndim() != 3) throw py::value_error("factors must be 3-D (K, dim, r)");
  if (fac.shape(0) != other_fac.shape(0) || fac.shape(2) != other_fac.shape(2)) {
    throw py::value_error("A and B must agree on K and r");
  }
  if (keys.ndim() != 1 || coef.ndim() != 1 || coef.shape(0) != keys.shape(0)) {
    throw py::value_error("keys and coef must be 1-D of length N");
  }
  if (out.ndim() != 3 || out.shape(0) != keys.shape(0) ||
      static_cast<std::size_t>(out.shape(2)) != out_width) {
    throw py::value_error("out must have shape (N, rows, n)");
  }
  LowrankDims d{static_cast<std::size_t>(keys.shape(0)), static_cast<std::size_t>(fac.shape(0)),
                static_cast<std::size_t>(out.shape(1)), static_cast<std::size_t>(fac.shape(2))};
  for (std::size_t i = 0; i < d.members; ++i) {
    if (keys.data()[i] >= d.keys) throw py::value_error("keys must index the factors' first axis");
  }
  return d;
}

F32Array writable_out(py::array out_obj) {
  if (!py::isinstance<F32Array>(out_obj) || !(out_obj.flags() & py::array::c_style) ||
      !out_obj.writeable()) {
    throw py::type_error("out must be a writeable C-contiguous float32 array");
  }
  return py::reinterpret_borrow<F32Array>(out_obj);
}

// out[i] += coef[i] * (x[i] @ A[keys[i]]) @ B[keys[i]]^T for per-member x (N, rows, m).
void lowrank_correction(const F32Array& x, const F32Array& a, const F32Array& b,
                        const U32Array& keys, const F32Array& coef, py::array out_obj) {
  F32Array out = writable_out(out_obj);
  const std::size_t n = b.ndim() == 3 ? static_cast<std::size_t>(b.shape(1)) : 0;
  const LowrankDims d = check_lowrank(a, b, keys, coef, out, n);
  const std::size_t m = static_cast<std::size_t>(a.shape(1));
  if (x.ndim() != 3 || static_cast<std::size_t>(x.shape(0)) != d.members ||
      static_cast<std::size_t>(x.shape(1)) != d.rows || static_cast<std::size_t>(x.shape(2)) != m) {
    throw py::value_error("x must have shape (N, rows, m)");
  }
  const float *xp = x.data(), *ap = a.data(), *bp = b.data(), *cp = coef.data();
  const uint32_t* kp = keys.data();
  float* op = out.mutable_data();
  egg::ReleaseGil release;
  const std::size_t per_member = d.rows * (m + n) * d.r;
  egg::parallel_for(d.members, std::max<std::size_t>(1, (1 << 16) / std::max<std::size_t>(1, per_member)),
                    [&](std::size_t lo, std::size_t hi) {
    const auto& k = egg::kernels();
    std::vector<float> xa(d.rows * d.r);
    for (std::size_t i = lo; i < hi; ++i) {
      const std::size_t key = kp[i];
      k.lowrank_project(xp + i * d.rows * m, d.rows, m, ap + key * m * d.r, d.r, xa.data());
      k.lowrank_expand(xa.data(), d.rows, d.r, bp + key * n * d.r, n, cp[i], op + i * d.rows * n);
    }
  });
}

// out[i] += coef[i] * xa[xa_rows[i]] @ B[keys[i]]^T, xa (R, rows, r) precomputed (shared x).
void lowrank_expand(const F32Array& xa, const U32Array& xa_rows, const F32Array& b,
                    const U32Array& keys, const F32Array& coef, py::array out_obj) {
  F32Array out = writable_out(out_obj);
  const std::size_t n = b.ndim() == 3 ? static_cast<std::size_t>(b.shape(1)) : 0;
  const LowrankDims d = check_lowrank(b, b, keys, coef, out, n);
  if (xa.ndim() != 3 || static_cast<std::size_t>(xa.shape(1)) != d.rows ||
      static_cast<std::size_t>(xa.shape(2)) != d.r) {
    throw py::value_error("xa must have shape (R, rows, r)");
  }
  if (xa_rows.ndim() != 1 || static_cast<std::size_t>(xa_rows.shape(0)) != d.members) {
    throw py::value_error("xa_rows must be 1-D of length N");
  }
  const std::size_t n_xa = static_cast<std::size_t>(xa.shape(0));
  for (std::size_t i = 0; i < d.members; ++i) {
    if (xa_rows.data()[i] >= n_xa) throw py::value_error("xa_rows must index xa's first axis");
  }
  const float *xap = xa.data(), *bp = b.data(), *cp = coef.data();
  const uint32_t *kp = keys.data(), *rp = xa_rows.data();
  float* op = out.mutable_data();
  egg::ReleaseGil release;
  const std::size_t per_member = d.rows * n * d.r;
  egg::parallel_for(d.members, std::max<std::size_t>(1, (1 << 16) / std::max<std::size_t>(1, per_member)),
                    [&](std::size_t lo, std::size_t hi) {
    const auto& k = egg::kernels();
    for (std::size_t i = lo; i < hi; ++i) {
      k.lowrank_expand(xap + rp[i] * d.rows * d.r, d.rows, d.r, bp + kp[i] * n * d.r, n, cp[i],
                       op + i * d.rows * n);
    }
  });
}

// b**n by binary exponentiation in IEEE double, exactly as optim._power: libm's pow may round
// differently on another machine (or its FMA variant), a fixed sequence of products cannot.
double power(double b, int64_t n) {
  double result = 1.0;
  while (n > 0) {
    if (n & 1) result *= b;
    n >>= 1;
    if (n > 0) b *= b;
  }
  return result;
}

// One Adam step on float32 leaves: returns (theta_new, mu_new, nu_new), inputs untouched.
py::tuple adam_step(const F32Array& theta, const F32Array& g, const F32Array& mu,
                    const F32Array& nu, double lr, double b1, double b2, double eps, double wd,
                    int64_t count) {
  const py::ssize_t n = theta.size();
  if (g.size() != n || mu.size() != n || nu.size() != n) {
    throw py::value_error("theta, g, mu and nu must have the same size");
  }
  if (count < 1) throw py::value_error("count must be >= 1");
  std::vector<py::ssize_t> shape(theta.shape(), theta.shape() + theta.ndim());
  F32Array theta_out(shape), mu_out(shape), nu_out(shape);
  const double bc1 = 1.0 - power(b1, count);
  const double bc2 = 1.0 - power(b2, count);
  const egg::AdamScalars s{static_cast<float>(b1),          static_cast<float>(b2),
                           static_cast<float>(1.0 - b1),    static_cast<float>(1.0 - b2),
                           static_cast<float>(bc2),         static_cast<float>(eps),
                           static_cast<float>(lr / bc1),    static_cast<float>(lr * wd),
                           wd != 0.0};
  const float *tp = theta.data(), *gp = g.data(), *mp = mu.data(), *np_ = nu.data();
  float *to = theta_out.mutable_data(), *mo = mu_out.mutable_data(), *no = nu_out.mutable_data();
  // Fixed blocks, partial sums added in block order: the norm does not depend on the threads.
  constexpr std::size_t kBlock = 1 << 16;
  const std::size_t total = static_cast<std::size_t>(n);
  const std::size_t blocks = (total + kBlock - 1) / kBlock;
  std::vector<double> partial(blocks, 0.0);
  {
    egg::ReleaseGil release;
    egg::parallel_for(blocks, 2, [&](std::size_t lo, std::size_t hi) {
      for (std::size_t blk = lo; blk < hi; ++blk) {
        const std::size_t b = blk * kBlock, e = std::min(total, b + kBlock);
        partial[blk] = egg::kernels().adam_step(tp + b, gp + b, mp + b, np_ + b, e - b, s, to + b,
                                                mo + b, no + b);
      }
    });
  }
  double sq = 0.0;
  for (double p : partial) sq += p;
  return py::make_tuple(theta_out, mu_out, nu_out, sq);
}

template <class T>
py::array contract_t(const py::array& a_obj, const py::array& b_obj, const py::array& w_obj) {
  using Arr = py::array_t<T, py::array::c_style | py::array::forcecast>;
  const Arr a = Arr::ensure(a_obj), b = Arr::ensure(b_obj), w = Arr::ensure(w_obj);
  if (a.ndim() != 3 || b.ndim() != 3 || w.ndim() != 1) {
    throw py::value_error("contract needs a (K, m, r), b (K, n, r) and w (K,)");
  }
  if (b.shape(0) != a.shape(0) || w.shape(0) != a.shape(0) || b.shape(2) != a.shape(2)) {
    throw py::value_error("a, b and w must agree on K, and a and b on r");
  }
  const std::size_t K = a.shape(0), m = a.shape(1), r = a.shape(2), n = b.shape(1);
  py::array_t<T> out({static_cast<py::ssize_t>(m), static_cast<py::ssize_t>(n)});
  const T *ap = a.data(), *bp = b.data(), *wp = w.data();
  T* op = out.mutable_data();
  {
    egg::ReleaseGil release;
    egg::contract<T>(ap, bp, wp, K, m, n, r, op);
  }
  return out;
}

py::array contract(const py::array& a, const py::array& b, const py::array& w) {
  // isinstance<array_t<T>> compares dtypes by equivalence: an unpickled float32 array (a Ray
  // worker's) carries an equal dtype that is not numpy's float32 singleton.
  auto all_of = [&](auto tag) {
    using T = decltype(tag);
    return py::isinstance<py::array_t<T>>(a) && py::isinstance<py::array_t<T>>(b) &&
           py::isinstance<py::array_t<T>>(w);
  };
  if (all_of(float{})) return contract_t<float>(a, b, w);
  if (all_of(double{})) return contract_t<double>(a, b, w);
  if (py::isinstance<py::array_t<float>>(a) || py::isinstance<py::array_t<double>>(a)) {
    throw py::type_error("contract: a, b and w must have the same dtype");
  }
  throw py::type_error("contract: float32 or float64 (native byte order) arrays only");
}

// The shared noise table's reads (eggroll_np/noise_table.py): outs[j][i, :] =
// table[starts[j][i] : starts[j][i] + outs[j].shape[1]], every row one memcpy, the rows of all jobs
// split into one range per thread by VALUES (a 1024-wide factor next to a 16-wide bias) with the
// GIL released. A memory-bound copy: the table is larger than the caches.
void gather_rows_many(const F32Array& table, const py::list& starts, const py::list& outs) {
  const std::size_t jobs = static_cast<std::size_t>(py::len(starts));
  if (static_cast<std::size_t>(py::len(outs)) != jobs) {
    throw py::value_error("starts and outs must have the same length");
  }
  if (table.ndim() != 1) throw py::value_error("table must be 1-D");
  const std::size_t size = static_cast<std::size_t>(table.shape(0));
  struct Row {
    const float* src;
    float* dst;
  };
  std::vector<Row> rows;
  std::vector<std::size_t> row_len, value_end;
  std::vector<F32Array> keep;  // hold references while the GIL is released
  std::size_t total = 0;
  for (std::size_t j = 0; j < jobs; ++j) {
    auto st = py::array_t<int64_t, py::array::c_style>::ensure(starts[j]);
    F32Array out = writable_out(outs[j]);
    if (!st || st.ndim() != 1 || out.ndim() != 2 || out.shape(0) != st.shape(0)) {
      throw py::value_error("each starts must be 1-D int64 and each out (len(starts), count)");
    }
    const std::size_t count = static_cast<std::size_t>(out.shape(1));
    const int64_t* s = st.data();
    for (py::ssize_t i = 0; i < st.shape(0); ++i) {
      if (s[i] < 0 || static_cast<std::size_t>(s[i]) + count > size) {
        throw py::value_error("a start + count lies outside the table");
      }
      rows.push_back({table.data() + s[i], out.mutable_data() + i * count});
      row_len.push_back(count);
      total += count;
      value_end.push_back(total);
    }
    keep.push_back(out);
  }
  const std::size_t parts = egg::work_parts(total, 1 << 16);
  std::vector<std::size_t> bound(parts + 1, rows.size());
  bound[0] = 0;
  for (std::size_t t = 1; t < parts; ++t) {
    bound[t] = static_cast<std::size_t>(
        std::lower_bound(value_end.begin(), value_end.end(), total * t / parts) -
        value_end.begin());
  }
  egg::ReleaseGil release;
  egg::parallel_for(parts, 1, [&](std::size_t b, std::size_t e) {
    for (std::size_t r = bound[b]; r < bound[e]; ++r) {
      std::memcpy(rows[r].dst, rows[r].src, row_len[r] * sizeof(float));
    }
  });
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "eggroll_np's C++ core: Philox4x32-10 noise (SIMD, multithreaded)";
  m.def("philox4x32_10", &philox, py::arg("counters"), py::arg("key"),
        "Philox4x32-10 of uint32 counters (n, 4) under key (2,) -> uint32 (n, 4).");
  m.def("fill_normals", &fill_normals, py::arg("seed"), py::arg("leaf"), py::arg("member_keys"),
        py::arg("epoch"), py::arg("offset"), py::arg("out"),
        "Write normals [offset, offset + out.shape[1]) of each member's stream into out (float32).");
  m.def("lowrank_correction", &lowrank_correction, py::arg("x"), py::arg("a"), py::arg("b"),
        py::arg("keys"), py::arg("coef"), py::arg("out"),
        "out[i] += coef[i] * (x[i] @ a[keys[i]]) @ b[keys[i]].T; x (N, rows, m), out (N, rows, n).");
  m.def("lowrank_expand", &lowrank_expand, py::arg("xa"), py::arg("xa_rows"), py::arg("b"),
        py::arg("keys"), py::arg("coef"), py::arg("out"),
        "out[i] += coef[i] * xa[xa_rows[i]] @ b[keys[i]].T; xa (R, rows, r), out (N, rows, n).");
  m.def("adam_step", &adam_step, py::arg("theta"), py::arg("g"), py::arg("mu"), py::arg("nu"),
        py::arg("lr"), py::arg("b1"), py::arg("b2"), py::arg("eps"), py::arg("wd"),
        py::arg("count"),
        "One fused Adam step (ascent direction g, decoupled weight decay) on float32 arrays -> "
        "(theta, mu, nu, squared norm of the step).");
  m.def("contract", &contract, py::arg("a"), py::arg("b"), py::arg("w"),
        "sum_k sum_q (w[k] * a[k, :, q]) outer b[k, :, q] for a (K, m, r), b (K, n, r), w (K,) "
        "-> (m, n), terms added in (k, q) order with no FMA: the same bits on every machine, "
        "SIMD level and thread count. float32 or float64.");
  m.def("gather_rows_many", &gather_rows_many, py::arg("table"), py::arg("starts"),
        py::arg("outs"), "The shared noise table's row copies: outs[j][i] = table[starts[j][i]:].");
  m.def("fill_normals_many", &fill_normals_many, py::arg("seed"), py::arg("leaves"),
        py::arg("member_keys"), py::arg("epoch"), py::arg("offsets"), py::arg("outs"),
        "Several fill_normals requests (one per leaf/offset/out) in one parallel pass.");
  m.def(
      "retain_heap_memory",
      [](std::size_t mmap_threshold, std::size_t trim_threshold) {
#if defined(__GLIBC__)
        // Large blocks from the heap instead of fresh mmap()s, and freed memory kept rather than
        // returned to the OS: a generation's arrays then reuse warm pages instead of taking a
        // page fault (and the kernel's zeroing) per 4 KiB every generation.
        const bool a = mallopt(M_MMAP_THRESHOLD, static_cast<int>(mmap_threshold)) == 1;
        const bool b = mallopt(M_TRIM_THRESHOLD, static_cast<int>(trim_threshold)) == 1;
        return a && b;
#else
        (void)mmap_threshold;
        (void)trim_threshold;
        return false;
#endif
      },
      py::arg("mmap_threshold") = std::size_t{32} << 20,
      py::arg("trim_threshold") = std::size_t{1} << 30,
      "Tune glibc malloc for repeated large allocations (process-wide); False where not glibc.");
  egg::register_layer_bindings(m);
  egg::register_int8_bindings(m);
  m.def("simd_level", [] { return std::string(egg::kernels().name); },
        "Instruction set of the kernels chosen for this processor.");
  m.def("available_simd_levels", &egg::available_levels,
        "Instruction sets this build has and this processor supports, best first.");
  m.def(
      "set_simd_level",
      [](const std::string& name) {
        if (!egg::set_simd_level(name)) {
          throw py::value_error("simd level '" + name + "' is not available here; available: " +
                                py::str(py::cast(egg::available_levels())).cast<std::string>());
        }
      },
      py::arg("name"), "Use the kernels of one instruction set (for tests and benchmarks).");
  m.def("simd_requirements", &egg::simd_requirements,
        "Processor features each SIMD level needs at run time (checked before it is chosen).");
  m.def("num_threads", &egg::num_threads,
        "Threads the parallel kernels use (ValueError naming EGGROLL_NUM_THREADS if it is bad).");
  m.def("set_num_threads", &egg::set_num_threads, py::arg("n"),
        "Set the kernels' thread count (n <= 0 restores the default).");
  m.def("pool_workers", &egg::pool_workers, py::call_guard<egg::ReleaseGil>(),
        "Worker threads the core's pool has started (they sleep when idle).");
  m.def("shutdown_pool", &egg::shutdown_pool, py::call_guard<egg::ReleaseGil>(),
        "Join the pool's workers (at exit); later parallel calls run on the calling thread.");
  // Join the workers while the interpreter is whole, not from a static destructor at exit().
  py::module_::import("atexit").attr("register")(m.attr("shutdown_pool"));
#ifdef VERSION_INFO
#define EGG_STR(x) #x
#define EGG_XSTR(x) EGG_STR(x)
  m.attr("__version__") = EGG_XSTR(VERSION_INFO);
#endif
}
