// dispatch.cpp: picks the best compiled kernel set for this processor.
#include <map>
#include <string>
#include <vector>

#include "core/kernels.h"

namespace egg {

namespace {
KernelTable table_for(const std::string& name) {
#if defined(EGG_HAVE_AVX512)
  if (name == "avx512") {
    return {"avx512", &avx512::philox_blocks, &avx512::fill_normals, &avx512::lowrank_project,
            &avx512::lowrank_expand, &avx512::adam_step, avx512::contract_rows, avx512::contract_cols_f32,
            avx512::contract_cols_f64, &avx512::contract_tile_f32, &avx512::contract_tile_f64};
  }
#endif
#if defined(EGG_HAVE_AVX2)
  if (name == "avx2") {
    return {"avx2", &avx2::philox_blocks, &avx2::fill_normals, &avx2::lowrank_project,
            &avx2::lowrank_expand, &avx2::adam_step, avx2::contract_rows, avx2::contract_cols_f32,
            avx2::contract_cols_f64, &avx2::contract_tile_f32, &avx2::contract_tile_f64};
  }
#endif
  return {"baseline", &baseline::philox_blocks, &baseline::fill_normals,
          &baseline::lowrank_project, &baseline::lowrank_expand, &baseline::adam_step,
          baseline::contract_rows, baseline::contract_cols_f32, baseline::contract_cols_f64, &baseline::contract_tile_f32,
          &baseline::contract_tile_f64};
}

bool cpu_supports(const std::string& name) {
  if (name == "baseline") return true;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  const auto& reqs = simd_requirements();
  const auto it = reqs.find(name);
  if (it == reqs.end()) return false;
  // __builtin_cpu_supports needs a literal, so the table's names are matched here one by one.
  for (const auto& feature : it->second) {
    bool ok = false;
    if (feature == "avx2") ok = __builtin_cpu_supports("avx2");
    else if (feature == "fma") ok = __builtin_cpu_supports("fma");
    else if (feature == "f16c") ok = __builtin_cpu_supports("f16c");
    else if (feature == "avx512f") ok = __builtin_cpu_supports("avx512f");
    else if (feature == "avx512dq") ok = __builtin_cpu_supports("avx512dq");
    else if (feature == "avx512vl") ok = __builtin_cpu_supports("avx512vl");
    else if (feature == "avx512bw") ok = __builtin_cpu_supports("avx512bw");
    if (!ok) return false;
  }
  return true;
#else
  return false;
#endif
}

KernelTable make_table() { return table_for(available_levels().front()); }  // best first

}  // namespace

// The processor features each level's objects are compiled for (CMakeLists.txt's EGG_FLAGS_*):
// every one is checked at run time before the level is chosen, since executing an instruction the
// processor lacks (an F16C conversion on an AVX2 part without F16C) is SIGILL, not an error.
const std::map<std::string, std::vector<std::string>>& simd_requirements() {
  static const std::map<std::string, std::vector<std::string>> reqs = {
      {"avx2", {"avx2", "fma", "f16c"}},
      {"avx512", {"avx512f", "avx512dq", "avx512vl", "avx512bw", "fma"}},
  };
  return reqs;
}

std::vector<std::string> available_levels() {
  std::vector<std::string> out;
#if defined(EGG_HAVE_AVX512)
  if (cpu_supports("avx512")) out.push_back("avx512");
#endif
#if defined(EGG_HAVE_AVX2)
  if (cpu_supports("avx2")) out.push_back("avx2");
#endif
  out.push_back("baseline");
  return out;
}

namespace {
KernelTable& current_table() {
  static KernelTable table = make_table();
  return table;
}
}  // namespace

const KernelTable& kernels() { return current_table(); }

bool set_simd_level(const std::string& name) {
  for (const auto& level : available_levels()) {
    if (level == name) {
      current_table() = table_for(name);
      return true;
    }
  }
  return false;
}

}  // namespace egg
