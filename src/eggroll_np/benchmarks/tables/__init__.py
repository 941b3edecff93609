"""`eggroll-np bench tables`: the reference pages' benchmark tables, measured on this machine.

Five sections (model_size, population_scaling, rank, matching_convergence, cnn) written to
DIR/tables.json, DIR/tables.md (beside the pages' claimed figures) and DIR/*.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

from ... import _checks
from ...cli.threads_option import add_threads_argument
from ...tuning import threads_for_run
from .report import CLAIMS, markdown, plot
from .sections import FULL, QUICK, SECTIONS, Settings

__all__ = ["SECTIONS", "CLAIMS", "Settings", "FULL", "QUICK", "run_tables", "add_arguments", "main"]


def _write_atomic(path: str, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _machine() -> str:
    cores = os.cpu_count()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    text = f"{_cpu_name()}, {cores} cores"
    if load is not None:
        text += f", load average {load[0]:.1f} at start"
    return text


def _previous(path: str) -> dict[str, Any]:
    """The tables of an earlier run in `path` (empty when there is none)."""
    if not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path!r} is not a tables.json: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path!r} is not a tables.json: not an object")
    return data


def run_tables(
    out: str,
    settings: Settings,
    command: str = "",
    say: Callable[[str], None] | None = None,
    threads: int = 1,
    only: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Measure every section with `settings`; write tables.json, tables.md and the plots to `out`.

    `only` measures just those sections and keeps the others of an earlier tables.json in
    `out` (each section records the command and machine that measured it). `threads` is every
    command's `--threads`: eggroll_np.threads(threads) for BLAS and the C++ core, 0 leaves both
    at their defaults (both methods get the same setting).

    Returns:
        The tables: {section name: {..., "rows": [...]}, "meta": {...}}.
    """
    names = list(SECTIONS) if only is None else list(only)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise ValueError(f"--only: unknown section(s) {unknown}; choose from {list(SECTIONS)}")
    say = say or (lambda _m: None)
    os.makedirs(out, exist_ok=True)
    meta: dict[str, Any] = {
        "command": command,
        "machine": _machine(),
        "settings": dataclasses.asdict(settings),
        "threads": threads,
    }
    json_path = os.path.join(out, "tables.json")
    tables: dict[str, Any] = {} if only is None else _previous(json_path)
    start = time.perf_counter()
    with threads_for_run(threads):
        for name in names:
            t0 = time.perf_counter()
            tables[name] = SECTIONS[name](settings, lambda m, name=name: say(f"{name}: {m}"))
            tables[name]["section_s"] = round(time.perf_counter() - t0, 1)
            tables[name]["measured_by"] = {"command": command, "machine": meta["machine"]}
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    meta["wall_s"] = time.perf_counter() - start
    if load is not None:
        meta["machine"] += f", {load[0]:.1f} at the end"
    tables["meta"] = meta
    _write_atomic(json_path, json.dumps(tables, indent=2) + "\n")
    _write_atomic(os.path.join(out, "tables.md"), markdown(tables))
    plot(tables, out)
    return tables


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(float(v)) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got {text!r}")
    return values


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `eggroll-np bench tables`."""
    p.add_argument("--out", metavar="DIR", required=True, help="directory for the results")
    p.add_argument(
        "--quick",
        action="store_true",
        help="small models and budgets (every section still filled; about 5 minutes or less)",
    )
    p.add_argument(
        "--sizes", type=_ints, metavar="P,P,...", help="model_size: parameter counts (e.g. 1e6)"
    )
    p.add_argument("--populations", type=_ints, metavar="N,N,...", help="population_scaling")
    p.add_argument(
        "--population",
        type=int,
        metavar="N",
        help="population of every other table (default 256, the reference pages' setting)",
    )
    p.add_argument(
        "--only",
        type=lambda t: tuple(x.strip() for x in t.split(",") if x.strip()),
        metavar="SECTION,...",
        help=f"measure only these sections ({', '.join(SECTIONS)}) and keep the others of an "
        "earlier run in --out",
    )
    add_threads_argument(p)
    p.add_argument(
        "--budget",
        type=float,
        default=1.0,
        metavar="F",
        help="multiply every generation/epoch budget by F (default 1)",
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """FULL or QUICK with the overrides given on the command line."""
    s = QUICK if args.quick else FULL
    if args.sizes:
        s = dataclasses.replace(s, sizes=args.sizes)
    if args.populations:
        odd = [n for n in args.populations if n % 2]
        if odd:
            raise ValueError(f"--populations must be even (antithetic pairs), got {odd}")
        s = dataclasses.replace(s, populations=args.populations)
    if args.population is not None:
        if _checks.integer("--population", args.population, 2) % 2:
            raise ValueError(f"--population must be even (antithetic pairs), got {args.population}")
        s = dataclasses.replace(s, population=args.population)
    return s.scaled(_checks.real("--budget", args.budget, 0.0, lo_open=True))


def _command(args: argparse.Namespace) -> str:
    """The command line that `args` stands for (recorded beside the figures)."""
    parts = ["eggroll-np", "bench", "tables"]
    if args.quick:
        parts.append("--quick")
    for key in ("sizes", "populations", "only"):
        value = getattr(args, key)
        if value:
            parts += [f"--{key}", ",".join(str(v) for v in value)]
    if args.population is not None:
        parts += ["--population", str(args.population)]
    if args.budget != 1.0:
        parts += ["--budget", str(args.budget)]
    if args.threads != 0:
        parts += ["--threads", str(args.threads)]
    return shlex.join([*parts, "--out", args.out])


def main(args: argparse.Namespace) -> int:
    """Run `eggroll-np bench tables` from parsed arguments."""
    settings = settings_from_args(args)
    command = _command(args)

    def say(message: str) -> None:
        print(f"[tables] {message}", file=sys.stderr, flush=True)

    from ...tuning import retain_heap_memory

    retain_heap_memory()  # as `bench` and `train`: freed large arrays are reused
    tables = run_tables(args.out, settings, command, say, args.threads, args.only)
    print(markdown(tables))
    print(f"wrote {os.path.join(args.out, 'tables.json')}, tables.md and plots")
    return 0
