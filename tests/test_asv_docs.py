"""docs/asv.md's table lists every asv benchmark class and each of its benchmarks, and the
suite keeps its conventions: every track_ lower-is-better, every CPU class on the shared settings."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITE, DOC = ROOT / "asv_benchmarks", ROOT / "docs" / "asv.md"
if not SUITE.is_dir() or not DOC.is_file():  # a copy of tests/ without the repository
    pytest.skip("asv_benchmarks/ or docs/asv.md not present", allow_module_level=True)

BENCH = re.compile(r"^(time|timeraw|track|mem|peakmem)_")


def _suite() -> dict[str, dict]:
    """'module.Class' -> {"methods": benchmark method names (inherited ones included),
    "bases": base names, "units": {track method: unit expression}} for every public class."""
    found = {}
    for path in sorted(SUITE.glob("bench_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}

        def methods(node: ast.ClassDef, classes=classes) -> set[str]:
            own = {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
            for base in node.bases:
                if isinstance(base, ast.Name) and base.id in classes:
                    own |= methods(classes[base.id])
            return own

        for name, node in classes.items():
            bench = {m for m in methods(node) if BENCH.match(m)}
            if name.startswith("_") or not bench:
                continue
            units = {
                t.targets[0].value.id: ast.unparse(t.value)
                for t in node.body
                if isinstance(t, ast.Assign) and isinstance(t.targets[0], ast.Attribute)
                and t.targets[0].attr == "unit" and isinstance(t.targets[0].value, ast.Name)
            }  # fmt: skip
            found[f"{path.stem}.{name}"] = {
                "methods": bench,
                "bases": {ast.unparse(b) for b in node.bases},
                "units": units,
            }
    return found


def _documented() -> dict[str, set[str]]:
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\| `(bench_\w+\.\w+)`[^|]*\| ([^|]*) \|", line)
        if m:
            rows[m.group(1)] = set(re.findall(r"`(\w+)`", m.group(2)))
    return rows


def test_the_table_lists_every_class_and_benchmark():
    suite, documented = _suite(), _documented()
    assert {"bench_cpu.PopulationScaling", "bench_cpu.UpdateContraction",
            "bench_lowrank.LowrankCorrection", "bench_memory.PeakMemory"} <= set(suite)  # fmt: skip
    assert sorted(documented) == sorted(suite)
    for name, info in suite.items():
        assert documented[name] == info["methods"], name


def test_every_track_is_a_lower_is_better_ratio():
    common = ast.parse((SUITE / "_common.py").read_text(encoding="utf-8"))
    value = next(
        ast.literal_eval(n.value) for n in common.body
        if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == "RATIO_UNIT"
    )  # fmt: skip
    assert "lower is better" in value
    tracks = 0
    for name, info in _suite().items():
        for m in sorted(info["methods"]):
            if m.startswith("track_"):
                tracks += 1
                assert info["units"].get(m) in ("RATIO_UNIT", repr(value)), f"{name}.{m}"
                assert not re.search(r"speedup|throughput|speed_vs", m), f"{name}.{m}"
    assert tracks >= 6


def test_cpu_classes_take_the_shared_settings():
    for name, info in _suite().items():
        if name.startswith(("bench_cpu.", "bench_lowrank.")):
            assert "Timed" in info["bases"], name
