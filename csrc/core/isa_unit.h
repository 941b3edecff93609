// isa_unit.h: the shared preamble of every per-ISA kernel translation unit (*_kernels.cpp).
//
// Each such file is compiled once per instruction set with EGG_ISA naming it (CMakeLists.txt);
// include this first among the project headers (it declares this ISA's entry points), then open
// `namespace egg { namespace EGG_ISA {`.
#pragma once

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#ifndef EGG_ISA
#error "EGG_ISA must name the instruction set this file is compiled for"
#endif

#include "core/kernels.h"

// The entry points of this ISA's namespace (isa_table.cpp puts them in the table).
namespace egg {
EGG_DECLARE_ISA(EGG_ISA)
}  // namespace egg
