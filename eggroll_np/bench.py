"""`eggroll-np bench`: the rl, sup and cnn workloads timed against pure inference and naive ES."""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import simple_cnn
from .cli import command
from .simple_cnn import MNIST_CNN, SimpleCNN

__all__ = [
    "Workload",
    "WORKLOADS",
    "make_params",
    "make_inputs",
    "inference",
    "population_forward",
    "make_fitness",
    "CNNWorkload",
    "CNN_WORKLOAD",
    "setup_workload",
    "run_workload",
    "format_table",
]


@dataclass(frozen=True)
class Workload:
    """A reference workload: an MLP, a population, and how the inputs are shared."""

    name: str
    sizes: tuple[int, ...]
    population: int
    rows: int  # rows per member
    shared: bool  # one batch shared by every member (sup) or one input per member (rl)

    @property
    def inference_rows(self) -> int:
        """Rows that pure inference pushes through the MLP (all members' rows at once)."""
        return self.population * self.rows


WORKLOADS = {
    "rl": Workload("rl", (1024, 1024, 1024, 16), population=1024, rows=1, shared=False),
    "sup": Workload("sup", (784, 256, 256, 10), population=256, rows=128, shared=True),
}


def make_params(w: Workload, seed: int = 0) -> dict[str, Any]:
    """He-initialised float32 MLP: {"layers": [{"W": (m, n), "b": (n,)}, ...]}."""
    rng = np.random.default_rng(seed)
    layers = []
    for m, n in zip(w.sizes[:-1], w.sizes[1:], strict=True):
        layers.append(
            {
                "W": (rng.standard_normal((m, n), dtype=np.float32) * np.float32(np.sqrt(2.0 / m))),
                "b": np.zeros(n, dtype=np.float32),
            }
        )
    return {"layers": layers}


def make_inputs(w: Workload, seed: int = 1) -> np.ndarray:
    """rl: (N, rows, m) one input per member; sup: (rows, m) shared by all members."""
    rng = np.random.default_rng(seed)
    shape = (w.rows, w.sizes[0]) if w.shared else (w.population, w.rows, w.sizes[0])
    return rng.standard_normal(shape, dtype=np.float32)


def inference(params: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """Plain NumPy MLP on rows x (R, m) with the unperturbed weights -> (R, n_out)."""
    h = x
    layers = params["layers"]
    for j, layer in enumerate(layers):
        h = h @ layer["W"]
        h += layer["b"]
        if j < len(layers) - 1:
            np.maximum(h, 0, out=h)
    return h


def inference_rows(w: Workload, x: np.ndarray) -> np.ndarray:
    """The rows pure inference runs on: every member's rows, (N * rows, m)."""
    if w.shared:
        return np.broadcast_to(x, (w.population, *x.shape)).reshape(-1, x.shape[-1]).copy()
    return x.reshape(-1, x.shape[-1])


def population_forward(pop: Any, x: np.ndarray, n_layers: int) -> np.ndarray:
    """MLP forward of every member through `pop.linear` (bias and ReLU fused): (N, rows, n_out)."""
    h = x
    for j in range(n_layers):
        act = "relu" if j < n_layers - 1 else None
        h = pop.linear(h, f"layers/{j}/W", f"layers/{j}/b", activation=act)
    return h


def make_fitness(w: Workload, x: np.ndarray) -> Callable[[Any], np.ndarray]:
    """A batched fitness (pop -> (N,)): minus the mean squared output (a smooth, cheap score)."""
    n_layers = len(w.sizes) - 1

    def fitness(pop: Any) -> np.ndarray:
        out = population_forward(pop, x, n_layers)
        return -np.mean(out * out, axis=(1, 2), dtype=np.float64)

    return fitness


@dataclass(frozen=True)
class CNNWorkload:
    """The Simple CNN (`eggroll_np.simple_cnn`) on one batch of images shared by every member."""

    name: str
    arch: SimpleCNN
    population: int
    rows: int  # images, shared by every member

    shared = True

    @property
    def inference_rows(self) -> int:
        """Images that pure inference pushes through the CNN (all members' images at once)."""
        return self.population * self.rows


# MNIST-sized (1x28x28) so that the convolutions carry real weight; 32 images per generation.
CNN_WORKLOAD = CNNWorkload("cnn", MNIST_CNN, population=256, rows=32)


def _cnn_images() -> np.ndarray:
    """The cnn workload's shared batch (rows, C, H, W), float32."""
    w = CNN_WORKLOAD
    return np.random.default_rng(1).standard_normal((w.rows, *w.arch.in_shape), np.float32)


def setup_workload(name: str) -> tuple[Any, dict[str, Any], Callable[[], Any], Callable, dict]:
    """(workload, params, pure inference of all N*B rows, batched fitness, init kwargs)."""
    if name == "cnn":
        w = CNN_WORKLOAD
        params = simple_cnn.init_params(w.arch)
        x = _cnn_images()
        rows = np.broadcast_to(x, (w.population, *x.shape)).reshape(-1, *x.shape[1:]).copy()

        def fitness(pop: Any) -> np.ndarray:
            out = simple_cnn.population_forward(pop, x, w.arch)
            return -np.mean(out * out, axis=(1, 2), dtype=np.float64)

        infer = lambda: simple_cnn.inference(params, rows, w.arch)  # noqa: E731
        return w, params, infer, fitness, {"lowrank": simple_cnn.lowrank_choices()}
    wm = WORKLOADS[name]
    params = make_params(wm)
    x = make_inputs(wm)
    rows = inference_rows(wm, x)
    return wm, params, lambda: inference(params, rows), make_fitness(wm, x), {}


def _median_time(fn: Callable[[Any], Any], repeats: int, make_arg: Callable[[int], Any]) -> float:
    """Median seconds of fn(make_arg(k)) over `repeats` calls after one warm-up call.

    make_arg runs outside the timed region; it gives each call a fresh generation so that the
    noise of every timed call is generated anew (a state's noise cache would otherwise make
    every call after the first skip noise generation).
    """
    fn(make_arg(0))  # warm-up: first-touch page faults, BLAS thread start
    times = []
    for k in range(1, repeats + 1):
        arg = make_arg(k)
        t0 = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def fresh_states(state: Any) -> Callable[[int], Any]:
    """k -> a copy of `state` at generation state.generation + k with an empty noise cache."""
    from .population import NoiseCache

    return lambda k: dataclasses.replace(state, generation=state.generation + k, cache=NoiseCache())


def _interleaved(
    infer: Callable[[], Any],
    forward: Callable[[Any], Any],
    generation: Callable[[Any], Any],
    states: Callable[[int], Any],
    repeats: int,
) -> tuple[float, float, float, float, float]:
    """Time inference, population forward and generation in alternation, `repeats` rounds.

    On a shared machine the speed drifts over seconds; alternating the three and taking the
    median of each round's own ratio compares them under the same conditions.

    Returns:
        (inference_s, forward_s, generation_s) medians, and the medians of the per-round
        ratios inference/forward (throughput ratio) and generation/inference.
    """
    infer()
    forward(states(0))
    generation(states(1))
    t_i, t_f, t_g = [], [], []
    for k in range(repeats):
        s_fwd, s_gen = states(2 * k + 2), states(2 * k + 3)
        t0 = time.perf_counter()
        infer()
        t1 = time.perf_counter()
        forward(s_fwd)
        t2 = time.perf_counter()
        generation(s_gen)
        t3 = time.perf_counter()
        t_i.append(t1 - t0)
        t_f.append(t2 - t1)
        t_g.append(t3 - t2)
    med = statistics.median
    return (
        med(t_i),
        med(t_f),
        med(t_g),
        med(i / f for i, f in zip(t_i, t_f, strict=True)),
        med(g / i for g, i in zip(t_g, t_i, strict=True)),
    )


def _peak_bytes(fn: Callable[[], Any]) -> int:
    """Peak bytes allocated (NumPy reports to tracemalloc) while fn runs."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return max(0, peak - base)


def _peak_rss_child(name: str, what: str) -> int:
    """In a fresh process: build workload `name`, run `what` once, return peak RSS in bytes."""
    import resource
    import sys

    from . import init, step
    from .tuning import retain_heap_memory

    retain_heap_memory()

    w, params, infer, fitness, extra = setup_workload(name)
    if what == "inference":
        infer()
    else:
        state = init(params, population=w.population, sigma=0.02, lr=0.01, rank=1, seed=0, **extra)
        step(params, fitness, state, batched=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB


def peak_rss(name: str, what: str) -> int:
    """Peak resident memory (bytes) of a fresh process that runs `what` ("inference" or "step")
    once on workload `name`, setup included: what asv's peakmem_* measures."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return int(pool.apply(_peak_rss_child, (name, what)))


def run_workload(
    name: str, repeats: int = 7, naive: bool = True, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Time one workload; returns seconds (medians), ratios and peak bytes."""
    from . import ask, init, step

    say = progress or (lambda _msg: None)
    w, params, infer, fitness, extra = setup_workload(name)
    cfg = dict(population=w.population, sigma=0.02, lr=0.01, rank=1, seed=0, antithetic=True)
    state = init(params, optimizer="adam", shaping="centered_rank", **cfg, **extra)

    states = fresh_states(state)
    say("inference / forward / generation, interleaved")
    t_inf, t_fwd, t_gen, r_fwd, r_gen = _interleaved(
        infer,
        lambda s: fitness(ask(params, s)),
        lambda s: step(params, fitness, s, batched=True),
        states,
        repeats,
    )
    say("peak memory")
    alloc_inf = _peak_bytes(infer)
    alloc_gen = _peak_bytes(lambda: step(params, fitness, states(repeats + 1), batched=True))
    rss_inf, rss_gen = peak_rss(name, "inference"), peak_rss(name, "step")
    result: dict[str, Any] = {
        "workload": name,
        "population": w.population,
        "sizes": list(w.sizes) if hasattr(w, "sizes") else repr(w.arch),
        "rows_per_member": w.rows,
        "shared_input": w.shared,
        "inference_s": t_inf,
        "forward_s": t_fwd,
        "generation_s": t_gen,
        "forward_throughput_ratio": r_fwd,
        "generation_over_inference": r_gen,
        "peak_rss_inference_bytes": rss_inf,
        "peak_rss_generation_bytes": rss_gen,
        "peak_ratio": rss_gen / max(rss_inf, 1),
        "alloc_peak_inference_bytes": alloc_inf,
        "alloc_peak_generation_bytes": alloc_gen,
        "param_bytes": sum(int(v.nbytes) for v in _leaves(params)),
    }
    if naive:
        say("naive full-rank ES")
        naive_state = init(params, optimizer="adam", shaping="centered_rank", noise="full", **cfg)
        t_naive = _median_time(
            lambda s: step(params, fitness, s, batched=True),
            max(1, repeats // 4),
            fresh_states(naive_state),
        )
        result["naive_generation_s"] = t_naive
        result["speedup_vs_naive"] = t_naive / t_gen
        if name == "cnn":  # what a CNN cost before the population layers: N dense members
            say("black-box full-rank ES")
            member_fitness = _cnn_member_fitness(params)
            t_bb = _median_time(
                lambda s: step(params, member_fitness, s), 1, fresh_states(naive_state)
            )
            result["blackbox_generation_s"] = t_bb
            result["speedup_vs_blackbox"] = t_bb / t_gen
    return result


def _cnn_member_fitness(params: dict[str, Any]) -> Callable[[Any], float]:
    """The cnn workload's fitness of ONE member tree (black-box ES: plain inference per member)."""
    w, x = CNN_WORKLOAD, _cnn_images()
    return lambda tree: -float(np.mean(simple_cnn.inference(tree, x, w.arch) ** 2))


def _leaves(tree: Any) -> list[Any]:
    from .tree import flatten

    return flatten(tree)[0]


def format_table(results: list[dict[str, Any]]) -> str:
    """A plain-text table of bench results."""
    header = (
        f"{'workload':<9}{'inference':>11}{'forward':>10}{'fwd/inf thr':>13}{'generation':>12}"
        f"{'gen/inf':>9}{'naive ES':>10}{'speedup':>9}{'peak RSS gen/inf':>18}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        naive = (
            f"{r['naive_generation_s'] * 1e3:>8.0f}ms"
            if "naive_generation_s" in r
            else f"{'-':>10}"
        )
        speed = f"{r['speedup_vs_naive']:>8.1f}x" if "speedup_vs_naive" in r else f"{'-':>9}"
        lines.append(
            f"{r['workload']:<9}{r['inference_s'] * 1e3:>9.2f}ms{r['forward_s'] * 1e3:>8.2f}ms"
            f"{r['forward_throughput_ratio']:>13.3f}{r['generation_s'] * 1e3:>10.2f}ms"
            f"{r['generation_over_inference']:>9.2f}{naive}{speed}{r['peak_ratio']:>18.2f}"
        )
    for r in results:
        if "blackbox_generation_s" in r:
            lines.append(
                f"{r['workload']}: black-box full-rank ES (one dense member at a time) "
                f"{r['blackbox_generation_s'] * 1e3:.0f}ms per generation, "
                f"{r['speedup_vs_blackbox']:.1f}x slower than EGGROLL"
            )
    return "\n".join(lines)


def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workload", choices=[*WORKLOADS, "cnn", "all"], default="all")
    p.add_argument("--repeats", type=int, default=7, help="timed repetitions (median reported)")
    p.add_argument("--no-naive", action="store_true", help="skip the slow full-rank ES baseline")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="BLAS and eggroll_np threads for the whole run (0: leave both at their defaults)",
    )


@command("bench", "time the rl/sup/cnn workloads against pure inference and naive ES", _bench_args)
def _run_bench(args: argparse.Namespace) -> int:
    from .sysinfo import system_info

    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0, got {args.threads}")
    if args.threads:
        from threadpoolctl import threadpool_limits

        from . import _ext

        # Held until this function returns: inference and EGGROLL run under the same limits.
        limits = threadpool_limits(limits=args.threads, user_api="blas")  # noqa: F841
        if _ext.core is not None:
            _ext.core.set_num_threads(args.threads)
    from .tuning import retain_heap_memory

    retain_heap_memory()  # same process for inference and EGGROLL: both benefit alike
    names = [*WORKLOADS, "cnn"] if args.workload == "all" else [args.workload]
    steps_per = {n: 2 + (not args.no_naive) + (n == "cnn" and not args.no_naive) for n in names}
    try:
        from tqdm import tqdm

        bar = tqdm(total=sum(steps_per.values()), desc="bench", unit="step")
    except ImportError:
        bar = None
    results = []
    for name in names:

        def progress(msg: str, name: str = name) -> None:
            if bar is not None:
                bar.set_postfix_str(f"{name}: {msg}")
                bar.update(1)
            else:
                print(f"[{name}] {msg}", flush=True)

        results.append(run_workload(name, args.repeats, not args.no_naive, progress))
    if bar is not None:
        bar.close()
    print(format_table(results))
    if args.json:
        info = system_info()
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"system": info, "results": results}, fh, indent=2, default=str)
        print(f"wrote {args.json}")
    return 0
