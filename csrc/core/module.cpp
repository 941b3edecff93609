// module.cpp: the eggroll_np._core module. The bindings live by concern (noise_bindings.cpp,
// update_bindings.cpp, layer_bindings.cpp, int8_bindings.cpp) over the threaded drivers (drivers.cpp); this file
// registers them and holds the process-wide controls: SIMD level, threads, malloc tuning.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstddef>
#include <string>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "core/gil.h"
#include "core/kernels.h"
#include "core/parallel.h"

namespace py = pybind11;

namespace egg {
void register_noise_bindings(py::module_& m);   // noise_bindings.cpp
void register_update_bindings(py::module_& m);  // update_bindings.cpp
void register_layer_bindings(py::module_& m);   // layer_bindings.cpp
void register_int8_bindings(py::module_& m);    // int8_bindings.cpp
void register_array_cache(py::module_& m);      // array_cache.cpp
}  // namespace egg

PYBIND11_MODULE(_core, m) {
  m.doc() = "eggroll_np's C++ core: Philox4x32-10 noise, population layers, update (SIMD, threaded)";
  egg::register_noise_bindings(m);
  egg::register_update_bindings(m);
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
  egg::register_array_cache(m);
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
