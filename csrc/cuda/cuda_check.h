// cuda_check.h: turns CUDA runtime errors into C++ exceptions (pybind11 makes them RuntimeError).
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace egg_cuda {

// cudaErrorInsufficientDriver / cudaErrorNoDevice mean "this machine has no usable GPU":
// report that plainly instead of the runtime's terse text.
inline void check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  cudaGetLastError();  // clear the sticky error where possible
  if (err == cudaErrorInsufficientDriver || err == cudaErrorNoDevice) {
    throw std::runtime_error(std::string("no CUDA device: ") + what + " failed (" +
                             cudaGetErrorString(err) + ")");
  }
  throw std::runtime_error(std::string(what) + " failed: " + cudaGetErrorString(err));
}

}  // namespace egg_cuda
