"""The CUDA kernels and their launch code, run on the CPU by csrc/cuda/emulation, vs NumPy.

The emulator is built here with the system C++ compiler and the CUDA headers (no GPU, no driver,
no CUDA library needed); without either the tests skip and say which is missing. Normals are
compared bit for bit with the C++ core at every SIMD level (built without contraction, like
noise.cu); the low-rank correction with the NumPy reference in float64.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from eggroll_np import _ext, lowrank, noise

try:  # the suite runs as a package (tests/__init__.py) or from its directory
    from . import emulator as emu
except ImportError:
    import emulator as emu  # type: ignore[no-redef]

pytestmark = pytest.mark.skipif(
    emu.skip_reason() is not None, reason=str(emu.skip_reason())
)
Cases = emu.Cases


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return emu.build(tmp_path_factory.mktemp("emu"))


@pytest.fixture
def simd_levels() -> Iterator[Callable[[], Iterator[str]]]:
    """Iterates the C++ core's SIMD levels (the kernels switched to each in turn), then restores."""
    if _ext.core is None:
        pytest.skip(f"the C++ core is not built: {_ext.core_error}")
    before = _ext.core.simd_level()

    def each() -> Iterator[str]:
        for level in _ext.core.available_simd_levels():
            _ext.core.set_simd_level(level)
            yield level

    try:
        yield each
    finally:
        _ext.core.set_simd_level(before)


def test_fast_divmod_is_exact(emulator):
    done = subprocess.run([str(emulator), "selftest"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_philox_kernel_any_alignment(emulator, tmp_path):
    # shift 1-3: counters and out at 4/8/12-byte offsets, which must take the scalar path (a
    # uint4 access there is a misaligned-address fault on a GPU); 40000 counters exceed the
    # emulated grid, so the grid-stride loop turns.
    rng = np.random.default_rng(0)
    cases = Cases(tmp_path)
    wants = {}
    for shift in range(4):
        n = 40_000 if shift == 0 else 1_000 + shift
        counters = rng.integers(0, 2**32, (n, 4), dtype=np.uint32)
        key = rng.integers(0, 2**32, 2, dtype=np.uint32)
        name = f"philox{shift}"
        cases.put(name, counters=counters)
        cases.lines.append(f"philox {name} {n} {key[0]} {key[1]} {shift}")
        wants[name] = noise.philox4x32_10(counters, key)
    cases.run(emulator)
    for name, want in wants.items():
        np.testing.assert_array_equal(cases.get(name, "out", np.uint32, want.shape), want)


NORMALS = [  # (offset, count, rows, shift of out in floats)
    (0, 64, 3, 0),
    (3, 61, 2, 0),
    (8, 6, 5, 0),
    (0, 70_001, 1, 0),  # one long row: more Philox blocks than the emulated grid's threads
    (5, 1, 4, 0),
    (0, 16, 700, 0),  # short rows: several rows per thread block, rows beyond one grid
    (1, 9, 33, 0),
    (0, 12, 9, 1),  # aligned offset and count but out at a 4-byte offset: scalar stores
    (2**34 - 40, 40, 2, 0),  # the last values of a stream
    (0, 4, 20_000, 0),  # one block per row, more rows than the emulated grid holds
]


def test_normals_kernel_bit_identical_to_cpu(emulator, tmp_path, simd_levels):
    cases = Cases(tmp_path)
    seed, leaf, epoch = 0x123456789ABCDEF, 5, 2
    for j, (offset, count, rows, shift) in enumerate(NORMALS):
        keys = (np.arange(rows, dtype=np.uint32) * 7 + 1).astype(np.uint32)
        cases.put(f"n{j}", keys=keys)
        cases.lines.append(f"normals n{j} {seed} {leaf} {epoch} {offset} {count} {rows} {shift}")
    cases.run(emulator)
    for level in simd_levels():  # the CPU gives the same bits at every level
        for j, (offset, count, rows, _) in enumerate(NORMALS):
            keys = np.arange(rows, dtype=np.uint32) * 7 + 1
            want = noise.normals_batch(seed, leaf, keys, epoch, count, offset)
            got = cases.get(f"n{j}", "out", np.float32, (rows, count))
            np.testing.assert_array_equal(got, want, err_msg=f"{level}: case {NORMALS[j]}")


def test_batched_normals_kernel_matches_one_request_at_a_time(emulator, tmp_path, simd_levels):
    # 37 requests: more than one launch's job table (32), a zero-length one, unaligned ones and
    # outputs at 4/8-byte offsets; every request equals normals_batch on the CPU.
    rng = np.random.default_rng(3)
    rows, seed, epoch = 6, 99, 7
    keys = rng.integers(0, 2**32, rows, dtype=np.uint32)
    requests = [(int(rng.integers(0, 50)), int(rng.integers(0, 9)), int(rng.integers(0, 40)))
                for _ in range(35)] + [(3, 0, 0), (1, 4, 4096)]  # fmt: skip
    cases = Cases(tmp_path)
    cases.put("many", keys=keys)
    spec = " ".join(f"{leaf} {off} {cnt}" for leaf, off, cnt in requests)
    cases.lines.append(f"many many {seed} {epoch} {rows} {len(requests)} {spec}")
    cases.run(emulator)
    flat = np.fromfile(tmp_path / "many.out.bin", dtype=np.float32)
    for level in simd_levels():
        at = 0
        for leaf, off, cnt in requests:
            got = flat[at : at + rows * cnt].reshape(rows, cnt)
            at += rows * cnt
            want = noise.normals_batch(seed, leaf, keys, epoch, cnt, off)
            np.testing.assert_array_equal(got, want, err_msg=level)
        assert at == flat.size


LOWRANK = [  # (x dtype, per_member, members, batch, m, n, rank, use_base, bad_key, shift)
    ("f32", False, 6, 3, 37, 20, 1, False, False, 0),
    ("f32", True, 6, 3, 37, 20, 1, True, False, 0),
    ("f32", True, 6, 3, 64, 13, 2, False, False, 0),
    ("f32", False, 6, 3, 64, 16, 3, True, False, 0),
    ("f32", True, 5, 7, 5, 3, 4, False, False, 0),
    ("f32", False, 4, 2, 33, 8, 5, True, False, 0),
    ("f32", True, 4, 2, 40, 12, 9, False, False, 0),  # two rank chunks of 8
    ("f32", True, 300, 3, 40, 8, 1, False, False, 0),  # 900 rows: grid-stride over rows
    ("f32", False, 200, 5, 24, 20, 2, True, False, 0),
    ("f32", True, 6, 3, 40, 8, 1, False, True, 0),  # a key >= K: that member's rows are NaN
    ("f32", False, 6, 3, 40, 7, 2, True, True, 0),
    ("f32", True, 6, 3, 40, 16, 2, False, False, 1),  # out at a 4-byte offset: scalar stores
    ("f32", False, 6, 3, 40, 16, 1, True, False, 1),
    ("f16", True, 6, 2, 70, 12, 1, False, False, 0),
    ("f16", False, 6, 2, 70, 9, 3, True, False, 0),
    ("f32", False, 3, 2, 5, 70_001, 2, True, False, 0),  # wide rows: columns and rows grid-stride
    ("f32", True, 3, 2, 5, 70_000, 1, False, False, 0),  # the same on the float4 path
]


def test_lowrank_kernels_match_numpy_reference(emulator, tmp_path):
    rng = np.random.default_rng(5)
    cases = Cases(tmp_path)
    wants = {}
    num_keys = 4
    for j, (xt, per_member, members, batch, m, n, rank, use_base, bad_key, shift) in enumerate(
        LOWRANK
    ):
        name = f"lr{j}"
        x = rng.standard_normal((members, batch, m) if per_member else (batch, m))
        x = x.astype(np.float16 if xt == "f16" else np.float32)
        a = rng.standard_normal((num_keys, m, rank)).astype(np.float32)  # contract layout
        b = rng.standard_normal((num_keys, n, rank)).astype(np.float32)
        keys = rng.integers(0, num_keys, members).astype(np.uint32)
        if bad_key:
            keys[members // 2] = num_keys + 5
        coef = rng.standard_normal(members).astype(np.float32)
        start = rng.standard_normal((members, batch, n)).astype(np.float32)
        base = rng.standard_normal((batch, n)).astype(np.float32)
        # The kernels read rank-major factors: (K, r, m) and (K, r, n).
        cases.put(name, x=x, left=a.transpose(0, 2, 1), right=b.transpose(0, 2, 1), keys=keys,
                  coef=coef, base=base, out=start)  # fmt: skip
        cases.lines.append(
            f"lowrank {name} {xt} {int(per_member)} {members} {batch} {m} {n} {rank} {num_keys} "
            f"{int(use_base)} {shift}"
        )
        good = keys < num_keys
        want = np.array(np.broadcast_to(base, start.shape) if use_base else start, np.float64)
        f64 = [np.asarray(v, np.float64) for v in (x, a, b, coef)]
        xs = f64[0] if not per_member else f64[0][good]
        want[good] = lowrank.correction_reference(
            xs, f64[1], f64[2], keys[good], f64[3][good], want[good]
        )
        want[~good] = np.nan
        wants[name] = want
    cases.run(emulator)
    for j, (name, want) in enumerate(wants.items()):
        got = cases.get(name, "result", np.float32, want.shape)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=f"case {LOWRANK[j]}")
