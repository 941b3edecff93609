// dispatch.cpp: the registered kernel tables (one per compiled ISA), and the one in use: the best
// this processor supports unless set_simd_level chose another.
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "core/kernels.h"

namespace egg {

namespace {

std::vector<KernelTable>& registry() {  // best first; filled while _core loads
  static std::vector<KernelTable> tables;
  return tables;
}

bool cpu_has(const std::string& feature) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  // __builtin_cpu_supports needs a literal, so the names isa_table.cpp can list are matched here.
  if (feature == "avx") return __builtin_cpu_supports("avx");
  if (feature == "avx2") return __builtin_cpu_supports("avx2");
  if (feature == "fma") return __builtin_cpu_supports("fma");
  if (feature == "f16c") return __builtin_cpu_supports("f16c");
  if (feature == "avx512f") return __builtin_cpu_supports("avx512f");
  if (feature == "avx512dq") return __builtin_cpu_supports("avx512dq");
  if (feature == "avx512vl") return __builtin_cpu_supports("avx512vl");
  if (feature == "avx512bw") return __builtin_cpu_supports("avx512bw");
  if (feature == "avx512vnni") return __builtin_cpu_supports("avx512vnni");
#endif
  (void)feature;
  return false;  // a feature this file cannot check is taken as missing
}

bool cpu_supports(const KernelTable& table) {
  for (const char* const* f = table.features; *f != nullptr; ++f) {
    if (!cpu_has(*f)) return false;
  }
  return true;
}

KernelTable& current_table() {
  static KernelTable table = [] {
    for (const auto& t : registry()) {
      if (cpu_supports(t)) return t;
    }
    return registry().back();  // the baseline, which needs no feature
  }();
  return table;
}

}  // namespace

void register_kernels(const KernelTable& table) {
  auto& tables = registry();
  const auto at = std::find_if(tables.begin(), tables.end(),
                               [&](const KernelTable& t) { return t.rank < table.rank; });
  tables.insert(at, table);
}

const std::map<std::string, std::vector<std::string>>& simd_requirements() {
  static const auto reqs = [] {
    std::map<std::string, std::vector<std::string>> out;
    for (const auto& t : registry()) {
      auto& names = out[t.name];
      for (const char* const* f = t.features; *f != nullptr; ++f) names.emplace_back(*f);
    }
    return out;
  }();
  return reqs;
}

std::vector<std::string> available_levels() {
  std::vector<std::string> out;
  for (const auto& t : registry()) {
    if (cpu_supports(t)) out.emplace_back(t.name);
  }
  return out;
}

const KernelTable& kernels() { return current_table(); }

bool set_simd_level(const std::string& name) {
  for (const auto& t : registry()) {
    if (t.name == name && cpu_supports(t)) {
      current_table() = t;
      return true;
    }
  }
  return false;
}

}  // namespace egg
