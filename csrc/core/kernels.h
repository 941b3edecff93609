// kernels.h: the per-instruction-set kernel entry points (one namespace per ISA) and the dispatcher.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace egg {

// Scalars of one Adam step, precomputed once per call (bias corrections as reciprocals).
struct AdamScalars {
  float lr, b1, b2, one_minus_b1, one_minus_b2, inv_bc1, inv_bc2, eps, wd;
};

// One set of kernels, compiled once per instruction set (see CMakeLists.txt).
struct KernelTable {
  const char* name;
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
};

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
  }

EGG_DECLARE_ISA(baseline)
EGG_DECLARE_ISA(avx2)
EGG_DECLARE_ISA(avx512)

// The kernel table in use (the best this processor supports unless set_simd_level chose one).
const KernelTable& kernels();
// Instruction sets this build has and this processor supports, best first.
std::vector<std::string> available_levels();
// Processor features (GCC's __builtin_cpu_supports names) each SIMD level needs at run time.
const std::map<std::string, std::vector<std::string>>& simd_requirements();
// Switch kernels (for tests and benchmarks); false if `name` is not available. Not thread-safe
// against kernels running at the same time.
bool set_simd_level(const std::string& name);

}  // namespace egg
