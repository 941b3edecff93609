"""What a first GPU hour must verify, in one command: ``eggroll-np gpu-check --out DIR``.

Runs, on the current CUDA device and in under 12 minutes (an H100/H200-class GPU):
  1. device: the device, driver, CUDA runtime and CuPy versions (and `nvidia-smi` where present);
  2. gpu-tests: tests/test_cuda*.py (device, plumbing, emulation) and every test marked `gpu`,
     in a child process with EGGROLL_REQUIRE_GPU=1; a test skipped for want of a GPU, CuPy or
     the CUDA extension counts as a failure here;
  3. bit-check: GPU normals, factors and Philox blocks against the CPU's at every SIMD level;
  4. probes: more rows than a grid, > 2^31 values in one call, a non-default stream,
     misaligned views, and the engine's Population taking the _cuda path (`gpu_probes`);
  5. memcheck: compute-sanitizer's memcheck over kernel calls on odd shapes (where the tool
     is installed; reported as skipped otherwise);
  6. bench: `eggroll-np bench gpu` with every figure of docs/benchmarks.md, its output check
     included.
Writes DIR/gpu_check.md and DIR/gpu_check.json (plus the bench's JSON and the tests' JUnit XML)
and exits 0 when every step passed, 1 otherwise. Without a usable GPU it prints one line saying
so, writes nothing and exits 2.

Step 2 runs the repository's tests/, which a wheel does not ship: run the command from a
checkout's root, pass ``--tests DIR``, or leave that step out (``--only`` the others). Without
them it says so in one line before anything runs (exit 2).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import __version__, _ext, dispatch

__all__ = ["STEPS", "TOTAL_BUDGET", "junit_summary", "render_markdown", "tests_dir", "add_arguments", "run"]

# Skip reasons that mean "no GPU usable here" (conftest's gpu marker, test_cuda's checks).
_MISSING_GPU = ("needs a GPU", "no CUDA device", "CuPy", "_cuda was not built")
_GPU_PRESENT_SKIP = "this machine has a GPU"  # tests of the no-GPU error path skip on a GPU
_PROBES_IN_PROCESS = "not test_gpu_probe and not test_gpu_noise_bit_identical"


def junit_summary(xml_text: str) -> dict[str, Any]:
    """Counts of a pytest JUnit report, and the skips that mean "no GPU here" (failures here)."""
    root = ET.fromstring(xml_text)
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    gpu_skips: list[str] = []
    for case in root.iter("testcase"):
        counts["tests"] += 1
        for child in case:
            if child.tag in ("failure", "error"):
                counts["failures" if child.tag == "failure" else "errors"] += 1
            elif child.tag == "skipped":
                counts["skipped"] += 1
                msg = child.get("message", "")
                if any(w in msg for w in _MISSING_GPU) and _GPU_PRESENT_SKIP not in msg:
                    gpu_skips.append(f"{case.get('classname')}::{case.get('name')}: {msg}")
    counts["gpu_skips"] = gpu_skips
    return counts


def _device() -> dict[str, Any]:
    from ..backend import cupy

    info = dict(_ext.cuda.device_info(cupy.cuda.Device().id))
    info["compute_capability"] = list(info["compute_capability"])
    out: dict[str, Any] = {
        **info,
        "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
        "cuda_driver": cupy.cuda.runtime.driverGetVersion(),
        "cupy": cupy.__version__,
        "eggroll_np": __version__,
        "simd_levels": list(_ext.core.available_simd_levels()) if _ext.core else [],
        "CUPY_TF32": os.environ.get("CUPY_TF32", "unset"),
    }
    smi = shutil.which("nvidia-smi")
    if smi:
        query = "--query-gpu=name,driver_version,memory.total,compute_cap,clocks.max.sm"
        done = subprocess.run(
            [smi, query, "--format=csv,noheader"], capture_output=True, text=True, timeout=60
        )
        out["nvidia_smi"] = done.stdout.strip() or done.stderr.strip()
    return out


def tests_dir(explicit: str | None) -> Path:
    """The repository's tests/ that the gpu-tests step runs: `explicit` or ./tests.

    Raises:
        ValueError: naming --tests (or ./tests) when it holds no test_cuda.py: an installed
            wheel has no tests/, so the step needs a checkout.
    """
    where = Path(explicit) if explicit else Path.cwd() / "tests"
    if (where / "test_cuda.py").is_file():
        return where.resolve()
    what = f"--tests {explicit}" if explicit else f"{where} (the default of --tests)"
    raise ValueError(
        f"{what}: no test_cuda.py there. The gpu-tests step runs the repository's tests/, which "
        "an installed wheel does not ship: run from a checkout's root, pass --tests DIR, or "
        "leave the step out with --only"
    )


def _pytest(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, EGGROLL_REQUIRE_GPU="1")
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env,
    )  # fmt: skip


def _gpu_tests(out: Path, tests: Path, budget: float) -> dict[str, Any]:
    common = ["-q", "-p", "no:cacheprovider", "-rs"]
    cuda_files = sorted(str(p) for p in tests.glob("test_cuda*.py"))  # device, plumbing, emulation
    elsewhere = [str(tests), "-m", "gpu", *(f"--ignore={f}" for f in cuda_files)]
    runs = {
        "cuda": [*cuda_files, "-k", _PROBES_IN_PROCESS],
        "marked_gpu": elsewhere,  # the `xp` fixture's CuPy cases of the other test files
    }
    result: dict[str, Any] = {}
    ok = True
    for name, args in runs.items():
        xml = out / f"gpu_tests_{name}.xml"
        done = _pytest([*common, f"--junitxml={xml}", *args], tests.parent, budget / 2)
        summary = junit_summary(xml.read_text()) if xml.is_file() else {"missing_report": True}
        summary["returncode"] = done.returncode
        summary["tail"] = (done.stdout + done.stderr)[-3000:]
        # pytest's status 5 is "no test selected": acceptable only outside the CUDA files
        passed = done.returncode == 0 or (name == "marked_gpu" and done.returncode == 5)
        ok &= passed and xml.is_file() and not summary.get("gpu_skips")
        result[name] = summary
    if not ok:
        raise AssertionError(f"GPU tests failed or skipped for want of a GPU: {_brief(result)}")
    return result


def _brief(result: dict[str, Any]) -> str:
    return "; ".join(
        f"{k}: rc={v.get('returncode')} failures={v.get('failures')} errors={v.get('errors')} "
        f"gpu_skips={len(v.get('gpu_skips', []))}"
        for k, v in result.items()
    )


def _sanitizer() -> str | None:
    found = shutil.which("compute-sanitizer")
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if not found and root and (Path(root) / "bin" / "compute-sanitizer").is_file():
            found = str(Path(root) / "bin" / "compute-sanitizer")
    return found


def _memcheck(out: Path, budget: float) -> dict[str, Any]:
    tool = _sanitizer()
    if tool is None:
        return {"skipped": "compute-sanitizer not found (PATH, $CUDA_HOME/bin, /usr/local/cuda)"}
    code = "from eggroll_np.gpu import probes; probes.odd_shapes()"
    cmd = [tool, "--tool", "memcheck", "--error-exitcode", "9", "--leak-check", "no",
           sys.executable, "-c", code]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=budget, cwd=out)
    text = (done.stdout + done.stderr)[-4000:]
    if done.returncode != 0:
        raise AssertionError(f"memcheck exit status {done.returncode}:\n{text}")
    return {"tool": tool, "returncode": done.returncode, "tail": text[-1500:]}


def _bench(out: Path, quick: bool) -> dict[str, Any]:
    from ..benchmarks import gpu_bench

    result = gpu_bench.run(quick=quick)
    (out / "gpu_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    bad = [c for c in gpu_bench.output_checks(result) if not c["ok"]]
    if bad:
        raise AssertionError(f"GPU outputs differ from the CPU path: {bad}")
    return result


def _probes() -> dict[str, Any]:
    from . import probes as gpu_probes

    results, failed = {}, []
    for name, probe in gpu_probes.PROBES.items():
        try:
            results[name] = {"ok": True, **probe()}
        except Exception as exc:  # noqa: BLE001 - every probe reports, the step then fails
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}
            failed.append(name)
    if failed:
        raise AssertionError(f"probes failed: {failed}: {results}")
    return results


def _bit_check() -> dict[str, Any]:
    from . import probes as gpu_probes

    return gpu_probes.bit_check()


#: (name, seconds it may take, what it runs: step(ctx, budget) -> result). The steps that run a
#: child process pass their budget on as its timeout; the budgets add up to 11 minutes, within
#: TOTAL_BUDGET (the docstring's "under 12 minutes").
STEPS: list[tuple[str, float, Callable[[dict[str, Any], float], dict[str, Any]]]] = [
    ("device", 60, lambda ctx, budget: _device()),
    ("gpu-tests", 240, lambda ctx, budget: _gpu_tests(ctx["out"], ctx["tests"], budget)),
    ("bit-check", 30, lambda ctx, budget: _bit_check()),
    ("probes", 60, lambda ctx, budget: _probes()),
    ("memcheck", 150, lambda ctx, budget: _memcheck(ctx["out"], budget)),
    ("bench", 120, lambda ctx, budget: _bench(ctx["out"], ctx["quick"])),
]
TOTAL_BUDGET = 12 * 60
"""Seconds the whole check may take on an H100/H200-class GPU."""


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: a status line per step, then each step's details as JSON."""
    lines = [
        "# gpu_check report",
        "",
        f"Command: `{report['command']}`  ",
        f"Result: **{'PASS' if report['ok'] else 'FAIL'}** in {report['seconds']:.0f} s",
        "",
        "| step | status | seconds | note |",
        "| --- | --- | --- | --- |",
    ]
    for s in report["steps"]:
        note = s.get("error") or s.get("result", {}).get("skipped", "")
        note = str(note).replace("|", "/").replace("\n", " ")[:200]
        lines.append(f"| {s['name']} | {s['status']} | {s['seconds']:.1f} | {note} |")
    for s in report["steps"]:
        body = json.dumps(s.get("result", s.get("error")), indent=2, default=str)
        lines += ["", f"## {s['name']}", "", "```json", body, "```"]
    return "\n".join(lines) + "\n"


def _no_gpu_reason() -> str | None:
    reason = dispatch.cuda_unavailable_reason()
    return None if reason is None else f"no CUDA device can be used: {reason}"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `eggroll-np gpu-check`: --out, --tests, --quick, --only."""
    p.add_argument("--out", required=True, metavar="DIR", help="directory for the report")
    p.add_argument("--tests", default=None, metavar="DIR",
                   help="the repository's tests/ (default ./tests; a wheel has none)")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="bench at small sizes (smoke run)")
    p.add_argument("--only", action="append", choices=[s[0] for s in STEPS],
                   help="run only these steps (repeatable)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Run the selected steps (see the module docstring); returns the exit status.

    Raises:
        ValueError: --out is not a directory, or the gpu-tests step has no tests/ to run; in
            both cases before anything runs or is written.
    """
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {args.out}: exists and is not a directory")
    reason = _no_gpu_reason()
    if reason is not None:
        print(f"gpu_check: no usable GPU, nothing checked: {reason}", file=sys.stderr)
        return 2
    selected = [step for step in STEPS if not args.only or step[0] in args.only]
    ctx: dict[str, Any] = {"quick": args.quick}
    if any(name == "gpu-tests" for name, _, _ in selected):
        ctx["tests"] = tests_dir(args.tests)
    out.mkdir(parents=True, exist_ok=True)
    ctx["out"] = out.resolve()
    start = time.perf_counter()
    steps = []
    for name, budget, step_run in selected:
        t0 = time.perf_counter()
        step: dict[str, Any] = {"name": name}
        try:
            step["result"] = step_run(ctx, budget)
            step["status"] = "skipped" if "skipped" in step["result"] else "pass"
        except Exception as exc:  # noqa: BLE001 - a failed step is reported, the next one runs
            step["status"] = "FAIL"
            step["error"] = f"{type(exc).__name__}: {exc}"
            step["traceback"] = traceback.format_exc()[-4000:]
        step["seconds"] = time.perf_counter() - t0
        steps.append(step)
        print(f"gpu_check: {name}: {step['status']} ({step['seconds']:.1f} s)", file=sys.stderr)
    report = {
        "command": "eggroll-np gpu-check " + _command(args),
        "ok": all(s["status"] != "FAIL" for s in steps),
        "seconds": time.perf_counter() - start,
        "steps": steps,
    }
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "gpu_check.md").write_text(render_markdown(report))
    print(f"gpu_check: {'PASS' if report['ok'] else 'FAIL'}: report in {out}", file=sys.stderr)
    return 0 if report["ok"] else 1


def _command(args: argparse.Namespace) -> str:
    words = ["--out", str(args.out)]
    words += ["--tests", str(args.tests)] if args.tests else []
    words += ["--quick"] if args.quick else []
    for name in args.only or ():
        words += ["--only", name]
    return " ".join(words)
