// buffers.h: the buffer types and checks the bindings share. Python validates arguments; the
// bindings check only what the kernels rely on (dtype, shape, contiguity, writeability).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>

namespace egg {

namespace py = pybind11;

using U32Array = py::array_t<uint32_t, py::array::c_style>;
using F32Array = py::array_t<float, py::array::c_style>;

// `out` as a writeable C-contiguous float32 array, or TypeError (never a silent copy: the caller
// reads its results from the array it passed).
inline F32Array writable_out(const py::handle& out_obj) {
  if (!py::isinstance<F32Array>(out_obj) ||
      !(py::reinterpret_borrow<py::array>(out_obj).flags() & py::array::c_style) ||
      !py::reinterpret_borrow<py::array>(out_obj).writeable()) {
    throw py::type_error("out must be a writeable C-contiguous float32 array");
  }
  return py::reinterpret_borrow<F32Array>(out_obj);
}

}  // namespace egg
