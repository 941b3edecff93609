// layer_bindings.cpp: _core's fused epilogues of the population layers (linear/embed, conv2d).
// Python (eggroll_np.layers / eggroll_np.conv) validates the layer arguments; this checks the
// buffers (dtype, shapes, index ranges), releases the GIL and runs the row kernel of
// epilogue_kernels.cpp over (member, row block) items on the library's threads.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <array>
#include <stdexcept>
#include <cstdint>
#include <string>
#include <vector>

#include "core/epilogue.h"
#include "core/gil.h"
#include "core/kernels.h"
#include "core/parallel.h"

namespace py = pybind11;

namespace egg {

namespace {

// A float32 array argument: data pointer, shape and strides in elements (null when None).
// Fixed arrays, not vectors: a tiny layer's call must not pay a heap allocation per dimension.
constexpr std::size_t kMaxDims = 4;
struct View {
  float* p = nullptr;
  std::array<std::ptrdiff_t, kMaxDims> shape{}, stride{};
  explicit operator bool() const { return p != nullptr; }
  std::ptrdiff_t dim(std::size_t k) const { return shape[k]; }
};

View f32(const py::handle& obj, const char* name, std::size_t ndim, bool contiguous,
         bool writeable = false) {
  if (ndim > kMaxDims) throw std::logic_error("f32: a View holds at most 4 dimensions");
  View v;
  if (obj.is_none()) return v;
  if (!py::isinstance<py::array>(obj)) throw py::type_error(std::string(name) + " must be an ndarray");
  auto arr = py::reinterpret_borrow<py::array>(obj);
  if (!py::isinstance<py::array_t<float>>(arr)) {  // dtype equivalence, not the singleton's identity
    throw py::type_error(std::string(name) + " must be float32");
  }
  if (static_cast<std::size_t>(arr.ndim()) != ndim) {
    throw py::value_error(std::string(name) + " must be " + std::to_string(ndim) + "-D");
  }
  if (contiguous && !(arr.flags() & py::array::c_style)) {
    throw py::value_error(std::string(name) + " must be C-contiguous");
  }
  if (writeable && !arr.writeable()) throw py::value_error(std::string(name) + " must be writeable");
  for (std::size_t k = 0; k < ndim; ++k) {
    if (arr.strides(k) % static_cast<py::ssize_t>(sizeof(float)) != 0) {
      throw py::value_error(std::string(name) + " must have float-aligned strides");
    }
    v.shape[k] = arr.shape(k);
    v.stride[k] = arr.strides(k) / static_cast<py::ssize_t>(sizeof(float));
  }
  v.p = static_cast<float*>(const_cast<void*>(arr.data()));
  return v;
}

// A (n,) uint32 index vector whose values are < bound (null when None).
const uint32_t* indices(const py::handle& obj, const char* name, std::size_t n, std::size_t bound) {
  if (obj.is_none()) return nullptr;
  if (!py::isinstance<py::array_t<uint32_t>>(obj)) throw py::type_error(std::string(name) + " must be uint32");
  auto arr = py::reinterpret_borrow<py::array>(obj);
  if (arr.ndim() != 1 || static_cast<std::size_t>(arr.shape(0)) != n ||
      !(arr.flags() & py::array::c_style)) {
    throw py::value_error(std::string(name) + " must be a contiguous (" + std::to_string(n) + ",) array");
  }
  const auto* p = static_cast<const uint32_t*>(arr.data());
  for (std::size_t i = 0; i < n; ++i) {
    if (p[i] >= bound) {
      throw py::value_error(std::string(name) + " must be < " + std::to_string(bound));
    }
  }
  return p;
}

void need(bool ok, const std::string& what) {
  if (!ok) throw py::value_error(what);
}

void check_act(int act) { need(act >= kNone && act <= kGelu, "act must be in [0, 4]"); }

// The per-member operands both epilogues share, checked, and the members' keys: bias (width,),
// bias_noise (K, width) and bias_coef (N,) (`dim` names width in the messages); each key must be
// below the factors' K where the factors (named `factor`) are read with it, and below
// bias_noise's K where that is.
const uint32_t* member_keys(const py::object& keys_obj, std::size_t N, std::size_t width,
                            const char* dim, bool factors, std::size_t K, const char* factor,
                            const View& bias, const View& bias_noise, const View& bias_coef) {
  const auto w = static_cast<std::ptrdiff_t>(width);
  need(!bias || bias.dim(0) == w, std::string("bias must have shape (") + dim + ",)");
  std::size_t Kb = 0;
  if (bias_noise) {
    Kb = bias_noise.dim(0);
    need(bias && bias_noise.dim(1) == w, std::string("bias_noise must have shape (K, ") + dim + ")");
    need(bias_coef && bias_coef.dim(0) == static_cast<std::ptrdiff_t>(N), "bias_coef must have shape (N,)");
  }
  const std::size_t bound = factors ? (bias_noise ? std::min(K, Kb) : K) : (bias_noise ? Kb : ~0u);
  const uint32_t* keys = indices(keys_obj, "keys", N, bound);
  need(keys != nullptr || (!factors && !bias_noise),
       std::string("keys are needed with ") + factor + " or bias_noise");
  return keys;
}

// out (N, rows, n)[i, j, :] = act(src + coef_i * t_ij @ b_k^T + bias + bias_coef_i * bias_noise_k)
// with t_ij = x[i, j] @ a_k (x, a given) or xa[xa_rows[i], j] (xa given); src = base[j] or out.
void linear_epilogue(const py::array& out_obj, const py::object& base_obj, const py::object& x_obj,
                     const py::object& a_obj, const py::object& xa_obj,
                     const py::object& xa_rows_obj, const py::object& b_obj,
                     const py::object& keys_obj, const py::object& coef_obj,
                     const py::object& bias_obj, const py::object& bias_noise_obj,
                     const py::object& bias_coef_obj, int act) {
  check_act(act);
  const View out = f32(out_obj, "out", 3, true, true);
  const std::size_t N = out.dim(0), rows = out.dim(1), n = out.dim(2);
  const View base = f32(base_obj, "base", 2, true);
  need(!base || (base.dim(0) == static_cast<std::ptrdiff_t>(rows) && base.dim(1) == static_cast<std::ptrdiff_t>(n)),
       "base must have shape (rows, n)");
  const View b = f32(b_obj, "b", 3, true), x = f32(x_obj, "x", 3, true), a = f32(a_obj, "a", 3, true);
  const View xa = f32(xa_obj, "xa", 3, true);
  const View coef = f32(coef_obj, "coef", 1, true), bias = f32(bias_obj, "bias", 1, true);
  const View bias_noise = f32(bias_noise_obj, "bias_noise", 2, true);
  const View bias_coef = f32(bias_coef_obj, "bias_coef", 1, true);
  std::size_t K = 0, r = 0, m = 0;
  if (b) {
    K = b.dim(0), r = b.dim(2);
    need(b.dim(1) == static_cast<std::ptrdiff_t>(n), "b must have shape (K, n, r)");
    need(coef && coef.dim(0) == static_cast<std::ptrdiff_t>(N), "coef must have shape (N,)");
    need(static_cast<bool>(x) != static_cast<bool>(xa), "give either x and a or xa and xa_rows");
    if (x) {
      m = x.dim(2);
      need(x.dim(0) == static_cast<std::ptrdiff_t>(N) && x.dim(1) == static_cast<std::ptrdiff_t>(rows),
           "x must have shape (N, rows, m)");
      need(a && a.dim(0) == static_cast<std::ptrdiff_t>(K) && a.dim(1) == static_cast<std::ptrdiff_t>(m) &&
               a.dim(2) == static_cast<std::ptrdiff_t>(r),
           "a must have shape (K, m, r)");
    } else {
      need(xa.dim(1) == static_cast<std::ptrdiff_t>(rows) && xa.dim(2) == static_cast<std::ptrdiff_t>(r),
           "xa must have shape (R, rows, r)");
    }
  }
  const uint32_t* keys = member_keys(keys_obj, N, n, "n", static_cast<bool>(b), K, "b", bias,
                                     bias_noise, bias_coef);
  const uint32_t* xa_rows = b && xa ? indices(xa_rows_obj, "xa_rows", N, xa.dim(0)) : nullptr;
  need(!(b && xa) || xa_rows != nullptr, "xa_rows is needed with xa");

  // Items: (member, block of rows) with about 16K output values each.
  const std::size_t block = std::max<std::size_t>(1, std::min<std::size_t>(rows, (1 << 14) / std::max<std::size_t>(1, n)));
  const std::size_t blocks = rows == 0 ? 0 : (rows + block - 1) / block;
  const std::size_t items = N * blocks;
  const std::size_t per_item = block * std::max<std::size_t>(1, n + m * r);
  egg::ReleaseGil release;
  parallel_for(items, std::max<std::size_t>(1, (1 << 16) / per_item), [&](std::size_t lo, std::size_t hi) {
    const auto& k = kernels();
    const auto row_kernel = k.epilogue_row;
    std::vector<float> t(block * std::max<std::size_t>(1, r)), vt(r > 1 ? n * r : 0);
    for (std::size_t item = lo; item < hi; ++item) {
      const std::size_t i = item / blocks, j0 = (item % blocks) * block;
      const std::size_t j1 = std::min(rows, j0 + block);
      const uint32_t key = keys != nullptr ? keys[i] : 0;
      const float* v = nullptr;
      std::ptrdiff_t vj = 1, vq = 1;
      if (b) {
        const float c = coef.p[i];
        if (x) {
          k.lowrank_project(x.p + (i * rows + j0) * m, j1 - j0, m, a.p + key * m * r, r, t.data());
          for (std::size_t q = 0; q < (j1 - j0) * r; ++q) t[q] *= c;
        } else {
          const float* src = xa.p + (static_cast<std::size_t>(xa_rows[i]) * rows + j0) * r;
          for (std::size_t q = 0; q < (j1 - j0) * r; ++q) t[q] = c * src[q];
        }
        const float* bk = b.p + static_cast<std::size_t>(key) * n * r;
        if (r > 1) {  // (n, r) -> (r, n): the row pass then streams each rank contiguously
          for (std::size_t j = 0; j < n; ++j)
            for (std::size_t q = 0; q < r; ++q) vt[q * n + j] = bk[j * r + q];
          v = vt.data(), vj = 1, vq = static_cast<std::ptrdiff_t>(n);
        } else {
          v = bk, vj = 1, vq = 0;
        }
      }
      for (std::size_t j = j0; j < j1; ++j) {
        RowEpilogue e{};
        e.src = base ? base.p + j * n : out.p + (i * rows + j) * n;
        e.src_stride = 1;
        e.n = n;
        e.t = b ? t.data() + (j - j0) * r : nullptr;
        e.r = b ? r : 0;
        e.v = v, e.vj = vj, e.vq = vq;
        e.bias = bias.p;
        e.bias_noise = bias_noise ? bias_noise.p + static_cast<std::size_t>(key) * n : nullptr;
        e.bias_coef = bias_noise ? bias_coef.p[i] : 0.0f;
        e.bias_s = 0.0f;
        e.act = act;
        e.out = out.p + (i * rows + j) * n;
        row_kernel(e);
      }
    }
  });
}

// out (N, Bt, O, P)[i, b, o, :] = act(src[i or 0, b, o, :] + coef_i * a_k[o] . v[v_index[i], b, :, :]
//                                      + bias[o] + bias_coef_i * bias_noise[k, o])
void conv_epilogue(const py::array& out_obj, const py::array& src_obj, const py::object& a_obj,
                   const py::object& v_obj, const py::object& v_index_obj, const py::object& keys_obj,
                   const py::object& coef_obj, const py::object& bias_obj,
                   const py::object& bias_noise_obj, const py::object& bias_coef_obj, int act) {
  check_act(act);
  const View out = f32(out_obj, "out", 4, true, true);
  const std::size_t N = out.dim(0), Bt = out.dim(1), O = out.dim(2), P = out.dim(3);
  const View src = f32(src_obj, "src", 4, false);
  need((src.dim(0) == 1 || src.dim(0) == static_cast<std::ptrdiff_t>(N)) && src.dim(1) == static_cast<std::ptrdiff_t>(Bt) &&
           src.dim(2) == static_cast<std::ptrdiff_t>(O) && src.dim(3) == static_cast<std::ptrdiff_t>(P),
       "src must have shape (1 or N, Bt, O, P)");
  const View a = f32(a_obj, "a", 3, true), v = f32(v_obj, "v", 4, false);
  const View coef = f32(coef_obj, "coef", 1, true), bias = f32(bias_obj, "bias", 1, true);
  const View bias_noise = f32(bias_noise_obj, "bias_noise", 2, true);
  const View bias_coef = f32(bias_coef_obj, "bias_coef", 1, true);
  std::size_t K = 0, r = 0;
  if (a) {
    K = a.dim(0), r = a.dim(2);
    need(a.dim(1) == static_cast<std::ptrdiff_t>(O), "a must have shape (K, O, r)");
    need(v && v.dim(1) == static_cast<std::ptrdiff_t>(Bt) && v.dim(2) == static_cast<std::ptrdiff_t>(r) &&
             v.dim(3) == static_cast<std::ptrdiff_t>(P),
         "v must have shape (X, Bt, r, P)");
    need(coef && coef.dim(0) == static_cast<std::ptrdiff_t>(N), "coef must have shape (N,)");
  }
  const uint32_t* keys = member_keys(keys_obj, N, O, "O", static_cast<bool>(a), K, "a", bias,
                                     bias_noise, bias_coef);
  const uint32_t* v_index = a ? indices(v_index_obj, "v_index", N, v.dim(0)) : nullptr;
  need(!a || v_index != nullptr, "v_index is needed with a");

  const std::size_t items = N * Bt;
  egg::ReleaseGil release;
  parallel_for(items, std::max<std::size_t>(1, (1 << 16) / std::max<std::size_t>(1, O * P)), [&](std::size_t lo, std::size_t hi) {
    const auto row_kernel = kernels().epilogue_row;
    std::vector<float> t(std::max<std::size_t>(1, r));
    for (std::size_t item = lo; item < hi; ++item) {
      const std::size_t i = item / Bt, bb = item % Bt;
      const uint32_t key = keys != nullptr ? keys[i] : 0;
      const float* s = src.p + (src.dim(0) == 1 ? 0 : i) * src.stride[0] + bb * src.stride[1];
      const float* vb = a ? v.p + static_cast<std::ptrdiff_t>(v_index[i]) * v.stride[0] + static_cast<std::ptrdiff_t>(bb) * v.stride[1] : nullptr;
      for (std::size_t o = 0; o < O; ++o) {
        RowEpilogue e{};
        e.src = s + static_cast<std::ptrdiff_t>(o) * src.stride[2];
        e.src_stride = src.stride[3];
        e.n = P;
        if (a) {
          const float c = coef.p[i];
          const float* ao = a.p + (static_cast<std::size_t>(key) * O + o) * r;
          for (std::size_t q = 0; q < r; ++q) t[q] = c * ao[q];
          e.t = t.data(), e.r = r, e.v = vb, e.vj = v.stride[3], e.vq = v.stride[2];
        }
        float bs = bias ? bias.p[o] : 0.0f;
        if (bias_noise) bs += bias_coef.p[i] * bias_noise.p[static_cast<std::size_t>(key) * O + o];
        e.bias_s = bs;
        e.act = act;
        e.out = out.p + ((i * Bt + bb) * O + o) * P;
        row_kernel(e);
      }
    }
  });
}

}  // namespace

void register_layer_bindings(py::module_& m) {
  m.def("linear_epilogue", &linear_epilogue, py::arg("out"), py::arg("base"), py::arg("x"),
        py::arg("a"), py::arg("xa"), py::arg("xa_rows"), py::arg("b"), py::arg("keys"),
        py::arg("coef"), py::arg("bias"), py::arg("bias_noise"), py::arg("bias_coef"),
        py::arg("act"),
        "The population linear layer's one pass over out (N, rows, n): act(base or out + "
        "coef_i * t_ij @ b[keys[i]].T + bias + bias_coef_i * bias_noise[keys[i]]), t_ij = "
        "x[i, j] @ a[keys[i]] or xa[xa_rows[i], j]; None for absent parts.");
  m.def("conv_epilogue", &conv_epilogue, py::arg("out"), py::arg("src"), py::arg("a"),
        py::arg("v"), py::arg("v_index"), py::arg("keys"), py::arg("coef"), py::arg("bias"),
        py::arg("bias_noise"), py::arg("bias_coef"), py::arg("act"),
        "The population conv2d's one pass over out (N, Bt, O, P): act(src + coef_i * "
        "a[keys[i]][o] . v[v_index[i], b] + bias[o] + bias_coef_i * bias_noise[keys[i], o]); "
        "src (1 or N, Bt, O, P) and v (X, Bt, r, P) may have any strides.");
}

}  // namespace egg
