// update_bindings.cpp: bindings of the low-rank population kernels, the update contraction and
// the fused Adam step: buffer checks, then the drivers with the GIL released.
#include <cstdint>
#include <vector>

#include "core/buffers.h"
#include "core/contract.h"
#include "core/drivers.h"
#include "core/gil.h"

namespace egg {

namespace {

// Checks shared by the low-rank entry points; returns (N, K, rows, r).
LowrankDims check_lowrank(const F32Array& fac, const F32Array& other_fac, const U32Array& keys,
                          const F32Array& coef, const F32Array& out, std::size_t out_width) {
  if (fac.ndim() != 3 || other_fac.ndim() != 3) {
    throw py::value_error("factors must be 3-D (K, dim, r)");
  }
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

void lowrank_correction_py(const F32Array& x, const F32Array& a, const F32Array& b,
                           const U32Array& keys, const F32Array& coef, const py::array& out_obj) {
  F32Array out = writable_out(out_obj);
  const std::size_t n = b.ndim() == 3 ? static_cast<std::size_t>(b.shape(1)) : 0;
  const LowrankDims d = check_lowrank(a, b, keys, coef, out, n);
  const std::size_t m = static_cast<std::size_t>(a.shape(1));
  if (x.ndim() != 3 || static_cast<std::size_t>(x.shape(0)) != d.members ||
      static_cast<std::size_t>(x.shape(1)) != d.rows || static_cast<std::size_t>(x.shape(2)) != m) {
    throw py::value_error("x must have shape (N, rows, m)");
  }
  float* op = out.mutable_data();
  ReleaseGil release;
  lowrank_correction(x.data(), a.data(), b.data(), keys.data(), coef.data(), d, m, n, op);
}

void lowrank_expand_py(const F32Array& xa, const U32Array& xa_rows, const F32Array& b,
                       const U32Array& keys, const F32Array& coef, const py::array& out_obj) {
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
  float* op = out.mutable_data();
  ReleaseGil release;
  lowrank_expand(xa.data(), xa_rows.data(), b.data(), keys.data(), coef.data(), d, n, op);
}

// One Adam step on float32 leaves: returns (theta_new, mu_new, nu_new, squared step norm),
// inputs untouched.
py::tuple adam_step_py(const F32Array& theta, const F32Array& g, const F32Array& mu,
                       const F32Array& nu, double lr, double b1, double b2, double eps, double wd,
                       int64_t count) {
  const py::ssize_t n = theta.size();
  if (g.size() != n || mu.size() != n || nu.size() != n) {
    throw py::value_error("theta, g, mu and nu must have the same size");
  }
  const AdamScalars s = adam_scalars(lr, b1, b2, eps, wd, count);  // checks count >= 1
  std::vector<py::ssize_t> shape(theta.shape(), theta.shape() + theta.ndim());
  F32Array theta_out(shape), mu_out(shape), nu_out(shape);
  float *to = theta_out.mutable_data(), *mo = mu_out.mutable_data(), *no = nu_out.mutable_data();
  double sq;
  {
    ReleaseGil release;
    sq = adam_step(theta.data(), g.data(), mu.data(), nu.data(), static_cast<std::size_t>(n), s,
                   to, mo, no);
  }
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
    ReleaseGil release;
    contract<T>(ap, bp, wp, K, m, n, r, op);
  }
  return out;
}

py::array contract_py(const py::array& a, const py::array& b, const py::array& w) {
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

}  // namespace

void register_update_bindings(py::module_& m) {
  m.def("lowrank_correction", &lowrank_correction_py, py::arg("x"), py::arg("a"), py::arg("b"),
        py::arg("keys"), py::arg("coef"), py::arg("out"),
        "out[i] += coef[i] * (x[i] @ a[keys[i]]) @ b[keys[i]].T; x (N, rows, m), out (N, rows, n).");
  m.def("lowrank_expand", &lowrank_expand_py, py::arg("xa"), py::arg("xa_rows"), py::arg("b"),
        py::arg("keys"), py::arg("coef"), py::arg("out"),
        "out[i] += coef[i] * xa[xa_rows[i]] @ b[keys[i]].T; xa (R, rows, r), out (N, rows, n).");
  m.def("adam_step", &adam_step_py, py::arg("theta"), py::arg("g"), py::arg("mu"), py::arg("nu"),
        py::arg("lr"), py::arg("b1"), py::arg("b2"), py::arg("eps"), py::arg("wd"),
        py::arg("count"),
        "One fused Adam step (ascent direction g, decoupled weight decay) on float32 arrays -> "
        "(theta, mu, nu, squared norm of the step).");
  m.def("contract", &contract_py, py::arg("a"), py::arg("b"), py::arg("w"),
        "sum_k sum_q (w[k] * a[k, :, q]) outer b[k, :, q] for a (K, m, r), b (K, n, r), w (K,) "
        "-> (m, n), terms added in (k, q) order (float32: one FMA each; float64: product and sum "
        "rounded apart): the same bits on every machine, SIMD level and thread count.");
}

}  // namespace egg
