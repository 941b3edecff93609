// module.cu: pybind11 bindings of eggroll_np._cuda. Arguments are raw device pointers (ints)
// taken from CuPy arrays by the Python layer, plus CuPy's current stream handle.
#include <pybind11/pybind11.h>

#include <cstdint>

#include "cuda/cuda_check.h"
#include "cuda/noise.cuh"

namespace py = pybind11;

namespace {

template <class T>
T* ptr(std::uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

cudaStream_t stream_of(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

int device_count() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

py::dict device_info(int device) {
  cudaDeviceProp prop{};
  egg_cuda::check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  py::dict d;
  d["name"] = std::string(prop.name);
  d["compute_capability"] = py::make_tuple(prop.major, prop.minor);
  d["multiprocessors"] = prop.multiProcessorCount;
  d["total_memory"] = static_cast<std::size_t>(prop.totalGlobalMem);
  return d;
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "eggroll_np's CUDA core: Philox noise and low-rank population kernels";
  m.def("device_count", &device_count, "Number of usable CUDA devices (0 without a driver/GPU).");
  m.def("device_info", &device_info, py::arg("device") = 0, "Name and properties of a device.");
  m.def(
      "philox4x32_10",
      [](std::uintptr_t counters, std::size_t n, uint32_t k0, uint32_t k1, std::uintptr_t out,
         std::uintptr_t stream) {
        py::gil_scoped_release release;
        egg_cuda::philox_blocks(ptr<const uint32_t>(counters), n, k0, k1, ptr<uint32_t>(out),
                                stream_of(stream));
      },
      py::arg("counters"), py::arg("n"), py::arg("k0"), py::arg("k1"), py::arg("out"),
      py::arg("stream"));
  m.def(
      "fill_normals",
      [](uint64_t seed, uint32_t leaf, std::uintptr_t member_keys, uint32_t epoch, uint64_t offset,
         std::size_t rows, std::size_t count, std::uintptr_t out, std::uintptr_t stream) {
        py::gil_scoped_release release;
        egg_cuda::fill_normals(seed, leaf, ptr<const uint32_t>(member_keys), epoch, offset, rows,
                               count, ptr<float>(out), stream_of(stream));
      },
      py::arg("seed"), py::arg("leaf"), py::arg("member_keys"), py::arg("epoch"),
      py::arg("offset"), py::arg("rows"), py::arg("count"), py::arg("out"), py::arg("stream"));
}
