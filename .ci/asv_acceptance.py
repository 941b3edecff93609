#!/usr/bin/env python3
"""Does `asv continuous` give the right verdicts on this machine? Rerunnable acceptance check.

In a scratch clone of this repository's HEAD it commits two changes on top of HEAD and compares
each with HEAD, `--runs` times, with the one command docs/asv.md recommends:

- docstring: a docstring-only change. Expected: no benchmark changed (exit status 0).
- slowdown: the noise kernel (`noise.normals_core`) and `pop.linear`'s epilogue
  (`epilogue.epilogue`) each run their kernel call twice: a 2x slowdown of both. Expected:
  flagged (exit status 1) with `Noise.time_eggroll_normals` and
  `PopulationLinear.time_linear` among the regressions.

    python .ci/asv_acceptance.py [--runs 3] [--work .asv/acceptance] [--bench REGEX]

The scratch clone, asv's environments and a CMake build directory shared by the three commits
(only the first build compiles the C++ core) live under --work and are reused by later calls.
Exit status 0 when every run gave the expected verdict.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The documented comparison (docs/asv.md, "Stable comparisons"), without the commits.
COMMAND = [
    "asv", "continuous", "--interleave-rounds", "--factor", "1.5", "--split", "--no-only-changed",
]  # fmt: skip
# Enough to see both injections, and the forward that gave the false alarm of issue 24.
DEFAULT_BENCH = (
    r"bench_cpu\.(Noise\.time_eggroll_normals|PopulationLinear\.time_linear"
    r"|Workload\.time_population_forward)"
)
MUST_FLAG = ("Noise.time_eggroll_normals", "PopulationLinear.time_linear")

# (file, the exact text to find, its replacement): each must match exactly once.
DOCSTRING = [
    (
        "src/eggroll_np/noise.py",
        '"""The first `count` values of stream (leaf, member_key, epoch) under `seed`.',
        '"""The first `count` values of stream (leaf, member_key, epoch) under `seed` (the\n'
        "    acceptance check's docstring-only change).",
    )
]
SLOWDOWN = [
    (
        "src/eggroll_np/noise.py",
        "    _ext.core.fill_normals_many(seed, leaves, keys, epoch, offsets, outs)\n",
        "    _ext.core.fill_normals_many(seed, leaves, keys, epoch, offsets, outs)\n"
        "    _ext.core.fill_normals_many(seed, leaves, keys, epoch, offsets, outs)  # injected\n",
    ),
    (
        "src/eggroll_np/epilogue.py",
        "    dispatch.select(\"linear_epilogue\", arrays)(\n"
        "        out, base, x, left, xa, None if xa_rows is None else _u32(xa_rows), right, *members, code\n"
        "    )\n",
        "    for _ in range(2):  # injected: the epilogue twice\n"
        "        dispatch.select(\"linear_epilogue\", arrays)(\n"
        "            out, base, x, left, xa, None if xa_rows is None else _u32(xa_rows), right,\n"
        "            *members, code,\n"
        "        )\n",
    ),
]


def run(cmd: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=cwd, text=True, **kw)


def git(clone: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=clone, check=True, text=True, capture_output=True
    ).stdout.strip()


def commit_edit(clone: Path, base: str, edits: list[tuple[str, str, str]], msg: str) -> str:
    """A commit on top of base with `edits` applied; returns its hash."""
    git(clone, "checkout", "-q", "--detach", base)
    for path, old, new in edits:
        f = clone / path
        text = f.read_text()
        if text.count(old) != 1:
            sys.exit(f"{path}: the text to edit was found {text.count(old)} times, not once: "
                     f"update {Path(__file__).name} to the code ({old.splitlines()[0]!r})")  # fmt: skip
        f.write_text(text.replace(old, new))
    git(clone, "-c", "user.name=acceptance", "-c", "user.email=acceptance@invalid",
        "commit", "-q", "-am", msg)  # fmt: skip
    return git(clone, "rev-parse", "HEAD")


def prepare(work: Path) -> tuple[Path, dict[str, str]]:
    """The scratch clone at this repository's HEAD, its asv config, and the three commits."""
    clone = work / "repo"
    if clone.exists():
        shutil.rmtree(clone)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, check=True, text=True,
                          capture_output=True).stdout.strip()  # fmt: skip
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(ROOT), str(clone)], check=True)
    git(clone, "checkout", "-q", "--detach", head)
    commits = {"base": head}
    commits["docstring"] = commit_edit(clone, head, DOCSTRING, "docstring only")
    commits["slowdown"] = commit_edit(clone, head, SLOWDOWN, "2x noise kernel and epilogue")
    git(clone, "checkout", "-q", "--detach", head)
    conf = json.loads((ROOT / "asv.conf.json").read_text())
    conf.update(
        env_dir=str(work / "env"),
        results_dir=str(work / "results"),
        html_dir=str(work / "html"),
        build_cache_size=4,
        # One CMake build directory for every commit: the injected commits change only Python.
        # The C++ core only: these are CPU benchmarks, and nvcc would take most of the build.
        build_command=[
            "python -m pip wheel --no-deps --no-build-isolation "
            f"-Cbuild-dir={work / 'cmake-build'} -Ccmake.define.EGGROLL_CUDA=OFF "
            "-w {build_cache_dir} {build_dir}"
        ],
    )
    (clone / "asv.conf.json").write_text(json.dumps(conf, indent=2))
    return clone, commits


def changed(output: str) -> dict[str, list[str]]:
    """Benchmarks asv --split listed as worse / better (names without parameters)."""
    found: dict[str, list[str]] = {"worse": [], "better": []}
    section = None
    for line in output.splitlines():
        if "Benchmarks that have got worse" in line:
            section = "worse"
        elif "Benchmarks that have improved" in line:
            section = "better"
        elif "Benchmarks that have stayed the same" in line or "not comparable" in line:
            section = None
        elif section and (m := re.search(r"\s(bench_\w+\.\S+)", line)):
            found[section].append(m.group(1))
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="comparisons per scenario (default 3)")
    ap.add_argument("--work", type=Path, default=ROOT / ".asv" / "acceptance",
                    help="scratch directory, reused between calls (default .asv/acceptance)")
    ap.add_argument("--bench", default=DEFAULT_BENCH, help="asv -b filter of the comparisons")
    ap.add_argument("--log", type=Path, help="also write every asv output to this file")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    args.work.mkdir(parents=True, exist_ok=True)
    args.work = args.work.resolve()
    clone, commits = prepare(args.work)
    run(["asv", "machine", "--yes"], clone, check=True, capture_output=True)
    log = args.log.open("w") if args.log else None
    verdicts = []
    for r in range(1, args.runs + 1):
        for scenario in ("docstring", "slowdown"):
            cmd = [*COMMAND, "-b", args.bench, commits["base"], commits[scenario]]
            t0 = time.monotonic()
            p = run(cmd, clone, capture_output=True)
            out = p.stdout + p.stderr
            if log:
                log.write(f"### run {r} {scenario}: {' '.join(cmd)}\n{out}\n")
                log.flush()
            found = changed(out)
            if scenario == "docstring":
                ok = p.returncode == 0 and not found["worse"] and not found["better"]
            else:
                ok = p.returncode == 1 and all(
                    any(name in b for b in found["worse"]) for name in MUST_FLAG
                )
            verdicts.append(ok)
            print(f"run {r} {scenario:9s} exit {p.returncode} in {time.monotonic() - t0:.0f} s: "
                  f"worse {found['worse']} better {found['better']} -> "
                  f"{'as expected' if ok else 'WRONG'}", flush=True)  # fmt: skip
            if p.returncode not in (0, 1):
                print(out[-3000:], file=sys.stderr)
    print(f"{sum(verdicts)} of {len(verdicts)} comparisons gave the expected verdict")
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
