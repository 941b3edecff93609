// thread_index.h: CUDA's built-in thread and block indices as host thread-locals, for the emulator.
//
// Included by the emulator (host_emulation.cpp) before the kernel sources: the kernels read
// threadIdx/blockIdx/blockDim/gridDim, which on the CPU become per-thread variables that the
// emulator's launch loop sets before running each CUDA thread.
#pragma once

#include <cuda_runtime.h>

thread_local uint3 emu_threadIdx, emu_blockIdx;
thread_local dim3 emu_blockDim, emu_gridDim;
#define threadIdx emu_threadIdx
#define blockIdx emu_blockIdx
#define blockDim emu_blockDim
#define gridDim emu_gridDim
