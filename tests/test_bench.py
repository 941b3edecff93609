"""`bench.run_workload`: what `eggroll-np bench` and asv report for the reference workloads."""

from __future__ import annotations

import types

import pytest

from eggroll_np.benchmarks import bench
from eggroll_np.benchmarks.bench import run_workload
from eggroll_np.benchmarks.reference import WORKLOADS


def test_sup_runs_in_member_chunks_and_allocates_less_than_inference():
    r = run_workload("sup", repeats=1, naive=False)
    assert r["members_per_chunk"] == WORKLOADS["sup"].chunk == 64
    assert r["shared_input"] is True
    assert r["peak_ratio"] == r["peak_rss_generation_bytes"] / r["peak_rss_inference_bytes"]
    # Only one chunk's activations (64 members) are alive at a time, against all N*B rows' in
    # inference: 18 MB against 67 MB when measured.
    assert r["alloc_peak_generation_bytes"] < 0.5 * r["alloc_peak_inference_bytes"]


def test_rl_runs_the_whole_population_at_once():
    r = run_workload("rl", repeats=1, naive=False)
    assert r["members_per_chunk"] is None
    assert r["shared_input"] is False
    assert r["population"] == WORKLOADS["rl"].population


def test_interleaved_alternates_and_times_each_call_on_a_new_generation(monkeypatch):
    # A clock that only the timed calls move (inference 2 s, forward 3 s, generation 5 s, plus
    # 1 s more from the third round on): the medians and per-round ratios follow exactly, each
    # round runs inference first, and no generation k is timed twice (fresh noise every call).
    now = [0.0]
    monkeypatch.setattr(bench, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    calls: list[tuple[str, int | None]] = []
    rounds = [0]

    def infer():
        rounds[0] += 1
        now[0] += 2.0 + (rounds[0] > 3)  # the warm-up call is round 1
        calls.append(("infer", None))

    def timed(name, seconds):
        def fn(k):
            now[0] += seconds + (rounds[0] > 3)
            calls.append((name, k))

        return fn

    t_inf, t, ratio = bench._interleaved(
        infer, {"forward": timed("forward", 3.0), "generation": timed("generation", 5.0)}, 5
    )
    assert calls[:3] == [("infer", None), ("forward", 0), ("generation", 1)]  # warm-up
    assert [c[0] for c in calls[3:]] == ["infer", "forward", "generation"] * 5
    ks = [k for name, k in calls if k is not None]
    assert len(set(ks)) == len(ks) == 12
    # rounds 1-2 (2, 3, 5) and rounds 3-5 (3, 4, 6): medians of the second kind
    assert (t_inf, t) == (3.0, {"forward": 4.0, "generation": 6.0})
    assert ratio == {"forward": pytest.approx(4 / 3), "generation": 2.0}


def test_each_peak_is_its_own_process_and_a_step_never_builds_inference_rows():
    # sup's inference input is N * rows = 32768 rows of 784 floats (103 MB); its step uses one
    # shared 128-row batch. Measured: step 66 MB, inference 249 MB (one thread each).
    step, infer = bench.peak_rss("sup", "step", threads=1), bench.peak_rss("sup", "inference", 1)
    assert step < 0.5 * infer
    assert infer > 103e6


def test_memory_case_names_a_bad_case():
    with pytest.raises(ValueError, match="what must be one of"):
        bench.memory_case("sup", "forward")
