// isa_table.cpp: this instruction set's KernelTable, registered when _core loads; compiled once
// per ISA like the kernels, so adding an ISA to CMakeLists.txt's EGG_KERNEL_TARGETS is all it
// takes to offer it (no list of ISAs anywhere else).
#include "core/isa_unit.h"

#define EGG_STR_(x) #x
#define EGG_STR(x) EGG_STR_(x)

namespace egg {
namespace EGG_ISA {
namespace {

// What the compiler was told it may use here (CMakeLists.txt's EGG_FLAGS_*), read from its own
// predefined macros: the run-time check then cannot drift from the flags. Executing an
// instruction the processor lacks (an F16C conversion on an AVX2 part without F16C) is SIGILL,
// not an error.
constexpr const char* kFeatures[] = {
#if defined(__AVX__)
    "avx",
#endif
#if defined(__AVX2__)
    "avx2",
#endif
#if defined(__FMA__)
    "fma",
#endif
#if defined(__F16C__)
    "f16c",
#endif
#if defined(__AVX512F__)
    "avx512f",
#endif
#if defined(__AVX512DQ__)
    "avx512dq",
#endif
#if defined(__AVX512VL__)
    "avx512vl",
#endif
#if defined(__AVX512BW__)
    "avx512bw",
#endif
#if defined(__AVX512VNNI__)
    "avx512vnni",
#endif
    nullptr};

[[maybe_unused]] const bool registered = [] {
  register_kernels({EGG_STR(EGG_ISA), EGG_ISA_RANK, kFeatures, &philox_blocks, &fill_normals,
                    &lowrank_project, &lowrank_expand, &adam_step, contract_rows,
                    contract_cols_f32, contract_cols_f64, &contract_tile_f32, &contract_tile_f64,
                    &epilogue_row, &int8_kernels});
  return true;
}();

}  // namespace
}  // namespace EGG_ISA
}  // namespace egg
