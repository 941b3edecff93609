"""`python -m eggroll_np.gpu_check`: its no-GPU path, its report pieces, and the loud failure when
the source tree shadows the installed build (all without a GPU)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import eggroll_np
from eggroll_np import _ext, dispatch
from eggroll_np.gpu import check as gpu_check

without_gpu = pytest.mark.skipif(
    dispatch.cuda_available(), reason="checks the no-GPU path; this machine has a GPU"
)


@without_gpu
def test_without_a_gpu_it_says_so_in_one_line_and_exits_2(tmp_path, capsys):
    out = tmp_path / "report"
    assert gpu_check.main(["--out", str(out)]) == 2
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
        gpu_check.main(["--out", str(target)])
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
        "command": "python -m eggroll_np.gpu_check --out r",
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


def test_steps_fit_the_time_budget():
    assert [s[0] for s in gpu_check.STEPS] == [
        "device", "gpu-tests", "bit-check", "probes", "memcheck", "bench",
    ]  # fmt: skip
    assert sum(s[1] for s in gpu_check.STEPS) < 12 * 60


@pytest.mark.skipif(_ext.core is None, reason=f"C++ core not built: {_ext.core_error}")
@pytest.mark.parametrize("module", ["eggroll_np.benchmarks.gpu_bench", "eggroll_np.gpu_check"])
def test_source_tree_shadowing_the_build_is_reported(tmp_path, module):
    # `python -m ...` from a checkout puts its eggroll_np (no compiled modules) ahead of the
    # installed one: the commands must say so instead of "no CUDA device".
    installed = Path(eggroll_np.__file__).parent
    if not any(installed.glob("_core*")):
        pytest.skip("this eggroll_np has no compiled modules beside it (an in-place build?)")
    skip = shutil.ignore_patterns("*.so", "*.pyd", "__pycache__")
    shutil.copytree(installed, tmp_path / "eggroll_np", ignore=skip)
    done = subprocess.run(
        [sys.executable, "-m", module, "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "shadows the installed build" in done.stderr
    assert str(installed) in done.stderr


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
