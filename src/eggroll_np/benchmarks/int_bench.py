"""`eggroll-np bench --int8`: the rl shapes with int8 leaves and inputs, against float32.

Three things are timed in alternation (`bench._interleaved`, medians of per-round ratios):
float32 inference of all N rows (BLAS), the float32 population forward (EGGROLL, low-rank
noise) and the int8 population forward (int8 leaves and inputs, `pop.linear` on the dispatch
table's integer rows), each on fresh noise per call. Also the int8 generation (forward and the
integer update) and the bytes of params plus optimizer state of both runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _ext, dispatch
from ..tree import flatten
from .bench import _interleaved, fresh_states
from .reference import WORKLOADS, Workload, setup

__all__ = [
    "int8_params",
    "int8_inputs",
    "int8_fitness",
    "int8_rows_backend",
    "run_int8_workload",
    "format_int8",
]


def int8_params(w: Workload, seed: int = 0) -> dict[str, Any]:
    """The workload's MLP as int8 leaves: W ~ N(0, 16^2) (1.0 in q / 16) clipped, zero b."""
    rng = np.random.default_rng(seed)
    layers = []
    for m, n in zip(w.sizes[:-1], w.sizes[1:], strict=True):
        W = np.clip(np.rint(rng.standard_normal((m, n)) * 16), -127, 127).astype(np.int8)
        layers.append({"W": W, "b": np.zeros(n, np.int8)})
    return {"layers": layers}


def int8_inputs(w: Workload, seed: int = 1) -> np.ndarray:
    """int8 inputs: (rows, m) shared or (N, rows, m) per member, N(0, 16^2) clipped."""
    rng = np.random.default_rng(seed)
    shape = (w.rows, w.sizes[0]) if w.shared else (w.population, w.rows, w.sizes[0])
    return np.clip(np.rint(rng.standard_normal(shape) * 16), -127, 127).astype(np.int8)


def int8_fitness(w: Workload, x: np.ndarray) -> Callable[[Any], np.ndarray]:
    """Batched fitness: every member's int8 MLP (relu hidden layers) on x, -mean(y^2)."""
    n_layers = len(w.sizes) - 1

    def fitness(pop: Any) -> np.ndarray:
        h = x
        for j in range(n_layers):
            act = "relu" if j < n_layers - 1 else None
            h = pop.linear(h, f"layers/{j}/W", f"layers/{j}/b", activation=act)
        y = h.astype(np.float64)
        return -np.mean(y * y, axis=(1, 2))

    return fitness


def int8_rows_backend() -> str:
    """Which rows run the int8 GEMM and epilogue here: "core (<SIMD level>)" or "numpy"."""
    core = _ext.core
    fn = dispatch.rows_of("int_gemm").get(("core", "int8"))
    if fn is None or core is None:
        return "numpy (exact float BLAS)"
    level = core.simd_level() if hasattr(core, "simd_level") else "?"
    return f"core ({level})"


def run_int8_workload(
    name: str = "rl", repeats: int = 7, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Time the int8 population forward of workload `name` against float32 inference and the
    float32 population forward (medians of per-round ratios; fresh noise each call)."""
    from .. import ask, init, step

    if name not in WORKLOADS:
        raise ValueError(f"--int8 benchmarks the MLP workloads {sorted(WORKLOADS)}, got {name!r}")
    say = progress or (lambda _msg: None)
    w, fparams, infer, ffitness, _ = setup(name)
    cfg = dict(population=w.population, lr=0.01, rank=1, seed=0, antithetic=True)
    fstate = init(fparams, sigma=0.02, optimizer="adam", shaping="centered_rank", **cfg)
    qparams = int8_params(w)
    qstate = init(qparams, int_sigma_shift=2, int_update_fraction=0.1, **cfg)
    qfitness = int8_fitness(w, int8_inputs(w))
    fs, qs = fresh_states(fstate), fresh_states(qstate)
    timed = {
        "float_forward": lambda k: ffitness(ask(fparams, fs(k))),
        "int8_forward": lambda k: qfitness(ask(qparams, qs(k))),
        "int8_generation": lambda k: step(qparams, qfitness, qs(k), batched=True),
    }
    say("float32 inference / float32 forward / int8 forward / int8 generation, interleaved")
    t_inf, t, ratio = _interleaved(infer, timed, repeats)
    fbytes = sum(int(v.nbytes) for v in flatten(fparams)[0])
    fstate_bytes = sum(int(a.nbytes) for s in fstate.opt_state.leaves.values() for a in s)
    qbytes = sum(int(v.nbytes) for v in flatten(qparams)[0])
    qstate_bytes = sum(int(a.nbytes) for s in qstate.opt_state.leaves.values() for a in s)
    return {
        "workload": name,
        "population": w.population,
        "sizes": list(w.sizes),
        "int8_rows": int8_rows_backend(),
        "float_inference_s": t_inf,
        "float_forward_s": t["float_forward"],
        "int8_forward_s": t["int8_forward"],
        "int8_generation_s": t["int8_generation"],
        # throughput ratios: > 1 means the int8 forward pushes more member-rows per second
        "int8_forward_vs_float_inference": 1.0 / ratio["int8_forward"],
        "int8_forward_vs_float_forward": ratio["float_forward"] / ratio["int8_forward"],
        "float_forward_vs_float_inference": 1.0 / ratio["float_forward"],
        "int8_generation_over_float_inference": ratio["int8_generation"],
        "float_param_bytes": fbytes,
        "float_state_bytes": fstate_bytes,
        "int8_param_bytes": qbytes,
        "int8_state_bytes": qstate_bytes,
        "bytes_ratio": (qbytes + qstate_bytes) / (fbytes + fstate_bytes),
    }


def format_int8(r: dict[str, Any]) -> str:
    """The --int8 result as a few lines of text."""
    ms = 1e3
    return "\n".join(
        [
            f"{r['workload']} int8 (sizes {r['sizes']}, population {r['population']}; int8 rows: "
            f"{r['int8_rows']})",
            f"  float32 inference {r['float_inference_s'] * ms:.2f} ms, float32 forward "
            f"{r['float_forward_s'] * ms:.2f} ms, int8 forward {r['int8_forward_s'] * ms:.2f} ms, "
            f"int8 generation {r['int8_generation_s'] * ms:.2f} ms",
            f"  int8 forward throughput: {r['int8_forward_vs_float_inference']:.2f}x float32 "
            f"inference, {r['int8_forward_vs_float_forward']:.2f}x the float32 forward "
            f"(float32 forward: {r['float_forward_vs_float_inference']:.2f}x inference)",
            f"  params + optimizer state: int8 {r['int8_param_bytes'] + r['int8_state_bytes']} "
            f"bytes vs float32 (Adam) {r['float_param_bytes'] + r['float_state_bytes']} bytes "
            f"({r['bytes_ratio']:.3f}x; params alone "
            f"{r['int8_param_bytes'] / r['float_param_bytes']:.2f}x)",
        ]
    )
