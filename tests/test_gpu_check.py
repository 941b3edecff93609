"""`eggroll-np gpu-check` and `bench gpu`: their no-GPU paths, the report's pieces, the missing
tests/ of a wheel, and the deprecated `python -m eggroll_np.gpu_check` (all without a GPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from eggroll_np import dispatch
from eggroll_np.cli import main as cli_main
from eggroll_np.gpu import check as gpu_check

without_gpu = pytest.mark.skipif(
    dispatch.cuda_available(), reason="checks the no-GPU path; this machine has a GPU"
)


@without_gpu
def test_without_a_gpu_it_says_so_in_one_line_and_exits_2(tmp_path, capsys):
    out = tmp_path / "report"
    assert cli_main(["gpu-check", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("gpu_check: no usable GPU")
    assert captured.out == ""
    assert not out.exists()  # nothing written


def test_out_must_be_a_directory(tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("keep")
    with pytest.raises(SystemExit) as exc:
        cli_main(["gpu-check", "--out", str(target)])
    assert exc.value.code == 2
    assert "--out" in capsys.readouterr().err
    assert target.read_text() == "keep"


_JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.test_cuda" name="test_a"/>
<testcase classname="tests.test_cuda" name="test_b"><skipped message="needs a GPU: CuPy is not
installed"/></testcase>
<testcase classname="tests.test_cuda" name="test_c"><skipped message="checks the no-GPU error
path; this machine has a GPU"/></testcase>
<testcase classname="tests.test_cuda" name="test_d"><failure message="boom"/></testcase>
<testcase classname="tests.test_x" name="test_e"><skipped message="no /proc/cpuinfo"/></testcase>
</testsuite></testsuites>"""


def test_junit_summary_counts_missing_gpu_skips_only():
    s = gpu_check.junit_summary(_JUNIT)
    assert (s["tests"], s["failures"], s["errors"], s["skipped"]) == (5, 1, 0, 3)
    # the skip for a missing GPU fails the step; the no-GPU-path test and others do not
    assert [g.split(": ")[0] for g in s["gpu_skips"]] == ["tests.test_cuda::test_b"]


def test_markdown_report_lists_every_step():
    report = {
        "command": "eggroll-np gpu-check --out r",
        "ok": False,
        "seconds": 12.0,
        "steps": [
            {"name": "device", "status": "pass", "seconds": 0.1, "result": {"name": "H200"}},
            {"name": "memcheck", "status": "skipped", "seconds": 0.0,
             "result": {"skipped": "compute-sanitizer not found"}},
            {"name": "probes", "status": "FAIL", "seconds": 3.0, "error": "AssertionError: x|y"},
        ],
    }  # fmt: skip
    md = gpu_check.render_markdown(report)
    assert "Result: **FAIL**" in md
    assert "| memcheck | skipped | 0.0 | compute-sanitizer not found |" in md
    assert "| probes | FAIL | 3.0 | AssertionError: x/y |" in md
    assert md.count("\n## ") == 3


def test_each_step_gets_its_budget_and_a_failed_step_does_not_stop_the_rest(tmp_path, monkeypatch):
    # The whole run past the GPU check, with recording steps in place of the GPU ones: every
    # selected step runs in order with its own budget, a step that raises is reported FAIL (exit
    # 1) and the next one still runs; the report files say the same.
    assert sum(budget for _, budget, _ in gpu_check.STEPS) <= gpu_check.TOTAL_BUDGET
    seen: list[tuple[str, float]] = []

    def step(name):
        def run(ctx, budget):
            seen.append((name, budget))
            if name == "probes":
                raise RuntimeError("probe broke")
            return {"skipped": "no tool"} if name == "memcheck" else {"ran": name}

        return run

    fake = [(name, budget, step(name)) for name, budget, _ in gpu_check.STEPS]
    monkeypatch.setattr(gpu_check, "STEPS", fake)
    monkeypatch.setattr(gpu_check, "_no_gpu_reason", lambda: None)
    out = tmp_path / "report"
    only = ["--only", "device", "--only", "probes", "--only", "memcheck", "--only", "bench"]
    assert cli_main(["gpu-check", "--out", str(out), *only]) == 1
    assert seen == [(n, b) for n, b, _ in fake if n != "gpu-tests" and n != "bit-check"]
    report = json.loads((out / "gpu_check.json").read_text())
    assert [(s["name"], s["status"]) for s in report["steps"]] == [
        ("device", "pass"), ("probes", "FAIL"), ("memcheck", "skipped"), ("bench", "pass"),
    ]  # fmt: skip
    assert "RuntimeError: probe broke" in report["steps"][1]["error"]
    assert report["command"] == "eggroll-np gpu-check --out " + str(out) + " " + " ".join(only)
    assert "Result: **FAIL**" in (out / "gpu_check.md").read_text()


@pytest.mark.parametrize("argv", [["gpu-check"], ["bench", "gpu"]])
def test_gpu_commands_are_cli_subcommands(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main([*argv, "--help"])
    assert exc.value.code == 0
    assert "--out" in capsys.readouterr().out


@without_gpu
def test_bench_gpu_without_a_gpu_says_so_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "gpu_bench.json"
    assert cli_main(["bench", "gpu", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gpu_bench: nothing measured: no CUDA device")
    assert not out.exists()


def test_the_deprecated_module_still_runs_the_check(tmp_path):
    # `python -m eggroll_np.gpu_check` warns, then runs `eggroll-np gpu-check` (here: its usage
    # error for an --out that is a file, which needs no GPU).
    target = tmp_path / "file.txt"
    target.write_text("keep")
    done = subprocess.run(
        [sys.executable, "-m", "eggroll_np.gpu_check", "--out", str(target)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "DeprecationWarning" in done.stderr and "eggroll-np gpu-check" in done.stderr
    assert f"--out {target}: exists and is not a directory" in done.stderr
    assert target.read_text() == "keep"


def test_without_the_repository_tests_it_says_so_before_running_anything(tmp_path, monkeypatch):
    # An installed wheel has no tests/: the gpu-tests step needs a checkout, and says so
    # (naming --tests) before any step runs or any report is written.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"--tests .*no test_cuda.py.*wheel"):
        gpu_check.tests_dir(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=r"the default of --tests.*checkout"):
        gpu_check.tests_dir(None)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_cuda.py").write_text("")
    assert gpu_check.tests_dir(None) == (tmp_path / "tests").resolve()


@pytest.mark.skipif(not dispatch.cuda_available(), reason="needs a GPU to get past the GPU check")
def test_with_a_gpu_and_no_tests_nothing_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "report"
    with pytest.raises(SystemExit) as exc:
        cli_main(["gpu-check", "--out", str(out)])
    assert exc.value.code == 2
    assert "no test_cuda.py" in capsys.readouterr().err
    assert not out.exists()


def _fake_tests(root: Path, skip_reason: str) -> Path:
    tests = root / "tests"
    tests.mkdir(parents=True)
    (tests / "test_cuda_fake.py").write_text(
        "import pytest\n\n"
        "def test_runs():\n    assert True\n\n"
        f"@pytest.mark.skip(reason={skip_reason!r})\n"
        "def test_skipped():\n    pass\n"
    )
    return tests


def test_gpu_tests_step_fails_on_a_skip_for_want_of_a_gpu(tmp_path):
    # The step's whole pipeline (child pytest, JUnit report, skip classification) on a fake
    # tests/ folder: a "needs a GPU" skip fails it, a skip for another reason does not.
    bad = _fake_tests(tmp_path / "a", "needs a GPU: no CUDA device")
    with pytest.raises(AssertionError, match="gpu_skips=1"):
        gpu_check._gpu_tests(tmp_path / "a", bad, 240)
    good = _fake_tests(tmp_path / "b", "checks the no-GPU path; this machine has a GPU")
    result = gpu_check._gpu_tests(tmp_path / "b", good, 240)
    assert result["cuda"]["tests"] == 2
    assert result["cuda"]["skipped"] == 1
    assert result["marked_gpu"]["returncode"] == 5  # nothing marked gpu outside the CUDA files


def test_bench_gpu_reports_issue_23s_targets_from_its_figures():
    # No GPU needed: the targets are read from a result's figures (what `run` measured).
    from eggroll_np.benchmarks import gpu_bench

    def figs(pop, fwd, host):
        return {"population": pop, "forward_over_inference": fwd, "generation_host_over_gpu": host}

    result = {"workloads": {"rl-4096": [figs(4096, 0.97, 1.0), figs(16384, 0.5, 1.0)],
                            "sup": [figs(256, 0.4, 1.3)]}}  # fmt: skip
    rows = {(r["workload"], r["figure"]): r for r in gpu_bench.targets(result)}
    assert rows["rl-4096", "forward_over_inference"]["met"] is True
    assert rows["rl-4096", "forward_over_inference"]["value"] == 0.97  # population 4096's
    assert rows["sup", "forward_over_inference"]["met"] is False
    assert rows["sup", "generation_host_over_gpu"] == {
        "workload": "sup", "population": 256, "figure": "generation_host_over_gpu",
        "target": "<= 1.2", "value": 1.3, "met": False,
    }  # fmt: skip
    quick = gpu_bench.targets({"workloads": {"sup": [figs(64, 0.9, 1.0)]}})
    assert [r["met"] for r in quick] == [None, None, None]  # not measured: neither met nor missed
