// module.cu: pybind11 bindings of eggroll_np._cuda. Arguments are raw device pointers (ints)
// taken from CuPy arrays by the Python layer, plus CuPy's current stream handle.
#include <pybind11/pybind11.h>

#include <pybind11/stl.h>

#include <cstdint>
#include <vector>

#include "core/gil.h"
#include "cuda/pointers.h"
#include "cuda/contract.cuh"
#include "cuda/cuda_check.h"
#include "cuda/lowrank.cuh"
#include "cuda/noise.cuh"
#include "cuda/optim.cuh"

namespace py = pybind11;

namespace egg_cuda {
void register_layer_bindings(py::module_& m);  // layer_bindings.cu
void register_int8_bindings(py::module_& m);   // int8_bindings.cu
}  // namespace egg_cuda

using egg_cuda::ptr;
using egg_cuda::stream_of;

namespace {

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
  egg_cuda::register_layer_bindings(m);
  egg_cuda::register_int8_bindings(m);
  m.def("device_count", &device_count, "Number of usable CUDA devices (0 without a driver/GPU).");
  m.def("device_info", &device_info, py::arg("device") = 0, "Name and properties of a device.");
  m.def(
      "philox4x32_10",
      [](std::uintptr_t counters, std::size_t n, uint32_t k0, uint32_t k1, std::uintptr_t out,
         std::uintptr_t stream) {
        egg::ReleaseGil release;  // safe at exit (core/gil.h)
        egg_cuda::philox_blocks(ptr<const uint32_t>(counters), n, k0, k1, ptr<uint32_t>(out),
                                stream_of(stream));
      },
      py::arg("counters"), py::arg("n"), py::arg("k0"), py::arg("k1"), py::arg("out"),
      py::arg("stream"));
  m.def(
      "fill_normals",
      [](uint64_t seed, uint32_t leaf, std::uintptr_t member_keys, uint32_t epoch, uint64_t offset,
         std::size_t rows, std::size_t count, std::uintptr_t out, std::uintptr_t stream) {
        // The one-request case of fill_normals_many (one kernel for both).
        egg::ReleaseGil release;  // safe at exit (core/gil.h)
        egg_cuda::fill_normals_many(seed, epoch, ptr<const uint32_t>(member_keys), rows, {leaf},
                                    {offset}, {static_cast<uint64_t>(count)}, {ptr<float>(out)},
                                    stream_of(stream));
      },
      py::arg("seed"), py::arg("leaf"), py::arg("member_keys"), py::arg("epoch"),
      py::arg("offset"), py::arg("rows"), py::arg("count"), py::arg("out"), py::arg("stream"));
  m.def(
      "fill_normals_many",
      [](uint64_t seed, uint32_t epoch, std::uintptr_t member_keys, std::size_t rows,
         const std::vector<uint32_t>& leaves, const std::vector<uint64_t>& offsets,
         const std::vector<uint64_t>& counts, const std::vector<std::uintptr_t>& outs,
         std::uintptr_t stream) {
        std::vector<float*> out_ptrs;
        out_ptrs.reserve(outs.size());
        for (const auto p : outs) out_ptrs.push_back(ptr<float>(p));
        egg::ReleaseGil release;  // safe at exit (core/gil.h)
        egg_cuda::fill_normals_many(seed, epoch, ptr<const uint32_t>(member_keys), rows, leaves,
                                    offsets, counts, out_ptrs, stream_of(stream));
      },
      py::arg("seed"), py::arg("epoch"), py::arg("member_keys"), py::arg("rows"),
      py::arg("leaves"), py::arg("offsets"), py::arg("counts"), py::arg("outs"),
      py::arg("stream"),
      "Several fill_normals requests for the same member keys and epoch, one launch per 32 "
      "requests (outs[j]: (rows, counts[j]) float32 device pointers).");
  m.def(
      "lowrank_correction",
      [](std::uintptr_t x, int x_dtype, bool x_per_member, std::uintptr_t left,
         std::uintptr_t right, std::uintptr_t keys, std::uintptr_t coef, std::size_t members,
         std::size_t batch, std::size_t rows_left, std::size_t rows_right, std::size_t rank,
         std::size_t num_keys, std::uintptr_t xa, std::uintptr_t base, std::uintptr_t out,
         std::uintptr_t stream) {
        if (x_dtype != static_cast<int>(egg_cuda::XType::kFloat32) &&
            x_dtype != static_cast<int>(egg_cuda::XType::kFloat16)) {
          throw py::value_error("x_dtype must be 0 (float32) or 1 (float16)");
        }
        const egg_cuda::LowrankShape shape{members, batch, rows_left, rows_right, rank, num_keys};
        egg::ReleaseGil release;  // safe at exit (core/gil.h)
        egg_cuda::lowrank_correction(
            ptr<const void>(x), static_cast<egg_cuda::XType>(x_dtype), x_per_member,
            ptr<const float>(left), ptr<const float>(right), ptr<const uint32_t>(keys),
            ptr<const float>(coef), shape, ptr<float>(xa), ptr<const float>(base), ptr<float>(out),
            stream_of(stream));
      },
      py::arg("x"), py::arg("x_dtype"), py::arg("x_per_member"), py::arg("left"),
      py::arg("right"), py::arg("keys"), py::arg("coef"), py::arg("members"), py::arg("batch"),
      py::arg("rows_left"), py::arg("rows_right"), py::arg("rank"), py::arg("num_keys"),
      py::arg("xa"), py::arg("base"), py::arg("out"), py::arg("stream"),
      "out[i, b, :] (+)= coef[i] * (x_i[b] @ left[keys[i]].T) @ right[keys[i]] on raw device "
      "pointers, left (K, r, m) and right (K, r, n) rank-major (base = 0: accumulate into out; "
      "else out = base[b] + correction).");
  m.def(
      "contract",
      [](std::uintptr_t left, std::uintptr_t right, std::uintptr_t w, std::size_t keys,
         std::size_t rank, std::size_t m, std::size_t n, std::uintptr_t out, int tile,
         std::uintptr_t stream) {
        egg::ReleaseGil release;  // safe at exit (core/gil.h)
        return egg_cuda::contract(ptr<const float>(left), ptr<const float>(right),
                                  ptr<const float>(w), {keys, rank, m, n}, ptr<float>(out), tile,
                                  stream_of(stream));
      },
      py::arg("left"), py::arg("right"), py::arg("w"), py::arg("keys"), py::arg("rank"),
      py::arg("m"), py::arg("n"), py::arg("out"), py::arg("tile"), py::arg("stream"),
      "out (m, n) = sum over (k, q) in order of fmaf(w[k] * left[k, q, :], right[k, q, :]) on raw "
      "device pointers, left (K, r, m) and right (K, r, n) rank-major: the C++ core's contract "
      "bits. tile 0 picks one (1: the column kernel; 32, 64, 128: the tiled kernel); returns the "
      "tile that ran. A bad tile raises ValueError.");
  m.def("adam_partials", &egg_cuda::adam_partials, py::arg("n"),
        "Doubles of scratch adam_step needs for n values (its last entry: the squared norm).");
  m.def(
      "adam_step",
      [](std::uintptr_t theta, std::uintptr_t g, std::uintptr_t mu, std::uintptr_t nu,
         std::size_t n, double lr, double b1, double b2, double eps, double wd, int64_t count,
         std::uintptr_t theta_out, std::uintptr_t mu_out, std::uintptr_t nu_out,
         std::uintptr_t partials, std::uintptr_t stream) {
        const egg::AdamScalars s = egg::adam_scalars(lr, b1, b2, eps, wd, count);
        egg::ReleaseGil release;  // safe at exit (core/gil.h)
        egg_cuda::adam_step(ptr<const float>(theta), ptr<const float>(g), ptr<const float>(mu),
                            ptr<const float>(nu), n, s, ptr<float>(theta_out), ptr<float>(mu_out),
                            ptr<float>(nu_out), ptr<double>(partials), stream_of(stream));
      },
      py::arg("theta"), py::arg("g"), py::arg("mu"), py::arg("nu"), py::arg("n"), py::arg("lr"),
      py::arg("b1"), py::arg("b2"), py::arg("eps"), py::arg("wd"), py::arg("count"),
      py::arg("theta_out"), py::arg("mu_out"), py::arg("nu_out"), py::arg("partials"),
      py::arg("stream"),
      "One Adam step on n float32 values (device pointers): the C++ core's adam_step bits in "
      "theta_out, mu_out and nu_out; partials (adam_partials(n) doubles) ends with the step's "
      "squared norm.");
}
