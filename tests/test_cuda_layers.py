"""The population layers on the GPU: CUDA epilogue kernels (host emulation here, CuPy on a GPU)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import eggroll_np as egg
from eggroll_np.backend import cupy

ROOT = Path(__file__).resolve().parents[1]
CUDA_HOME = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda"))


def test_epilogue_kernels_in_host_emulation(tmp_path):
    # The kernels of csrc/cuda/layers_kernels.cuh, run thread by thread on the CPU against
    # double-precision loops (no GPU needed; a GPU run is test_layers_on_gpu_match_numpy).
    cxx = shutil.which("g++")
    if cxx is None or not (CUDA_HOME / "include" / "cuda_runtime.h").exists():
        pytest.skip("needs g++ and the CUDA headers (CUDA_HOME)")
    exe = tmp_path / "layers_emulation"
    cmd = [
        cxx, "-std=c++17", "-O1", "-Wno-attributes", f"-I{ROOT / 'csrc'}",
        f"-I{CUDA_HOME / 'include'}", str(ROOT / "csrc/cuda/emulation/layers_emulation.cpp"),
        "-o", str(exe), f"-L{CUDA_HOME / 'lib64'}", "-lcudart_static", "-ldl", "-lrt", "-lpthread",
    ]  # fmt: skip
    build = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-4000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:]
    assert "0 failure(s)" in run.stdout
    assert run.stdout.count("ok  ") >= 100


def _params(rng):
    return {
        "W": rng.standard_normal((7, 12)).astype(np.float32),
        "b": rng.standard_normal(12).astype(np.float32),
        "K": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "c": rng.standard_normal(4).astype(np.float32),
        "E": rng.standard_normal((9, 5)).astype(np.float32),
    }


@pytest.mark.gpu
@pytest.mark.parametrize("act", [None, "relu", "gelu"])
def test_layers_on_gpu_match_numpy(act):
    rng = np.random.default_rng(0)
    params = _params(rng)
    kw = dict(population=6, rank=2, seed=3, sigma=0.2, lowrank={"K": "lowrank"})
    pop = egg.ask(params, egg.init(params, **kw))
    gparams = {k: cupy.asarray(v) for k, v in params.items()}
    gpop = egg.ask(gparams, egg.init(gparams, **kw))
    xs = [rng.standard_normal((3, 7)), rng.standard_normal((6, 3, 7))]
    for x in xs:
        x = x.astype(np.float32)
        want = pop.linear(x, "W", "b", act)
        np.testing.assert_allclose(cupy.asnumpy(gpop.linear(cupy.asarray(x), "W", "b", act)),
                                   want, rtol=1e-4, atol=1e-4)  # fmt: skip
    for x in (rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((6, 2, 3, 6, 6))):
        x = x.astype(np.float32)
        want = pop.conv2d(x, "K", "c", 2, 1, act)
        got = gpop.conv2d(cupy.asarray(x), "K", "c", 2, 1, act)
        np.testing.assert_allclose(cupy.asnumpy(got), want, rtol=1e-4, atol=1e-4)
    ids = rng.integers(0, 9, (6, 4))
    for per_member in (False, True):
        want = pop.embed(ids, "E", per_member)
        got = gpop.embed(cupy.asarray(ids), "E", per_member)
        np.testing.assert_allclose(cupy.asnumpy(got), want, rtol=1e-5, atol=1e-5)
