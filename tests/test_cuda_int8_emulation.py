"""The integer leaves' CUDA kernels (csrc/cuda/int8*.cu[h]), run on the CPU by the host emulator
(csrc/cuda/emulation, its int8_* cases), equal the int64 NumPy reference bit for bit.

The emulator compiles int8.cu's launch code unchanged and emulates the tensor-core step warp-wide
with the PTX fragment layout; it is built here with the system C++ compiler and the CUDA headers
(no GPU needed) and skips, saying why, without them. A GPU run is test_int8_on_gpu_matches_core.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from .test_core_int8 import contract_reference, i8, linear_reference

try:  # the suite runs as a package (tests/__init__.py) or from its directory
    from . import emulator as emu
except ImportError:
    import emulator as emu  # type: ignore[no-redef]

pytestmark = pytest.mark.skipif(
    emu.skip_reason() is not None, reason=str(emu.skip_reason())
)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return emu.build(tmp_path_factory.mktemp("int8emu"))


class Cases:
    """Writes each case's inputs and its line of cases.txt; runs the emulator once for all."""

    def __init__(self, tmp: Path) -> None:
        self.tmp, self.lines, self.want = tmp, [], {}

    def add(
        self, op: str, args: list[int], inputs: dict[str, np.ndarray], want: np.ndarray
    ) -> None:
        name = f"c{len(self.lines)}"
        for key, arr in inputs.items():
            np.ascontiguousarray(arr).tofile(self.tmp / f"{name}.{key}.bin")
        self.lines.append(" ".join([f"int8_{op}", name, *map(str, args)]))
        self.want[name] = want

    def run(self, exe: Path) -> None:
        (self.tmp / "cases.txt").write_text("\n".join(self.lines) + "\n")
        done = subprocess.run(
            [str(exe), str(self.tmp)], capture_output=True, text=True, timeout=1800
        )
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        assert done.stdout.count("ran  int8_") == len(self.lines), done.stdout[-2000:]
        for (name, want), line in zip(self.want.items(), self.lines, strict=True):
            got = np.fromfile(self.tmp / f"{name}.out.bin", want.dtype).reshape(want.shape)
            np.testing.assert_array_equal(got, want, err_msg=line)


def _linear_case(
    cases: Cases, rng, N, B, m, n, shared_x, w_pm, K, r, bias_kind, relu, signs=True, bad_key=False
):
    x = i8(rng, (1 if shared_x else N, B, m))
    w = i8(rng, (N, m, n) if w_pm else (m, n), lo=-127)
    keys = rng.integers(0, K, N).astype(np.uint32)
    sg = np.where(np.arange(N) % 2 == 0, 1, -1).astype(np.int8)
    kw = dict(
        keys=keys,
        signs=sg if signs else None,
        lr_shift=int(rng.integers(0, 16)),
        out_shift=int(rng.integers(0, 10)),
        relu=relu,
    )
    inputs = {"x": x, "w": w, "keys": keys}
    if signs:
        inputs["signs"] = sg
    if r:
        kw.update(a=i8(rng, (K, m, r), lo=-127), b=i8(rng, (K, n, r), lo=-127))
        inputs.update(a=kw["a"], b=kw["b"])
    kind = ["none", "shared", "member", "noise"].index(bias_kind)
    if kind:
        kw["bias"] = i8(rng, (N, n) if kind == 2 else n, lo=-127)
        inputs["bias"] = kw["bias"]
    if kind == 3:
        kw.update(bias_noise=i8(rng, (K, n), lo=-127), bias_shift=int(rng.integers(0, 8)))
        inputs["bias_noise"] = kw["bias_noise"]
    want = linear_reference(x, w, N=N, **kw)
    if bad_key:  # a key past K: the member's outputs are -128, never a layer value
        keys[N - 1] = K
        want[N - 1] = -128
    args = [
        N,
        B,
        m,
        n,
        x.shape[0],
        int(w_pm),
        K,
        r,
        1,
        int(signs),
        kw["lr_shift"],
        kind,
        kw.get("bias_shift", 0),
        kw["out_shift"],
        int(relu),
    ]
    cases.add("linear", args, inputs, want)


def test_int8_kernels_in_host_emulation(emulator, tmp_path):
    rng = np.random.default_rng(0)
    cases = Cases(tmp_path)
    for M, K, N in [(1, 1, 1), (65, 33, 40), (3, 100, 2100), (130, 64, 7), (5, 0, 9)]:
        x, w = i8(rng, (M, K)), i8(rng, (K, N))
        cases.add("gemm", [M, K, N], {"x": x, "w": w}, (x.astype(np.int64) @ w).astype(np.int32))
    for r in (0, 1, 4):
        for shared_x in (True, False):
            for w_pm in (False, True):
                for bias_kind in ("none", "shared", "member", "noise"):
                    _linear_case(
                        cases,
                        rng,
                        N=4,
                        B=int(rng.integers(1, 4)),
                        m=int(rng.choice([1, 33, 70])),
                        n=int(rng.choice([5, 40])),
                        shared_x=shared_x,
                        w_pm=w_pm,
                        K=2,
                        r=r,
                        bias_kind=bias_kind,
                        relu=bias_kind != "member",
                        signs=bias_kind != "shared",
                    )
    # rows spanning several 64-row tiles; a bad key
    _linear_case(cases, rng, 70, 2, 45, 33, False, False, 35, 4, "noise", True)
    _linear_case(cases, rng, 6, 1, 20, 9, True, False, 3, 1, "noise", False, bad_key=True)
    _linear_case(cases, rng, 6, 2, 20, 9, False, False, 3, 4, "none", False, bad_key=True)
    # the epilogue alone and the projections
    N, B, n, K, r = 5, 3, 37, 3, 4
    acc = rng.integers(-(2**24), 2**24, (N, B, n)).astype(np.int32)
    xa = rng.integers(-(2**20), 2**20, (N, B, r)).astype(np.int32)
    b = i8(rng, (K, n, r), lo=-127)
    keys = rng.integers(0, K, N).astype(np.uint32)
    signs = np.array([1, -1, 1, -1, 1], np.int8)
    bias = i8(rng, (N, n), lo=-127)
    lr = (
        signs[:, None, None].astype(np.int64)
        * np.einsum("ibq,inq->ibn", xa.astype(np.int64), b[keys].astype(np.int64))
    ) >> 11
    want = np.clip(((acc + lr) >> 5) + bias[:, None, :], -127, 127).astype(np.int8)
    cases.add(
        "epilogue",
        [N, B, n, K, r, 11, 5, 0],
        dict(acc=acc, xa=xa, b=b, keys=keys, signs=signs, bias=bias),
        want,
    )
    for X in (1, 4):
        x, a = i8(rng, (X, 2, 50)), i8(rng, (3, 50, 4), lo=-127)
        keys = np.array([2, 0, 1, 1], np.uint32)
        want = np.stack([x[0 if X == 1 else i].astype(np.int64) @ a[k] for i, k in enumerate(keys)])
        cases.add("xa", [4, X, 3, 2, 50, 4], dict(x=x, a=a, keys=keys), want.astype(np.int32))
    # the update contraction and its threshold
    for K, m, n, r, tau in [
        (7, 33, 70, 1, 30000),
        (20, 5, 3, 4, 0),
        (0, 4, 4, 1, 1),
        (9, 65, 9, 3, -1),
    ]:
        a, b = i8(rng, (K, m, r), lo=-127), i8(rng, (K, n, r))
        c = rng.integers(-1, 2, K).astype(np.int8)
        q = i8(rng, (m, n), lo=-127)
        z = contract_reference(a, b, c)
        inputs = dict(a=a, b=b, c=c, q=q)
        cases.add("contract", [K, m, n, r, tau, 0], inputs, z.astype(np.int32))
        step = np.sign(z) * (np.abs(z) >= tau)
        want = np.clip(q.astype(np.int64) + step, -127, 127).astype(np.int8)
        cases.add("contract", [K, m, n, r, tau, 1], inputs, want)
    cases.run(emulator)
