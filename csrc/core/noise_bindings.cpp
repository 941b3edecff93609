// noise_bindings.cpp: bindings of the noise entry points (Philox blocks, normals fills, the shared
// noise table's row copies): buffer checks, then the threaded drivers with the GIL released.
#include <pybind11/stl.h>

#include <vector>

#include "core/buffers.h"
#include "core/drivers.h"
#include "core/gil.h"

namespace egg {

namespace {

py::array_t<uint32_t> philox(const U32Array& counters, const U32Array& key) {
  if (counters.ndim() != 2 || counters.shape(1) != 4) {
    throw py::value_error("counters must have shape (n, 4)");
  }
  if (key.ndim() != 1 || key.shape(0) != 2) throw py::value_error("key must have shape (2,)");
  const std::size_t n = static_cast<std::size_t>(counters.shape(0));
  py::array_t<uint32_t> out({static_cast<py::ssize_t>(n), py::ssize_t{4}});
  const uint32_t k0 = key.at(0), k1 = key.at(1);
  const uint32_t* in = counters.data();
  uint32_t* dst = out.mutable_data();
  {
    ReleaseGil release;
    philox_many(in, n, k0, k1, dst);
  }
  return out;
}

// outs[j][i, :] = normals [offsets[j], ...) of stream (leaves[j], member_keys[i], epoch).
// `outs` are borrowed handles: no Python object is created here, so none is freed if a daemon
// thread is unwound out of the released GIL at exit (see gil.h).
void fill_jobs(uint64_t seed, const std::vector<uint32_t>& leaves, const U32Array& member_keys,
               uint32_t epoch, const std::vector<uint64_t>& offsets,
               const std::vector<py::handle>& outs) {
  const std::size_t n_jobs = leaves.size();
  if (offsets.size() != n_jobs || outs.size() != n_jobs) {
    throw py::value_error("leaves, offsets and outs must have the same length");
  }
  if (member_keys.ndim() != 1) throw py::value_error("member_keys must be 1-D");
  const std::size_t rows = static_cast<std::size_t>(member_keys.shape(0));
  std::vector<NormalsJob> jobs;
  std::vector<F32Array> keep;  // hold references while the GIL is released
  for (std::size_t j = 0; j < n_jobs; ++j) {
    F32Array out = writable_out(outs[j]);
    if (out.ndim() != 2 || static_cast<std::size_t>(out.shape(0)) != rows) {
      throw py::value_error("each out must have shape (len(member_keys), count)");
    }
    const std::size_t count = static_cast<std::size_t>(out.shape(1));
    if (offsets[j] + count > (uint64_t{1} << 34)) {
      throw py::value_error("offset + count exceeds the 2^34 values of one Philox stream");
    }
    jobs.push_back({leaves[j], offsets[j], count, out.mutable_data()});
    keep.push_back(out);
  }
  const uint32_t* keys = member_keys.data();
  ReleaseGil release;
  fill_normals_many(seed, keys, rows, epoch, jobs);
}

void fill_normals_many_py(uint64_t seed, const std::vector<uint32_t>& leaves,
                          const U32Array& member_keys, uint32_t epoch,
                          const std::vector<uint64_t>& offsets, const py::list& outs) {
  fill_jobs(seed, leaves, member_keys, epoch, offsets,
            std::vector<py::handle>(outs.begin(), outs.end()));
}

// out[i, :] = normals [offset, offset + count) of stream (leaf, member_keys[i], epoch): the
// one-job case of fill_normals_many.
void fill_normals_py(uint64_t seed, uint32_t leaf, const U32Array& member_keys, uint32_t epoch,
                     uint64_t offset, const py::handle& out) {
  fill_jobs(seed, {leaf}, member_keys, epoch, {offset}, {out});
}

// The shared noise table's reads (eggroll_np/noise_table.py): outs[j][i, :] =
// table[starts[j][i] : starts[j][i] + outs[j].shape[1]].
void gather_rows_many(const F32Array& table, const py::list& starts, const py::list& outs) {
  const std::size_t n_jobs = static_cast<std::size_t>(py::len(starts));
  if (static_cast<std::size_t>(py::len(outs)) != n_jobs) {
    throw py::value_error("starts and outs must have the same length");
  }
  if (table.ndim() != 1) throw py::value_error("table must be 1-D");
  const std::size_t size = static_cast<std::size_t>(table.shape(0));
  std::vector<RowCopy> rows;
  std::vector<F32Array> keep;  // hold references while the GIL is released
  for (std::size_t j = 0; j < n_jobs; ++j) {
    auto st = py::array_t<int64_t, py::array::c_style>::ensure(starts[j]);
    F32Array out = writable_out(outs[j]);
    if (!st || st.ndim() != 1 || out.ndim() != 2 || out.shape(0) != st.shape(0)) {
      throw py::value_error("each starts must be 1-D int64 and each out (len(starts), count)");
    }
    const std::size_t count = static_cast<std::size_t>(out.shape(1));
    const int64_t* s = st.data();
    for (py::ssize_t i = 0; i < st.shape(0); ++i) {
      if (s[i] < 0 || static_cast<std::size_t>(s[i]) + count > size) {
        throw py::value_error("a start + count lies outside the table");
      }
      rows.push_back({table.data() + s[i], out.mutable_data() + i * count, count});
    }
    keep.push_back(out);
  }
  ReleaseGil release;
  copy_rows(rows);
}

}  // namespace

void register_noise_bindings(py::module_& m) {
  m.def("philox4x32_10", &philox, py::arg("counters"), py::arg("key"),
        "Philox4x32-10 of uint32 counters (n, 4) under key (2,) -> uint32 (n, 4).");
  m.def("fill_normals", &fill_normals_py, py::arg("seed"), py::arg("leaf"),
        py::arg("member_keys"), py::arg("epoch"), py::arg("offset"), py::arg("out"),
        "Write normals [offset, offset + out.shape[1]) of each member's stream into out (float32); "
        "fill_normals_many with one request.");
  m.def("fill_normals_many", &fill_normals_many_py, py::arg("seed"), py::arg("leaves"),
        py::arg("member_keys"), py::arg("epoch"), py::arg("offsets"), py::arg("outs"),
        "Several fill_normals requests (one per leaf/offset/out) in one parallel pass.");
  m.def("gather_rows_many", &gather_rows_many, py::arg("table"), py::arg("starts"),
        py::arg("outs"), "The shared noise table's row copies: outs[j][i] = table[starts[j][i]:].");
}

}  // namespace egg
