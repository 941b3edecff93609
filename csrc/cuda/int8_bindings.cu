// int8_bindings.cu: pybind11 bindings of the integer leaves' kernels in eggroll_np._cuda. Arguments
// are raw device pointers (0 for an absent operand) and sizes from eggroll_np._cuda_int8, which
// validates them and allocates the workspaces (int8.cuh says how large).
#include <pybind11/pybind11.h>

#include <cstdint>

#include "cuda/pointers.h"
#include "cuda/int8.cuh"

namespace py = pybind11;

namespace egg_cuda {

namespace {
void check_shift(int s, const char* name) {
  if (s < 0 || s > 62) throw py::value_error(std::string(name) + " must be in [0, 62]");
}

// The layer's terms from the bindings' flat arguments.
Int8Terms terms(std::uintptr_t out, std::size_t N, std::size_t B, std::size_t n, std::size_t X,
                bool w_per_member, std::uintptr_t xa, std::uintptr_t right, std::size_t K,
                std::size_t r, std::uintptr_t keys, std::uintptr_t signs, int lr_shift,
                std::uintptr_t bias, bool bias_per_member, std::uintptr_t bias_noise,
                int bias_shift, int out_shift, bool relu) {
  check_shift(lr_shift, "lr_shift");
  check_shift(bias_shift, "bias_shift");
  check_shift(out_shift, "out_shift");
  return Int8Terms{ptr<int8_t>(out),        N, B, n, X, w_per_member, ptr<const int32_t>(xa),
                   ptr<const int8_t>(right), K, r, ptr<const uint32_t>(keys),
                   ptr<const int8_t>(signs), lr_shift, ptr<const int8_t>(bias), bias_per_member,
                   ptr<const int8_t>(bias_noise), bias_shift, out_shift, relu};
}
}  // namespace

void register_int8_bindings(py::module_& m) {
  m.def("int8_packed_rows", &int8_packed_rows, py::arg("rows"), py::arg("k"),
        "Bytes of one packed block of the GEMM's left operand (rows x depth k): a workspace size.");
  m.def("int8_packed_cols", &int8_packed_cols, py::arg("cols"), py::arg("k"),
        "Bytes of one packed block of the GEMM's right operand (depth k x cols).");
  m.def(
      "int8_gemm",
      [](std::uintptr_t x, std::uintptr_t w, std::uintptr_t out, std::size_t M, std::size_t K,
         std::size_t N, std::uintptr_t work_a, std::uintptr_t work_b, std::uintptr_t stream) {
        py::gil_scoped_release release;
        int8_gemm(ptr<const int8_t>(x), ptr<const int8_t>(w), ptr<int32_t>(out), M, K, N,
                  ptr<int8_t>(work_a), ptr<int8_t>(work_b), stream_of(stream));
      },
      py::arg("x"), py::arg("w"), py::arg("out"), py::arg("M"), py::arg("K"), py::arg("N"),
      py::arg("work_a"), py::arg("work_b"), py::arg("stream"),
      "out int32 (M, N) = x int8 (M, K) @ w int8 (K, N) on the tensor cores; work_a "
      "int8_packed_rows(M, K) and work_b int8_packed_cols(N, K) bytes.");
  m.def(
      "int8_linear",
      [](std::uintptr_t x, std::uintptr_t w, std::uintptr_t a, std::size_t m, std::uintptr_t out,
         std::size_t N, std::size_t B, std::size_t n, std::size_t X, bool w_per_member,
         std::uintptr_t right, std::size_t K, std::size_t r, std::uintptr_t keys,
         std::uintptr_t signs, int lr_shift, std::uintptr_t bias, bool bias_per_member,
         std::uintptr_t bias_noise, int bias_shift, int out_shift, bool relu,
         std::uintptr_t work_a, std::uintptr_t work_b, std::uintptr_t work_xa,
         std::uintptr_t stream) {
        const Int8Terms t = terms(out, N, B, n, X, w_per_member, 0, right, K, r, keys, signs,
                                  lr_shift, bias, bias_per_member, bias_noise, bias_shift,
                                  out_shift, relu);
        py::gil_scoped_release release;
        int8_linear(ptr<const int8_t>(x), ptr<const int8_t>(w), ptr<const int8_t>(a), m, t,
                    ptr<int8_t>(work_a), ptr<int8_t>(work_b), ptr<int32_t>(work_xa),
                    stream_of(stream));
      },
      py::arg("x"), py::arg("w"), py::arg("a"), py::arg("m"), py::arg("out"), py::arg("N"),
      py::arg("B"), py::arg("n"), py::arg("X"), py::arg("w_per_member"), py::arg("b"),
      py::arg("K"), py::arg("r"), py::arg("keys"), py::arg("signs"), py::arg("lr_shift"),
      py::arg("bias"), py::arg("bias_per_member"), py::arg("bias_noise"), py::arg("bias_shift"),
      py::arg("out_shift"), py::arg("relu"), py::arg("work_a"), py::arg("work_b"),
      py::arg("work_xa"), py::arg("stream"),
      "The fused integer population linear layer (_core.int8_linear's formula) on raw device "
      "pointers: one tensor-core GEMM whose epilogue writes out int8 (N, B, n).");
  m.def(
      "int8_epilogue",
      [](std::uintptr_t out, std::uintptr_t acc, bool acc_per_member, std::uintptr_t xa,
         std::uintptr_t xa_rows, std::size_t xa_count, std::uintptr_t right, std::size_t K,
         std::size_t r, std::uintptr_t keys, std::uintptr_t signs, std::uintptr_t bias,
         bool bias_per_member, int shift_lr, int shift_out, bool relu, std::size_t N,
         std::size_t B, std::size_t n, std::uintptr_t stream) {
        const Int8Terms t = terms(out, N, B, n, 0, false, xa, right, K, r, keys, signs, shift_lr,
                                  bias, bias_per_member, 0, 0, shift_out, relu);
        py::gil_scoped_release release;
        int8_epilogue(ptr<const int32_t>(acc), acc_per_member, ptr<const uint32_t>(xa_rows),
                      xa_count, t, stream_of(stream));
      },
      py::arg("out"), py::arg("acc"), py::arg("acc_per_member"), py::arg("xa"),
      py::arg("xa_rows"), py::arg("xa_count"), py::arg("right"), py::arg("K"), py::arg("r"),
      py::arg("keys"), py::arg("signs"), py::arg("bias"), py::arg("bias_per_member"),
      py::arg("shift_lr"), py::arg("shift_out"), py::arg("relu"), py::arg("N"), py::arg("B"),
      py::arg("n"), py::arg("stream"),
      "_core.int8_epilogue on raw device pointers.");
  m.def(
      "int8_xa",
      [](std::uintptr_t x, std::size_t X, std::uintptr_t a, std::uintptr_t keys, std::size_t N,
         std::size_t K, std::size_t B, std::size_t m, std::size_t r, std::uintptr_t xa,
         std::uintptr_t stream) {
        py::gil_scoped_release release;
        int8_xa(ptr<const int8_t>(x), X, ptr<const int8_t>(a), ptr<const uint32_t>(keys), N, K,
                B, m, r, ptr<int32_t>(xa), stream_of(stream));
      },
      py::arg("x"), py::arg("X"), py::arg("a"), py::arg("keys"), py::arg("N"), py::arg("K"),
      py::arg("B"), py::arg("m"), py::arg("r"), py::arg("xa"), py::arg("stream"),
      "xa int32 (N, B, r) = x[(i or 0)] @ a[keys[i]] on raw device pointers.");
  m.def(
      "int8_contract",
      [](std::uintptr_t a, std::uintptr_t b, std::uintptr_t c, std::size_t K, std::size_t m,
         std::size_t n, std::size_t r, std::uintptr_t z, std::uintptr_t q, long long tau,
         std::uintptr_t q_out, std::uintptr_t work_a, std::uintptr_t work_b,
         std::uintptr_t stream) {
        py::gil_scoped_release release;
        int8_contract(ptr<const int8_t>(a), ptr<const int8_t>(b), ptr<const int8_t>(c), K, m, n,
                      r, ptr<int32_t>(z), ptr<const int8_t>(q), tau, ptr<int8_t>(q_out),
                      ptr<int8_t>(work_a), ptr<int8_t>(work_b), stream_of(stream));
      },
      py::arg("a"), py::arg("b"), py::arg("c"), py::arg("K"), py::arg("m"), py::arg("n"),
      py::arg("r"), py::arg("z"), py::arg("q"), py::arg("tau"), py::arg("q_out"),
      py::arg("work_a"), py::arg("work_b"), py::arg("stream"),
      "z int32 (m, n) = sum_k c[k] a[k] @ b[k].T (q = 0), or q_out = clip(q + sign(z) * "
      "(|z| >= tau)); work_a int8_packed_rows(m, K * r), work_b int8_packed_cols(n, K * r) bytes.");
}

}  // namespace egg_cuda
