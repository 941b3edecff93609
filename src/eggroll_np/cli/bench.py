"""`eggroll-np bench`: the reference workloads timed against pure inference and naive ES.

`bench tables` measures the reference pages' tables (benchmarks.tables); `bench gpu` the GPU
figures (bench_gpu.py).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from .. import _checks
from ..benchmarks.reference import NAMES
from .threads_option import add_threads_argument, apply_threads

__all__ = ["HELP", "add_arguments", "run", "format_table"]

HELP = (
    "time the rl/sup/cnn workloads against pure inference and naive ES; `bench tables`: the "
    "reference pages' tables; `bench gpu`: the GPU figures; `bench report`: asv's results as one "
    "HTML page that works offline"
)


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
        if "noise_table" in r:
            lines.append(
                f"{r['workload']}: with noise_table={r['noise_table']}: forward "
                f"{r['table_forward_s'] * 1e3:.2f}ms (fwd/inf thr "
                f"{r['table_forward_throughput_ratio']:.3f}), generation "
                f"{r['table_generation_s'] * 1e3:.2f}ms (gen/inf "
                f"{r['table_generation_over_inference']:.2f}), same run"
            )
    for r in results:
        if "blackbox_generation_s" in r:
            lines.append(
                f"{r['workload']}: black-box full-rank ES (one dense member at a time) "
                f"{r['blackbox_generation_s'] * 1e3:.0f}ms per generation, "
                f"{r['speedup_vs_blackbox']:.1f}x slower than EGGROLL"
            )
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """--workload, --repeats, --no-naive, --json, --threads, --noise-table; the optional
    `tables`, `gpu` and `report` sub-commands."""
    from ..benchmarks import tables
    from . import bench_gpu

    sub = p.add_subparsers(
        dest="bench_what",
        metavar="[tables|gpu|report]",
        title="optional sub-commands (without one: time the workloads)",
    )
    tp = sub.add_parser(
        "tables",
        help="the reference pages' tables (model size, population, rank, matching, CNN)",
        description="Measure the reference benchmark pages' tables on this machine: writes "
        "tables.json, tables.md (beside the pages' claims) and PNG plots to --out.",
    )
    tables.add_arguments(tp)
    gp = sub.add_parser("gpu", help=bench_gpu.HELP, description=bench_gpu.HELP)
    bench_gpu.add_arguments(gp)
    rp = sub.add_parser(
        "report",
        help="asv's results as one self-contained HTML page (works offline)",
        description="Write DIR/index.html from an asv results directory: the last comparison "
        "(the two most recently run commits, regressions first) and a history plot per "
        "benchmark, with no remote asset (docs/asv.md).",
    )
    rp.add_argument("--results", default=".asv/results", metavar="DIR",
                    help="asv's results directory (default .asv/results)")  # fmt: skip
    rp.add_argument("--out", required=True, metavar="DIR", help="where index.html is written")
    rp.add_argument("--machine", help="the machine's results to show (default: the only one)")
    rp.add_argument("--factor", type=float, default=1.5,
                    help="head / base ratio counted as a change (default 1.5, as docs/asv.md's "
                    "asv continuous command)")  # fmt: skip
    p.add_argument(
        "--workload",
        choices=[*NAMES, "all"],
        default="all",
        help="the reference workload to time (default all: " + ", ".join(NAMES) + ")",
    )
    p.add_argument("--repeats", type=int, default=7, help="timed repetitions (median reported)")
    p.add_argument("--no-naive", action="store_true", help="skip the slow full-rank ES baseline")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    add_threads_argument(p)
    p.add_argument(
        "--noise-table",
        type=int,
        default=None,
        metavar="T",
        help="also time forward and generation with init(noise_table=T) (the shared noise "
        "table), in alternation with the default noise",
    )
    p.add_argument(
        "--int8",
        action="store_true",
        help="time the workload's shapes with int8 leaves and int8 inputs (the integer "
        "population forward and generation) against float32 inference and the float32 "
        "population forward (MLP workloads: rl, sup)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the benchmark, print the table (and write --json); or `bench tables`."""
    what = getattr(args, "bench_what", None)
    if what == "tables":
        from ..benchmarks import tables

        return tables.main(args)
    if what == "gpu":
        from . import bench_gpu

        return bench_gpu.run(args)
    if what == "report":
        return _report(args)
    _checks.integer("--repeats", args.repeats, 1)
    if args.noise_table is not None:
        from ..noise_table import MAX_TABLE

        _checks.integer("--noise-table", args.noise_table, 1, MAX_TABLE + 1)
    with apply_threads(args.threads):  # inference and EGGROLL run under the same counts
        if getattr(args, "int8", False):
            return _run_int8(args)
        return _run(args)


def _report(args: argparse.Namespace) -> int:
    try:
        from ..benchmarks.asv_report import write_report
        import matplotlib  # noqa: F401 - the plots
    except ModuleNotFoundError as exc:
        raise ValueError(
            f"bench report needs the package {exc.name!r}: pip install 'eggroll_np[bench]'"
        ) from None
    if not args.factor > 1:  # also NaN
        raise ValueError(f"--factor must be > 1, got {args.factor}")
    path = write_report(args.results, args.out, args.machine, args.factor)
    print(f"wrote {path}")
    return 0


def _run_int8(args: argparse.Namespace) -> int:
    from ..benchmarks.int_bench import format_int8, run_int8_workload
    from ..sysinfo import system_info
    from ..tuning import retain_heap_memory

    names = ["rl", "sup"] if args.workload == "all" else [args.workload]
    if not set(names) <= {"rl", "sup"}:
        raise ValueError(f"--int8 takes --workload rl, sup or all, got {args.workload!r}")
    retain_heap_memory()
    results = []
    for name in names:
        results.append(run_int8_workload(name, args.repeats, lambda m: print(m, flush=True)))
        print(format_int8(results[-1]))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"system": system_info(), "results": results}, fh, indent=2, default=str)
        print(f"wrote {args.json}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from ..benchmarks.bench import run_workload
    from ..sysinfo import system_info
    from ..tuning import retain_heap_memory

    retain_heap_memory()  # same process for inference and EGGROLL: both benefit alike
    names = list(NAMES) if args.workload == "all" else [args.workload]
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

        results.append(
            run_workload(name, args.repeats, not args.no_naive, progress, args.noise_table)
        )
    if bar is not None:
        bar.close()
    print(format_table(results))
    if args.json:
        info = system_info()
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"system": info, "results": results}, fh, indent=2, default=str)
        print(f"wrote {args.json}")
    return 0
