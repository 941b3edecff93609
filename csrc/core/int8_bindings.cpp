// int8_bindings.cpp: _core's integer-leaf entry points (int8.h). Python validates the contract's
// arguments; this checks the buffers (dtype, shape, contiguity, index and value ranges), then
// releases the GIL and runs the drivers on the library's threads.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "core/gil.h"
#include "core/int8.h"
#include "core/kernels.h"
#include "core/parallel.h"

namespace py = pybind11;

namespace egg {

namespace {

// A bound no key reaches (keys that index nothing are not checked).
constexpr std::size_t kAny = ~std::size_t{0};

void need(bool ok, const std::string& what) {
  if (!ok) throw py::value_error(what);
}

// A C-contiguous array of T with `ndim` dimensions (null data when None and optional).
template <class T>
struct Arr {
  T* p = nullptr;
  std::vector<std::size_t> shape;
  explicit operator bool() const { return p != nullptr; }
  std::size_t operator[](std::size_t k) const { return shape[k]; }
  std::size_t size() const {
    std::size_t s = 1;
    for (auto d : shape) s *= d;
    return s;
  }
};

template <class T>
Arr<T> arr(const py::handle& obj, const char* name, const char* dtype, std::size_t ndim,
           bool writeable = false) {
  Arr<T> v;
  if (obj.is_none()) return v;
  if (!py::isinstance<py::array_t<T>>(obj)) {  // dtype equivalence, not the singleton's identity
    throw py::type_error(std::string(name) + " must be a " + dtype + " ndarray");
  }
  auto a = py::reinterpret_borrow<py::array>(obj);
  need(static_cast<std::size_t>(a.ndim()) == ndim,
       std::string(name) + " must be " + std::to_string(ndim) + "-D");
  need((a.flags() & py::array::c_style) != 0, std::string(name) + " must be C-contiguous");
  need(!writeable || a.writeable(), std::string(name) + " must be writeable");
  for (std::size_t k = 0; k < ndim; ++k) v.shape.push_back(static_cast<std::size_t>(a.shape(k)));
  v.p = static_cast<T*>(const_cast<void*>(a.data()));
  return v;
}

void check_depth(std::size_t k, const char* what) {
  need(k <= kInt8MaxDepth, std::string(what) + " is " + std::to_string(k) + ", above " +
                               std::to_string(kInt8MaxDepth) + " (int32 accumulation would overflow)");
}

void check_shift(int s, const char* name) {
  need(s >= 0 && s <= 62, std::string(name) + " must be in [0, 62]");
}

void check_range(const Arr<int8_t>& a, const char* name) {
  const std::size_t n = a.size();
  for (std::size_t i = 0; i < n; ++i) {
    need(a.p[i] != -128, std::string(name) + " must lie in [-127, 127] (found -128)");
  }
}

// bias int8 (n,) shared or (N, n) per member (null when None).
Arr<int8_t> member_bias(const py::object& obj, std::size_t N, std::size_t n) {
  if (obj.is_none()) return {};
  const bool per_member = py::isinstance<py::array>(obj) && py::reinterpret_borrow<py::array>(obj).ndim() == 2;
  const auto bias = arr<int8_t>(obj, "bias", "int8", per_member ? 2 : 1);
  need(per_member ? bias[0] == N && bias[1] == n : bias[0] == n, "bias must have shape (n,) or (N, n)");
  return bias;
}

// keys uint32 (N,) with values < bound (null when None).
Arr<uint32_t> member_keys(const py::object& obj, const char* name, std::size_t N, std::size_t bound) {
  const auto keys = arr<uint32_t>(obj, name, "uint32", 1);
  if (!keys) return keys;
  need(keys[0] == N, std::string(name) + " must have shape (N,)");
  for (std::size_t i = 0; i < N; ++i) {
    need(keys.p[i] < bound, std::string(name) + " must be < " + std::to_string(bound));
  }
  return keys;
}

Arr<int8_t> member_signs(const py::object& obj, std::size_t N) {
  const auto signs = arr<int8_t>(obj, "signs", "int8", 1);
  if (!signs) return signs;
  need(signs[0] == N, "signs must have shape (N,)");
  for (std::size_t i = 0; i < N; ++i) need(signs.p[i] == 1 || signs.p[i] == -1, "signs must be +1 or -1");
  return signs;
}

py::array_t<int32_t> gemm(const py::object& a_obj, const py::object& b_obj, const py::object& out_obj) {
  const auto a = arr<int8_t>(a_obj, "a", "int8", 2), b = arr<int8_t>(b_obj, "b", "int8", 2);
  need(a && b, "a and b are required");
  need(a[1] == b[0], "a (M, K) and b (K, N) must agree on K");
  check_depth(a[1], "K");
  py::array_t<int32_t> out;
  if (out_obj.is_none()) {
    out = py::array_t<int32_t>({static_cast<py::ssize_t>(a[0]), static_cast<py::ssize_t>(b[1])});
  } else {
    const auto o = arr<int32_t>(out_obj, "out", "int32", 2, true);
    need(o[0] == a[0] && o[1] == b[1], "out must have shape (M, N)");
    out = py::reinterpret_borrow<py::array_t<int32_t>>(out_obj);
  }
  int32_t* c = out.mutable_data();
  {
    ReleaseGil release;
    gemm_s8s8s32(a.p, a[1], b.p, b[1], a[0], a[1], b[1], c, b[1]);
  }
  return out;
}

void linear(const py::object& x_obj, const py::object& w_obj, const py::object& out_obj,
            const py::object& a_obj, const py::object& b_obj, const py::object& keys_obj,
            const py::object& signs_obj, int lr_shift, const py::object& bias_obj,
            const py::object& bias_noise_obj, int bias_shift, int out_shift, bool relu) {
  const auto x = arr<int8_t>(x_obj, "x", "int8", 3);
  const auto out = arr<int8_t>(out_obj, "out", "int8", 3, true);
  need(x && out, "x and out are required");
  const std::size_t N = out[0], B = out[1], n = out[2], m = x[2];
  need(x[0] == 1 || x[0] == N, "x must have shape (1 or N, B, m), N = out.shape[0]");
  need(x[1] == B, "x and out must agree on B");
  check_depth(m, "m");
  need(!w_obj.is_none(), "w is required");
  const bool per_member = py::reinterpret_borrow<py::array>(w_obj).ndim() == 3;
  const auto w = arr<int8_t>(w_obj, "w", "int8", per_member ? 3 : 2);
  if (per_member) {
    need(w[0] == N && w[1] == m && w[2] == n, "w must have shape (m, n) or (N, m, n)");
  } else {
    need(w[0] == m && w[1] == n, "w must have shape (m, n) or (N, m, n)");
  }
  const auto a = arr<int8_t>(a_obj, "a", "int8", 3), b = arr<int8_t>(b_obj, "b", "int8", 3);
  const auto bias = member_bias(bias_obj, N, n);
  const auto bias_noise = arr<int8_t>(bias_noise_obj, "bias_noise", "int8", 2);
  need(static_cast<bool>(a) == static_cast<bool>(b), "give both a and b, or neither");
  std::size_t K = 0, r = 0;
  if (a) {
    K = a[0], r = a[2];
    need(a[1] == m, "a must have shape (K, m, r)");
    need(b[0] == K && b[1] == n && b[2] == r, "b must have shape (K, n, r)");
    need(r <= 64, "the rank r must be <= 64");
  }
  need(!bias_noise || (bias && bias.shape.size() == 1), "bias_noise needs a shared bias (n,)");
  if (bias_noise) {
    need(!a || bias_noise[0] == K, "bias_noise must have shape (K, n) with a's K");
    need(bias_noise[1] == n, "bias_noise must have shape (K, n)");
  }
  const std::size_t bound = a ? (bias_noise ? std::min(K, bias_noise[0]) : K) : (bias_noise ? bias_noise[0] : 0);
  const auto keys = member_keys(keys_obj, "keys", N, (a || bias_noise) ? bound : kAny);
  const auto signs = member_signs(signs_obj, N);
  need(keys || !(a || bias_noise), "keys are needed with a/b or bias_noise");
  check_shift(lr_shift, "lr_shift");
  check_shift(bias_shift, "bias_shift");
  check_shift(out_shift, "out_shift");
  Int8Linear L{};
  L.x = x.p, L.X = x[0], L.w = w.p, L.w_per_member = per_member;
  L.a = a.p, L.b = b.p, L.K = K, L.r = r;
  L.keys = keys.p, L.signs = signs.p, L.lr_shift = lr_shift;
  L.bias = bias.p, L.bias_per_member = bias && bias.shape.size() == 2, L.bias_noise = bias_noise.p, L.bias_shift = bias_shift;
  L.out_shift = out_shift, L.relu = relu, L.out = out.p;
  L.N = N, L.B = B, L.m = m, L.n = n;
  ReleaseGil release;
  int8_linear(L);
}

void epilogue(const py::object& out_obj, const py::object& acc_obj, const py::object& xa_obj,
              const py::object& xa_rows_obj, const py::object& right_obj, const py::object& keys_obj,
              const py::object& signs_obj, const py::object& bias_obj, int shift_lr, int shift_out,
              bool relu) {
  const auto out = arr<int8_t>(out_obj, "out", "int8", 3, true);
  need(static_cast<bool>(out), "out is required");
  const std::size_t N = out[0], B = out[1], n = out[2];
  need(!acc_obj.is_none(), "acc is required");
  const bool acc_pm = py::isinstance<py::array>(acc_obj) && py::reinterpret_borrow<py::array>(acc_obj).ndim() == 3;
  const auto acc = arr<int32_t>(acc_obj, "acc", "int32", acc_pm ? 3 : 2);
  need(acc_pm ? acc[0] == N && acc[1] == B && acc[2] == n : acc[0] == B && acc[1] == n,
       "acc must have shape (B, n) or (N, B, n) of out (N, B, n)");
  const auto xa = arr<int32_t>(xa_obj, "xa", "int32", 3);
  const auto right = arr<int8_t>(right_obj, "right", "int8", 3);
  need(static_cast<bool>(xa) == static_cast<bool>(right), "give both xa and right, or neither");
  std::size_t K = 0, r = 0;
  Arr<uint32_t> xa_rows;
  if (xa) {
    K = right[0], r = right[2];
    need(right[1] == n && r <= 64, "right must have shape (K, n, r), r <= 64");
    need(xa[1] == B && xa[2] == r, "xa must have shape (R, B, r)");
    xa_rows = member_keys(xa_rows_obj, "xa_rows", N, xa[0]);
    need(xa_rows || xa[0] >= N, "xa_rows is needed when xa has fewer than N rows");
  }
  const auto keys = member_keys(keys_obj, "keys", N, xa ? K : kAny);
  need(keys || !xa, "keys are needed with xa and right");
  const auto signs = member_signs(signs_obj, N);
  const auto bias = member_bias(bias_obj, N, n);
  check_shift(shift_lr, "shift_lr");
  check_shift(shift_out, "shift_out");
  Int8Epilogue E{};
  E.out = out.p, E.acc = acc.p, E.acc_per_member = acc_pm;
  E.xa = xa.p, E.xa_rows = xa_rows.p, E.right = right.p, E.K = K, E.r = r;
  E.keys = keys.p, E.signs = signs.p;
  E.bias = bias.p, E.bias_per_member = bias && bias.shape.size() == 2;
  E.shift_lr = shift_lr, E.shift_out = shift_out, E.relu = relu;
  E.N = N, E.B = B, E.n = n;
  ReleaseGil release;
  int8_epilogue(E);
}

py::array_t<int32_t> xa_of(const py::object& x_obj, const py::object& a_obj, const py::object& keys_obj) {
  const auto x = arr<int8_t>(x_obj, "x", "int8", 3), a = arr<int8_t>(a_obj, "a", "int8", 3);
  need(x && a, "x and a are required");
  need(!keys_obj.is_none(), "keys is required");
  const std::size_t N = py::len(keys_obj), K = a[0], m = a[1], r = a[2], B = x[1];
  need(x[2] == m, "x (N, B, m) and a (K, m, r) must agree on m");
  need(x[0] == 1 || x[0] == N, "x must have shape (1 or N, B, m), N = len(keys)");
  check_depth(m, "m");
  const auto keys = member_keys(keys_obj, "keys", N, K);
  py::array_t<int32_t> out({static_cast<py::ssize_t>(N), static_cast<py::ssize_t>(B), static_cast<py::ssize_t>(r)});
  int32_t* op = out.mutable_data();
  {
    ReleaseGil release;
    int8_xa(x.p, x[0], a.p, keys.p, N, K, B, m, r, op);
  }
  return out;
}

// The checked operands of int8_contract / int8_update: (K, m, n, r).
struct ContractDims {
  std::size_t K, m, n, r;
};

ContractDims contract_args(const Arr<int8_t>& a, const Arr<int8_t>& b, const Arr<int8_t>& c) {
  need(a && b && c, "a, b and c are required");
  need(b[0] == a[0] && c[0] == a[0] && b[2] == a[2],
       "a (K, m, r), b (K, n, r) and c (K,) must agree on K and r");
  const ContractDims d{a[0], a[1], b[1], a[2]};
  check_depth(d.K * d.r, "K * r");
  for (std::size_t k = 0; k < d.K; ++k) need(c.p[k] >= -1 && c.p[k] <= 1, "c must be in {-1, 0, 1}");
  check_range(a, "a");
  return d;
}

py::array_t<int32_t> contract(const py::object& a_obj, const py::object& b_obj, const py::object& c_obj) {
  const auto a = arr<int8_t>(a_obj, "a", "int8", 3), b = arr<int8_t>(b_obj, "b", "int8", 3);
  const auto c = arr<int8_t>(c_obj, "c", "int8", 1);
  const ContractDims d = contract_args(a, b, c);
  py::array_t<int32_t> z({static_cast<py::ssize_t>(d.m), static_cast<py::ssize_t>(d.n)});
  int32_t* zp = z.mutable_data();
  {
    ReleaseGil release;
    int8_contract(a.p, b.p, c.p, d.K, d.m, d.n, d.r, zp, nullptr, 0, nullptr);
  }
  return z;
}

py::array_t<int8_t> update(const py::object& q_obj, const py::object& a_obj, const py::object& b_obj,
                           const py::object& c_obj, int64_t tau) {
  const auto a = arr<int8_t>(a_obj, "a", "int8", 3), b = arr<int8_t>(b_obj, "b", "int8", 3);
  const auto c = arr<int8_t>(c_obj, "c", "int8", 1);
  const auto q = arr<int8_t>(q_obj, "q", "int8", 2);
  need(static_cast<bool>(q), "q is required");
  const ContractDims d = contract_args(a, b, c);
  need(q[0] == d.m && q[1] == d.n, "q must have shape (m, n) of a (K, m, r) and b (K, n, r)");
  py::array_t<int8_t> out({static_cast<py::ssize_t>(d.m), static_cast<py::ssize_t>(d.n)});
  int8_t* op = out.mutable_data();
  {
    ReleaseGil release;
    int8_contract(a.p, b.p, c.p, d.K, d.m, d.n, d.r, nullptr, q.p, tau, op);
  }
  return out;
}

// fill_normals_many with int8 outputs: e = clip(rint(16 z), -127, 127), in chunks that stay in L1.
void fill_int8_noise_many(uint64_t seed, const std::vector<uint32_t>& leaves,
                          const py::object& member_keys_obj, uint32_t epoch,
                          const std::vector<uint64_t>& offsets, const py::list& outs) {
  const std::size_t jobs = leaves.size();
  need(offsets.size() == jobs && static_cast<std::size_t>(py::len(outs)) == jobs,
       "leaves, offsets and outs must have the same length");
  const auto keys = arr<uint32_t>(member_keys_obj, "member_keys", "uint32", 1);
  need(static_cast<bool>(keys), "member_keys is required");
  const std::size_t rows = keys[0];
  constexpr std::size_t kChunk = 1 << 12;
  struct Job {
    uint32_t leaf;
    uint64_t offset;
    std::size_t count, chunks;
    int8_t* dst;
  };
  std::vector<Job> spec;
  std::vector<std::size_t> first{0};
  for (std::size_t j = 0; j < jobs; ++j) {
    const auto o = arr<int8_t>(outs[j], "each out", "int8", 2, true);
    need(o[0] == rows, "each out must have shape (len(member_keys), count)");
    need(offsets[j] + o[1] <= (uint64_t{1} << 34),
         "offset + count exceeds the 2^34 values of one Philox stream");
    const std::size_t chunks = (o[1] + kChunk - 1) / kChunk;
    spec.push_back({leaves[j], offsets[j], o[1], chunks, o.p});
    first.push_back(first.back() + rows * chunks);
  }
  ReleaseGil release;
  parallel_for(first.back(), 4, [&](std::size_t lo, std::size_t hi) {
    const auto& k = kernels();
    std::vector<float> z(kChunk);
    std::size_t j = 0;
    for (std::size_t item = lo; item < hi; ++item) {
      while (item >= first[j + 1]) ++j;
      const Job& job = spec[j];
      const std::size_t local = item - first[j], row = local / job.chunks;
      const std::size_t start = (local % job.chunks) * kChunk;
      const std::size_t len = std::min(kChunk, job.count - start);
      k.fill_normals(seed, job.leaf, keys.p[row], epoch, job.offset + start, len, z.data());
      k.int8->quantize(z.data(), len, job.dst + row * job.count + start);
    }
  });
}

}  // namespace

void register_int8_bindings(py::module_& m) {
  m.def("gemm_s8s8s32", &gemm, py::arg("a"), py::arg("b"), py::arg("out") = py::none(),
        "a (M, K) int8 @ b (K, N) int8 -> int32 (M, N), exact (K <= 131071); into out if given.");
  m.def("int8_linear", &linear, py::arg("x"), py::arg("w"), py::arg("out"),
        py::arg("a") = py::none(), py::arg("b") = py::none(), py::arg("keys") = py::none(),
        py::arg("signs") = py::none(), py::arg("lr_shift") = 0, py::arg("bias") = py::none(),
        py::arg("bias_noise") = py::none(), py::arg("bias_shift") = 0, py::arg("out_shift") = 0,
        py::arg("relu") = false,
        "The integer population linear layer in one fused pass, into out int8 (N, B, n). "
        "x int8 (1 or N, B, m), w int8 (m, n) or (N, m, n), a int8 (K, m, r), b int8 (K, n, r), "
        "keys uint32 (N,), signs int8 (N,) in {+1, -1}, bias int8 (n,), bias_noise int8 (K, n). "
        "Member i (k = keys[i], s = signs[i]): acc = x_i @ w_i + ((s * (x_i @ a_k) @ b_k.T) >> "
        "lr_shift); bias_i = clip(bias + ((s * bias_noise[k]) >> bias_shift), -127, 127); "
        "out_i = clip((acc >> out_shift) + bias_i, -127, 127), then max(0, .) with relu. "
        "Exact integer arithmetic (>> is floor division).");
  m.def("int8_epilogue", &epilogue, py::arg("out"), py::arg("acc"), py::arg("xa"),
        py::arg("xa_rows"), py::arg("right"), py::arg("keys"), py::arg("signs"), py::arg("bias"),
        py::arg("shift_lr"), py::arg("shift_out"), py::arg("relu"),
        "int8_linear's epilogue alone, into out int8 (N, B, n), from acc int32 (B, n) or "
        "(N, B, n): v = acc + ((s_i * xa[xa_rows[i] or i] @ right[keys[i]].T) >> shift_lr); "
        "out = clip((v >> shift_out) + bias (n,) or bias[i] (N, n), -127, 127), relu: max(0, .).");
  m.def("int8_xa", &xa_of, py::arg("x"), py::arg("a"), py::arg("keys"),
        "x (N or 1, B, m) int8 @ a[keys[i]] (K, m, r) int8 -> int32 (N, B, r), exact.");
  m.def("int8_contract", &contract, py::arg("a"), py::arg("b"), py::arg("c"),
        "sum_k c[k] * a[k] @ b[k].T -> int32 (m, n), exact; a int8 (K, m, r) in [-127, 127], "
        "b int8 (K, n, r), c int8 (K,) in {-1, 0, 1}, K * r <= 131071.");
  m.def("int8_update", &update, py::arg("q"), py::arg("a"), py::arg("b"), py::arg("c"),
        py::arg("tau"),
        "The integer update in one pass: z = int8_contract(a, b, c); returns the new int8 (m, n) "
        "clip(q + sign(z) * (|z| >= tau), -127, 127); q is not modified.");
  m.def("fill_int8_noise_many", &fill_int8_noise_many, py::arg("seed"), py::arg("leaves"),
        py::arg("member_keys"), py::arg("epoch"), py::arg("offsets"), py::arg("outs"),
        "fill_normals_many quantized: outs[j] int8 (len(member_keys), count) = clip(rint(16 * z), "
        "-127, 127) of the same float32 normals z (rint: half to even).");
}

}  // namespace egg
