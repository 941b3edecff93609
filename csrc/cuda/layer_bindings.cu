// layer_bindings.cu: pybind11 bindings of the layers' epilogues in eggroll_np._cuda. Arguments are
// raw device pointers (0 for an absent operand) from eggroll_np._cuda_layers, which validates them.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>

#include "core/gil.h"
#include "cuda/pointers.h"
#include "cuda/fused.cuh"
#include "cuda/layers.cuh"

namespace py = pybind11;

namespace egg_cuda {

namespace {
FactorSource factor_source(std::uintptr_t held, const std::array<long long, 3>& stride,
                           uint32_t leaf, uint64_t offset) {
  return FactorSource{ptr<const float>(held), {stride[0], stride[1], stride[2]}, leaf, offset};
}

void check_act(int act) {
  if (act < kActNone || act > kActGelu) throw py::value_error("act must be in [0, 4]");
}

MemberTerms member_terms(std::uintptr_t keys, std::uintptr_t coef, std::uintptr_t bias,
                         std::uintptr_t bias_noise, std::uintptr_t bias_coef, int act,
                         std::size_t keys_bound) {
  check_act(act);
  return MemberTerms{ptr<const uint32_t>(keys), ptr<const float>(coef), ptr<const float>(bias),
                     ptr<const float>(bias_noise), ptr<const float>(bias_coef), act, keys_bound};
}
}  // namespace

void register_layer_bindings(py::module_& m) {
  m.def(
      "linear_fused",
      [](std::uintptr_t out, std::uintptr_t base, std::uintptr_t x, std::uintptr_t xa,
         std::uintptr_t slot_keys, std::uintptr_t xa_rows, std::uintptr_t keys,
         std::uintptr_t coef, std::uintptr_t bias, std::uintptr_t bias_coef,
         std::uintptr_t left, std::array<long long, 3> left_stride, uint64_t left_offset,
         std::uintptr_t right, std::array<long long, 3> right_stride, uint64_t right_offset,
         std::uintptr_t bias_noise, std::array<long long, 3> bias_noise_stride, uint32_t leaf,
         uint32_t bias_leaf, bool generate, bool bias_noisy, uint64_t seed, uint32_t epoch,
         int act, std::size_t members, std::size_t rows, std::size_t m, std::size_t n,
         std::size_t rank, std::size_t slots, std::size_t keys_bound, std::uintptr_t stream) {
        check_act(act);
        if (rank == 0 || rank > kFusedMaxRank) throw py::value_error("rank must be in [1, 8]");
        FusedLinear a{};
        a.out = ptr<float>(out), a.base = ptr<const float>(base), a.x = ptr<const float>(x);
        a.xa = ptr<float>(xa), a.slot_keys = ptr<const uint32_t>(slot_keys);
        a.xa_rows = ptr<const uint32_t>(xa_rows), a.keys = ptr<const uint32_t>(keys);
        a.coef = ptr<const float>(coef), a.bias = ptr<const float>(bias);
        a.bias_coef = ptr<const float>(bias_coef);
        a.left = factor_source(left, left_stride, leaf, left_offset);
        a.right = factor_source(right, right_stride, leaf, right_offset);
        a.bias_noise = factor_source(bias_noise, bias_noise_stride, bias_leaf, 0);
        a.generate = generate, a.bias_noisy = bias_noisy, a.seed = seed, a.epoch = epoch;
        a.act = act, a.members = members, a.rows = rows, a.m = m, a.n = n, a.rank = rank;
        a.slots = slots, a.keys_bound = keys_bound;
        egg::ReleaseGil release;  // safe at exit (core/gil.h)
        linear_fused(a, stream_of(stream));
      },
      py::arg("out"), py::arg("base"), py::arg("x"), py::arg("xa"), py::arg("slot_keys"),
      py::arg("xa_rows"), py::arg("keys"), py::arg("coef"), py::arg("bias"), py::arg("bias_coef"),
      py::arg("left"), py::arg("left_stride"), py::arg("left_offset"), py::arg("right"),
      py::arg("right_stride"), py::arg("right_offset"), py::arg("bias_noise"),
      py::arg("bias_noise_stride"), py::arg("leaf"), py::arg("bias_leaf"), py::arg("generate"),
      py::arg("bias_noisy"), py::arg("seed"), py::arg("epoch"), py::arg("act"),
      py::arg("members"), py::arg("rows"), py::arg("m"), py::arg("n"), py::arg("rank"),
      py::arg("slots"), py::arg("keys_bound"), py::arg("stream"),
      "The population linear layer with its factors made in the kernels (see fused.cuh); "
      "held pointers 0: generated from Philox.");
  m.def(
      "linear_epilogue",
      [](std::uintptr_t out, std::uintptr_t base, std::uintptr_t xa, std::uintptr_t xa_rows,
         bool xa_scaled, std::uintptr_t right, std::uintptr_t keys, std::uintptr_t coef,
         std::uintptr_t bias, std::uintptr_t bias_noise, std::uintptr_t bias_coef, int act,
         std::size_t members, std::size_t rows, std::size_t n, std::size_t rank,
         std::size_t xa_count, std::size_t keys_bound, std::uintptr_t stream) {
        const LinearEpilogue a{ptr<float>(out), ptr<const float>(base), ptr<const float>(xa),
                               ptr<const uint32_t>(xa_rows), xa_scaled, ptr<const float>(right),
                               member_terms(keys, coef, bias, bias_noise, bias_coef, act,
                                            keys_bound),
                               members, rows, n, rank, xa_count};
        egg::ReleaseGil release;  // safe at exit (core/gil.h)
        linear_epilogue(a, stream_of(stream));
      },
      py::arg("out"), py::arg("base"), py::arg("xa"), py::arg("xa_rows"), py::arg("xa_scaled"),
      py::arg("right"), py::arg("keys"), py::arg("coef"), py::arg("bias"), py::arg("bias_noise"),
      py::arg("bias_coef"), py::arg("act"), py::arg("members"), py::arg("rows"), py::arg("n"),
      py::arg("rank"), py::arg("xa_count"), py::arg("keys_bound"), py::arg("stream"),
      "The population linear layer's fused pass on raw device pointers (see layers.cuh).");
  m.def(
      "conv_epilogue",
      [](std::uintptr_t out, std::uintptr_t src, std::array<long long, 4> src_stride,
         bool src_shared, std::uintptr_t a, std::uintptr_t v, std::array<long long, 4> v_stride,
         std::uintptr_t v_index, std::uintptr_t keys, std::uintptr_t coef, std::uintptr_t bias,
         std::uintptr_t bias_noise, std::uintptr_t bias_coef, int act, std::size_t members,
         std::size_t batch, std::size_t channels, std::size_t positions, std::size_t rank,
         std::size_t v_count, std::size_t keys_bound, std::uintptr_t stream) {
        ConvEpilogue e{};
        e.m = member_terms(keys, coef, bias, bias_noise, bias_coef, act, keys_bound);
        e.out = ptr<float>(out);
        e.src = ptr<const float>(src);
        for (int d = 0; d < 4; ++d) e.src_stride[d] = src_stride[d], e.v_stride[d] = v_stride[d];
        e.src_shared = src_shared;
        e.a = ptr<const float>(a);
        e.v = ptr<const float>(v);
        e.v_index = ptr<const uint32_t>(v_index);
        e.members = members, e.batch = batch, e.channels = channels, e.positions = positions;
        e.rank = rank, e.v_count = v_count;
        egg::ReleaseGil release;  // safe at exit (core/gil.h)
        conv_epilogue(e, stream_of(stream));
      },
      py::arg("out"), py::arg("src"), py::arg("src_stride"), py::arg("src_shared"), py::arg("a"),
      py::arg("v"), py::arg("v_stride"), py::arg("v_index"), py::arg("keys"), py::arg("coef"),
      py::arg("bias"), py::arg("bias_noise"), py::arg("bias_coef"), py::arg("act"),
      py::arg("members"), py::arg("batch"), py::arg("channels"), py::arg("positions"),
      py::arg("rank"), py::arg("v_count"), py::arg("keys_bound"), py::arg("stream"),
      "The population conv2d's fused pass on raw device pointers; strides in elements.");
}

}  // namespace egg_cuda
