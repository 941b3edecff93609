"""`bench.run_workload`: what `eggroll-np bench` and asv report for the reference workloads."""

from __future__ import annotations

from eggroll_np.benchmarks.bench import run_workload
from eggroll_np.benchmarks.reference import WORKLOADS


def test_sup_runs_in_member_chunks_and_allocates_less_than_inference():
    r = run_workload("sup", repeats=1, naive=False)
    assert r["members_per_chunk"] == WORKLOADS["sup"].chunk == 64
    assert r["shared_input"] is True
    for key in ("inference_s", "forward_s", "generation_s", "forward_throughput_ratio",
                "generation_over_inference", "peak_rss_generation_bytes"):  # fmt: skip
        assert r[key] > 0, key
    # Only one chunk's activations (64 members) are alive at a time, against all N*B rows' in
    # inference: 18 MB against 67 MB when measured.
    assert r["alloc_peak_generation_bytes"] < 0.5 * r["alloc_peak_inference_bytes"]


def test_rl_runs_the_whole_population_at_once():
    r = run_workload("rl", repeats=1, naive=False)
    assert r["members_per_chunk"] is None
    assert r["shared_input"] is False
    assert r["population"] == WORKLOADS["rl"].population
