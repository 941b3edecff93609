"""Peak resident memory of one inference or one generation of each reference workload.

asv measures a peakmem_ as the peak of the whole benchmark process, set-up included, so each
case builds only what it runs (`eggroll_np.benchmarks.bench.memory_case`: a step never builds
inference's input). docs/asv.md, "Peak memory", compares it with a fresh process running the
same call alone.
"""

from __future__ import annotations

from eggroll_np.benchmarks import bench, reference

from ._common import configure

configure()


class PeakMemory:
    """Peak RSS of a process that builds and runs one case: `inference` (all N * rows rows
    through the unperturbed model) or `step` (ask, batched fitness, tell)."""

    params = [list(reference.NAMES), list(bench.MEMORY_CASES)]
    param_names = ["workload", "case"]
    timeout = 300
    rounds = 1

    def setup(self, name, case):
        self.run_case = bench.memory_case(name, case)

    def peakmem_run(self, name, case):
        self.run_case()
