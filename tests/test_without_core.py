"""A failed build lands on a working library: `egg.step` end to end without the compiled core.

The child process hides eggroll_np._core and eggroll_np._cuda from the import system (what a
build that failed or was never run leaves behind), trains a small MLP for a few generations
through the public API, and reports what it got. Its parameters must be exactly those of the
same run with the core present but every operation on the dispatch table's NumPy reference rows
(`dispatch.use("numpy")`): the fallback is the reference, not an approximation of it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

_RUN = r"""
import hashlib, importlib.abc, json, sys

class NoCompiledModules(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in ("eggroll_np._core", "eggroll_np._cuda"):
            raise ImportError(f"{name}: hidden by the test (a failed build)")
        return None

if sys.argv[1] == "hidden":
    sys.meta_path.insert(0, NoCompiledModules())

import contextlib
import numpy as np
import eggroll_np as egg
from eggroll_np import _ext, dispatch
from eggroll_np.models import mlp

params = mlp.init((6, 16, 3), np.random.default_rng(0))
x = np.random.default_rng(1).standard_normal((32, 6)).astype(np.float32)
target = np.tanh(x[:, :3])

def fitness(pop):
    out = mlp.population_forward(pop, x, "relu")
    return -np.mean((out - target) ** 2, axis=(1, 2))

forced = dispatch.use("numpy") if sys.argv[1] == "reference" else contextlib.nullcontext()
with forced, egg.threads(1):
    state = egg.init(params, population=32, sigma=0.05, lr=0.02, seed=4, optimizer="adam")
    first = float(fitness(egg.ask(params, state)).mean())
    for _ in range(3):
        params, state = egg.step(params, fitness, state, batched=True)
    last = float(fitness(egg.ask(params, state)).mean())
leaves = egg.tree.flatten(params)[0]
digest = hashlib.sha256(b"".join(np.ascontiguousarray(v).tobytes() for v in leaves)).hexdigest()
print(json.dumps({
    "core": _ext.core is not None, "cuda": _ext.cuda is not None, "core_error": _ext.core_error,
    "generation": state.generation, "digest": digest, "first": first, "last": last,
    "finite": all(bool(np.isfinite(v).all()) for v in leaves),
    "info": {k: float(v) for k, v in state.info.items() if isinstance(v, float)},
}))
"""


def _run(mode: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _RUN, mode], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_step_runs_end_to_end_without_the_compiled_core():
    got = _run("hidden")
    assert (got["core"], got["cuda"]) == (False, False)
    assert "hidden by the test" in got["core_error"]
    assert got["generation"] == 3
    assert got["finite"]
    assert all(v == v for v in got["info"].values())  # no NaN in the generation's report


def test_without_the_core_the_run_is_the_reference_run():
    from eggroll_np import _ext

    if _ext.core is None:
        pytest.skip("the core is missing here too: the first test is this one")
    hidden, reference = _run("hidden"), _run("reference")
    assert reference["core"] is True
    assert hidden["digest"] == reference["digest"]
    assert (hidden["first"], hidden["last"]) == (reference["first"], reference["last"])
