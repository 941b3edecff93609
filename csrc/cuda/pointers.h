// pointers.h: what the CUDA bindings take from Python, as C++: device pointers and streams arrive
// as integers (CuPy's `.data.ptr` and `Stream.ptr`; validated on the Python side).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace egg_cuda {

template <class T>
inline T* ptr(std::uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

inline cudaStream_t stream_of(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

}  // namespace egg_cuda
