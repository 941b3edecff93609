// module.cpp: pybind11 bindings of eggroll_np._core. Python validates arguments; this layer checks
// buffers (dtype, shape, contiguity), releases the GIL and calls the dispatched kernels.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "core/kernels.h"
#include "core/parallel.h"

namespace py = pybind11;

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
    py::gil_scoped_release release;
    egg::parallel_for(n, 1 << 16, [&](std::size_t b, std::size_t e) {
      egg::kernels().philox_blocks(in + 4 * b, e - b, k0, k1, dst + 4 * b);
    });
  }
  return out;
}

// out[i, :] = normals [offset, offset + count) of stream (leaf, member_keys[i], epoch).
void fill_normals(uint64_t seed, uint32_t leaf, const U32Array& member_keys, uint32_t epoch,
                  uint64_t offset, py::array out_obj) {
  if (!py::isinstance<F32Array>(out_obj) || !(out_obj.flags() & py::array::c_style) ||
      !out_obj.writeable()) {
    throw py::type_error("out must be a writeable C-contiguous float32 array");
  }
  auto out = py::reinterpret_borrow<F32Array>(out_obj);
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
  py::gil_scoped_release release;
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

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "eggroll_np's C++ core: Philox4x32-10 noise (SIMD, multithreaded)";
  m.def("philox4x32_10", &philox, py::arg("counters"), py::arg("key"),
        "Philox4x32-10 of uint32 counters (n, 4) under key (2,) -> uint32 (n, 4).");
  m.def("fill_normals", &fill_normals, py::arg("seed"), py::arg("leaf"), py::arg("member_keys"),
        py::arg("epoch"), py::arg("offset"), py::arg("out"),
        "Write normals [offset, offset + out.shape[1]) of each member's stream into out (float32).");
  m.def("simd_level", [] { return std::string(egg::kernels().name); },
        "Instruction set of the kernels chosen for this processor.");
  m.def("num_threads", &egg::num_threads, "Threads the parallel kernels use.");
  m.def("set_num_threads", &egg::set_num_threads, py::arg("n"),
        "Set the kernels' thread count (n <= 0 restores the default).");
#ifdef VERSION_INFO
#define EGG_STR(x) #x
#define EGG_XSTR(x) EGG_STR(x)
  m.attr("__version__") = EGG_XSTR(VERSION_INFO);
#endif
}
