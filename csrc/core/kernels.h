// kernels.h: the kernel table every instruction set fills in (isa_table.cpp), and the dispatcher.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "adam.h"  // AdamScalars
#include "core/epilogue.h"
#include "core/int8.h"

namespace egg {

// One set of kernels, compiled once per instruction set (CMakeLists.txt's EGG_KERNEL_TARGETS,
// the one list of them): each ISA's isa_table.cpp fills one in and registers it at load.
struct KernelTable {
  const char* name;
  // Preference: the higher, the better (the ISA's place in EGG_KERNEL_TARGETS).
  int rank;
  // The processor features (GCC's __builtin_cpu_supports names) the objects are compiled for,
  // null-terminated: every one is checked at run time before the table is used.
  const char* const* features;
  // Philox4x32-10 over n arbitrary counters (n x 4, row-major) into out (n x 4).
  void (*philox_blocks)(const uint32_t* counters, std::size_t n, uint32_t k0, uint32_t k1,
                        uint32_t* out);
  // Normals [offset, offset + count) of stream (leaf, member_key, epoch) into out.
  void (*fill_normals)(uint64_t seed, uint32_t leaf, uint32_t member_key, uint32_t epoch,
                       uint64_t offset, std::size_t count, float* out);
  // xa (rows x r) = x (rows x m) @ a (m x r), all row-major.
  void (*lowrank_project)(const float* x, std::size_t rows, std::size_t m, const float* a,
                          std::size_t r, float* xa);
  // out (rows x n) += coef * xa (rows x r) @ b^T, b (n x r) row-major.
  void (*lowrank_expand)(const float* xa, std::size_t rows, std::size_t r, const float* b,
                         std::size_t n, float coef, float* out);
  // One Adam step over n elements; outputs may not alias inputs. Returns the squared norm of
  // theta_out - theta.
  double (*adam_step)(const float* theta, const float* g, const float* mu, const float* nu,
                    std::size_t n, const AdamScalars& s, float* theta_out, float* mu_out,
                    float* nu_out);
  // Rows of one contraction tile, and its columns for float32 / float64 (whole vectors).
  std::size_t contract_rows, contract_cols_f32, contract_cols_f64;
  // out[i * ldo + j] (i < rows, j < cols = contract_cols_*) = s + sum over p in [0, np) IN
  // ORDER of a[p * rows + i] * q[p * ldq + j], s = 0 or (from != nullptr) from[i * ldf + j]
  // (the sums an earlier block stored; from may be out); float32 one FMA per term, float64
  // product and sum rounded on their own, at every level alike: the bits do not depend on the
  // instruction set. rows is 1 or contract_rows.
  void (*contract_tile_f32)(const float* a, std::size_t rows, const float* q, std::size_t ldq,
                            std::size_t np, const float* from, std::size_t ldf, float* out,
                            std::size_t ldo);
  void (*contract_tile_f64)(const double* a, std::size_t rows, const double* q, std::size_t ldq,
                            std::size_t np, const double* from, std::size_t ldf, double* out,
                            std::size_t ldo);
  // One output row of the population layers' fused pass (epilogue.h).
  void (*epilogue_row)(const RowEpilogue& a);
  // The integer leaves' GEMM, packing and row epilogue (int8.h).
  const Int8Kernels* int8;
};

// Adds an ISA's table (called once per ISA at load, from its isa_table.cpp).
void register_kernels(const KernelTable& table);

#define EGG_DECLARE_ISA(isa)                                                                  \
  namespace isa {                                                                             \
  void philox_blocks(const uint32_t* counters, std::size_t n, uint32_t k0, uint32_t k1,       \
                     uint32_t* out);                                                          \
  void fill_normals(uint64_t seed, uint32_t leaf, uint32_t member_key, uint32_t epoch,        \
                    uint64_t offset, std::size_t count, float* out);                          \
  void lowrank_project(const float* x, std::size_t rows, std::size_t m, const float* a,       \
                       std::size_t r, float* xa);                                             \
  void lowrank_expand(const float* xa, std::size_t rows, std::size_t r, const float* b,       \
                      std::size_t n, float coef, float* out);                                 \
  double adam_step(const float* theta, const float* g, const float* mu, const float* nu,      \
                 std::size_t n, const AdamScalars& s, float* theta_out, float* mu_out,        \
                 float* nu_out);                                                              \
  extern const std::size_t contract_rows, contract_cols_f32, contract_cols_f64;               \
  void contract_tile_f32(const float* a, std::size_t rows, const float* q, std::size_t ldq,   \
                         std::size_t np, const float* from, std::size_t ldf, float* out,      \
                         std::size_t ldo);                                                    \
  void contract_tile_f64(const double* a, std::size_t rows, const double* q, std::size_t ldq, \
                         std::size_t np, const double* from, std::size_t ldf, double* out,    \
                         std::size_t ldo);                                                    \
  void epilogue_row(const RowEpilogue& a);                                                    \
  extern const Int8Kernels int8_kernels;                                                      \
  }

// The kernel table in use (the best this processor supports unless set_simd_level chose one).
const KernelTable& kernels();
// Instruction sets this build has and this processor supports, best first.
std::vector<std::string> available_levels();
// Processor features (GCC's __builtin_cpu_supports names) each compiled SIMD level needs.
const std::map<std::string, std::vector<std::string>>& simd_requirements();
// Switch kernels (for tests and benchmarks); false if `name` is not available. Not thread-safe
// against kernels running at the same time.
bool set_simd_level(const std::string& name);

}  // namespace egg
