"""`eggroll-np bench report`: asv results as one offline HTML page, checked in headless Chromium."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from eggroll_np import cli
from eggroll_np.benchmarks import asv_report

pytest.importorskip("matplotlib")

COLUMNS = ["result", "params", "version", "started_at", "duration", "stats_ci_99_a",
           "stats_ci_99_b", "stats_q_25", "stats_q_75", "stats_number", "stats_repeat",
           "samples"]  # fmt: skip
BENCHMARKS = {
    "bench_cpu.Noise.time_eggroll_normals": {
        "name": "bench_cpu.Noise.time_eggroll_normals", "type": "time", "unit": "seconds",
        "param_names": ["count"], "params": [["1000000", "10000000"]], "version": "a",
    },
    "bench_cpu.Workload.track_generation_over_inference": {
        "name": "bench_cpu.Workload.track_generation_over_inference", "type": "track",
        "unit": "ratio (lower is better)", "param_names": ["workload"],
        "params": [["'rl'", "'sup'"]], "version": "b",
    },
    "bench_memory.PeakMemory.peakmem_run": {
        "name": "bench_memory.PeakMemory.peakmem_run", "type": "peakmemory", "unit": "bytes",
        "param_names": ["workload", "case"], "params": [["'rl'"], ["'inference'", "'step'"]],
        "version": "c",
    },
}  # fmt: skip


def _result(commit: str, date: int, started: int, values: dict[str, list]) -> dict:
    results = {}
    for name, vals in values.items():
        ci_a = [None if v is None else v * 0.98 for v in vals]
        ci_b = [None if v is None else v * 1.02 for v in vals]
        results[name] = [vals, BENCHMARKS[name]["params"], "v", started, 1.0, ci_a, ci_b]
    return {"commit_hash": commit, "env_name": "virtualenv-py3.11", "date": date,
            "params": {"machine": "m"}, "python": "3.11", "requirements": {},
            "env_vars": {}, "result_columns": COLUMNS, "results": results,
            "durations": {}, "version": 2}  # fmt: skip


def _results_dir(tmp_path: Path) -> Path:
    """Three commits as asv 0.6 writes them; the last run (c3 against c2) doubles the 10^7
    normals and improves the sup ratio."""
    root = tmp_path / "results"
    (root / "m").mkdir(parents=True)
    (root / "benchmarks.json").write_text(json.dumps({**BENCHMARKS, "version": 2}))
    (root / "m" / "machine.json").write_text(json.dumps({"machine": "m", "version": 1}))
    base = {"bench_cpu.Noise.time_eggroll_normals": [0.004, 0.02],
            "bench_cpu.Workload.track_generation_over_inference": [2.0, 3.0],
            "bench_memory.PeakMemory.peakmem_run": [6.7e7, 1.3e8]}  # fmt: skip
    head = {"bench_cpu.Noise.time_eggroll_normals": [0.0041, 0.04],
            "bench_cpu.Workload.track_generation_over_inference": [2.05, 1.5],
            "bench_memory.PeakMemory.peakmem_run": [6.7e7, None]}  # fmt: skip
    for commit, date, started, vals in [("c1" * 20, 1, 10, base), ("c2" * 20, 2, 30, base),
                                        ("c3" * 20, 3, 31, head)]:  # fmt: skip
        path = root / "m" / f"{commit[:8]}-virtualenv-py3.11.json"
        path.write_text(json.dumps(_result(commit, date, started, vals)))
    return root


def test_comparison_lists_regressions_first(tmp_path):
    benchmarks, runs = asv_report.load_runs(_results_dir(tmp_path))
    assert [r.commit[:2] for r in runs] == ["c1", "c2", "c3"]
    rows = asv_report.compare(benchmarks, runs[1], runs[2], factor=1.5)
    assert [(r.name.split(".")[-1], r.params, r.verdict) for r in rows[:2]] == [
        ("time_eggroll_normals", "count=10000000", "worse"),
        ("track_generation_over_inference", "workload=sup", "better"),
    ]
    assert rows[0].ratio == pytest.approx(2.0)
    verdicts = {(r.name.split(".")[-1], r.params): r.verdict for r in rows}
    assert verdicts[("time_eggroll_normals", "count=1000000")] == "same"
    assert verdicts[("peakmem_run", "workload=rl, case=step")] == "n/a"


def test_overlapping_intervals_are_no_change(tmp_path):
    benchmarks, runs = asv_report.load_runs(_results_dir(tmp_path))
    name = "bench_cpu.Noise.time_eggroll_normals"
    runs[2].ci[name] = [(0.0, 1.0), (0.0, 1.0)]  # wide: covers the base's interval
    rows = asv_report.compare(benchmarks, runs[1], runs[2])
    assert {r.verdict for r in rows if r.name == name} == {"same"}


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda r: (r / "benchmarks.json").unlink(), "benchmarks.json: missing"),
        (lambda r: (r / "m" / "c1c1c1c1-virtualenv-py3.11.json").write_text("{"), "c1c1c1c1"),
        (lambda r: (r / "n").mkdir() or (r / "n" / "machine.json").write_text("{}"), "--machine"),
    ],
)
def test_bad_results_name_the_path_and_write_nothing(tmp_path, breakage, expected, capsys):
    root = _results_dir(tmp_path)
    breakage(root)
    out = tmp_path / "report"
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "report", "--results", str(root), "--out", str(out)])
    assert e.value.code == 2
    assert expected in capsys.readouterr().err
    assert not out.exists()


def test_factor_must_exceed_one(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "report", "--results", str(_results_dir(tmp_path)),
                  "--out", str(tmp_path / "o"), "--factor", "1"])  # fmt: skip
    assert e.value.code == 2
    assert "--factor must be > 1, got 1.0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_missing_results_directory(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "report", "--out", str(tmp_path / "o"),
                  "--results", str(tmp_path / "nowhere")])  # fmt: skip
    assert e.value.code == 2
    assert "nowhere: no such results directory" in capsys.readouterr().err


def _check_site():
    script = Path(__file__).resolve().parents[1] / "docs" / "check_site.py"
    if not script.is_file():
        pytest.skip(f"{script} not present")
    spec = importlib.util.spec_from_file_location("check_site", script)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["check_site"] = mod
    spec.loader.exec_module(mod)
    return mod


# Evaluated in the loaded page: the plots drawn, the comparison's first row.
PROBE = """JSON.stringify({
  plots: Array.from(document.querySelectorAll("section.bench svg"))
    .filter(s => s.getBoundingClientRect().width > 100 && s.querySelector("path")).length,
  sections: document.querySelectorAll("section.bench").length,
  first: (document.querySelector("tr.worse td:nth-child(2)") || {}).textContent || null,
})"""


def test_report_renders_offline_in_chromium(tmp_path, capsys):
    check_site = _check_site()
    browser = check_site.find_browser()
    if browser is None:
        pytest.skip("no Chromium (apt-get install chromium); .ci/run installs it")
    out = tmp_path / "report"
    assert cli.main(["bench", "report", "--results", str(_results_dir(tmp_path)),
                     "--out", str(out)]) == 0  # fmt: skip
    assert "index.html" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["index.html"]  # one self-contained file
    page = (out / "index.html").read_text()
    assert "http://" not in page.replace("http://www.w3.org/", "")
    assert "https://" not in page and "<script" not in page
    problems, probe = check_site.load_page(browser, out / "index.html", PROBE)
    assert problems == []  # no failed or remote request, no error logged
    assert probe["sections"] == len(BENCHMARKS)
    assert probe["plots"] == len(BENCHMARKS)
    assert probe["first"] == "bench_cpu.Noise.time_eggroll_normals"
