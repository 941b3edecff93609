"""Timing of the reference workloads (`workloads.reference`) against pure inference and naive ES.

The `eggroll-np bench` command (`eggroll_np.cli.bench`) and asv call `run_workload`.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from ..tree import flatten
from .reference import cnn_member_fitness, setup

__all__ = ["MEMORY_CASES", "fresh_states", "memory_case", "peak_rss", "run_workload"]


def _median_time(fn: Callable[[Any], Any], repeats: int, make_arg: Callable[[int], Any]) -> float:
    """Median seconds of fn(make_arg(k)) over `repeats` calls after one warm-up call.

    make_arg runs outside the timed region; it gives each call a fresh generation, so that
    every timed call generates (other) noise, as a real run does.
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
    """k -> a copy of `state` at generation state.generation + k (other noise, made anew)."""
    return lambda k: dataclasses.replace(state, generation=state.generation + k)


def _interleaved(
    infer: Callable[[], Any],
    timed: dict[str, Callable[[int], Any]],
    repeats: int,
) -> tuple[float, dict[str, float], dict[str, float]]:
    """Time inference and each of `timed` (forward, generation, ...) in alternation.

    On a shared machine the speed drifts over seconds; alternating them and taking the median
    of each round's own ratio compares them under the same conditions. A timed function takes
    k and runs generation k (a new one each call: fresh noise); the argument is made inside the
    timed region, so keep it cheap (`fresh_states`).

    Returns:
        inference_s median, {name: seconds median}, {name: median of the per-round ratios
        time(name) / time(inference)}.
    """
    infer()
    for j, fn in enumerate(timed.values()):  # warm-up (a noise table is made here, once)
        fn(j)
    t_i: list[float] = []
    t: dict[str, list[float]] = {name: [] for name in timed}
    k = len(timed)
    for r in range(repeats):
        t0 = time.perf_counter()
        infer()
        t_i.append(time.perf_counter() - t0)
        for j, (name, fn) in enumerate(timed.items()):
            t0 = time.perf_counter()
            fn(k * (r + 1) + j)
            t[name].append(time.perf_counter() - t0)
    med = statistics.median
    return (
        med(t_i),
        {name: med(v) for name, v in t.items()},
        {name: med(x / i for x, i in zip(v, t_i, strict=True)) for name, v in t.items()},
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


#: What `memory_case` can build and run: pure inference, or one generation (ask, fitness, tell).
MEMORY_CASES = ("inference", "step")


def memory_case(name: str, what: str) -> Callable[[], Any]:
    """Build only what `what` ("inference" or "step") of workload `name` needs; returns the call
    to measure. A step never builds inference's input (98 MB for sup), so the peak memory of a
    process that runs it is the step's own. asv's `PeakMemory` and `peak_rss` use this."""
    from .. import init, step

    if what not in MEMORY_CASES:
        raise ValueError(f"what must be one of {list(MEMORY_CASES)}, got {what!r}")
    w, params, infer, fitness, extra = setup(name)
    if what == "inference":
        return infer
    state = init(params, population=w.population, sigma=0.02, lr=0.01, rank=1, seed=0, **extra)
    return lambda: step(params, fitness, state, batched=True)


def _peak_rss_child(name: str, what: str, threads: int) -> int:
    """In a fresh process: build `what` of workload `name`, run it once, return peak RSS bytes."""
    from ..sysinfo import peak_rss_bytes
    from ..tuning import retain_heap_memory
    from ..tuning import threads as set_threads

    retain_heap_memory()
    set_threads(threads)  # BLAS's and the core's per-thread buffers count
    memory_case(name, what)()
    return peak_rss_bytes()


def peak_rss(name: str, what: str, threads: int | None = None) -> int:
    """Peak resident memory (bytes) of a fresh process that builds and runs only `what`
    ("inference" or "step") of workload `name`, imports and set-up included: what asv's
    `PeakMemory.peakmem_run` measures. Each call is its own process, so the two cases never
    share a maximum. `threads`: BLAS and core threads there (default: this process's core
    count)."""
    import multiprocessing

    from ..tuning import threads as current_threads

    if what not in MEMORY_CASES:
        raise ValueError(f"what must be one of {list(MEMORY_CASES)}, got {what!r}")
    counts = current_threads()
    n = (counts.core or counts.blas or 1) if threads is None else threads
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return int(pool.apply(_peak_rss_child, (name, what, n)))


def run_workload(
    name: str,
    repeats: int = 7,
    naive: bool = True,
    progress: Callable[[str], None] | None = None,
    noise_table: int | None = None,
) -> dict[str, Any]:
    """Time one workload; returns seconds (medians), ratios and peak bytes.

    With `noise_table` (T values), the same run also times the forward and the generation of a
    state with `init(noise_table=T)`, in alternation with the default's (keys `table_*`).
    """
    from .. import ask, init, step

    say = progress or (lambda _msg: None)
    w, params, infer, fitness, extra = setup(name)
    cfg = dict(population=w.population, sigma=0.02, lr=0.01, rank=1, seed=0, antithetic=True)
    state = init(params, optimizer="adam", shaping="centered_rank", **cfg, **extra)

    states = fresh_states(state)

    def forward(s: Any) -> Any:
        return fitness(ask(params, s))

    def generation(s: Any) -> Any:
        return step(params, fitness, s, batched=True)

    timed = {
        "forward": lambda k: forward(states(k)),
        "generation": lambda k: generation(states(k)),
    }
    if noise_table is not None:
        table_states = fresh_states(
            init(
                params,
                optimizer="adam",
                shaping="centered_rank",
                noise_table=noise_table,
                **cfg,
                **extra,
            )
        )
        timed["table_forward"] = lambda k: forward(table_states(k))
        timed["table_generation"] = lambda k: generation(table_states(k))
    say("inference / forward / generation, interleaved")
    t_inf, t, ratio = _interleaved(infer, timed, repeats)
    t_fwd, t_gen = t["forward"], t["generation"]
    # 1 / median(f / i) = median(i / f) for an odd number of rounds (the default 7).
    r_fwd, r_gen = 1.0 / ratio["forward"], ratio["generation"]
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
        # members per `Population.chunks` chunk of the forward (None: the whole population)
        "members_per_chunk": getattr(w, "chunk", None),
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
        "param_bytes": sum(int(v.nbytes) for v in flatten(params)[0]),
    }
    if noise_table is not None:
        result["noise_table"] = noise_table
        result["table_forward_s"] = t["table_forward"]
        result["table_generation_s"] = t["table_generation"]
        result["table_forward_throughput_ratio"] = 1.0 / ratio["table_forward"]
        result["table_generation_over_inference"] = ratio["table_generation"]
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
            member_fitness = cnn_member_fitness()
            t_bb = _median_time(
                lambda s: step(params, member_fitness, s), 1, fresh_states(naive_state)
            )
            result["blackbox_generation_s"] = t_bb
            result["speedup_vs_blackbox"] = t_bb / t_gen
    return result
