"""`eggroll-np train` through the console entry point: help, clear errors, files written, resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import eggroll_np as egg
from eggroll_np import cli
from eggroll_np.training import run_folder, train
from eggroll_np.training.workloads import NAMES

pytest.importorskip("sklearn")


def _entry_point() -> list[str]:
    # The installed console script, as a user runs it (python -m when it is not on PATH).
    script = shutil.which("eggroll-np", path=os.path.dirname(sys.executable))
    return [script] if script else [sys.executable, "-m", "eggroll_np"]


def _run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*_entry_point(), *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def test_help_lists_every_workload_and_option():
    proc = _run("train", "--help")
    assert proc.returncode == 0
    for name in NAMES:
        assert name in proc.stdout
    proc = _run("train", "mnist", "--help")
    assert proc.returncode == 0
    for option in (
        "--population",
        "--sigma",
        "--lr",
        "--rank",
        "--generations",
        "--seed",
        "--optimizer",
        "--shaping",
        "--out",
        "--resume",
        "--data",
    ):
        assert option in proc.stdout
    assert "nothing is downloaded" in " ".join(proc.stdout.split())


def test_files_written_and_one_line_summary(tmp_path):
    out = tmp_path / "run"
    proc = _run(
        "train",
        "matching",
        "--population",
        "16",
        "--generations",
        "5",
        "--inputs",
        "3",
        "--outputs",
        "2",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("matching: parameter_error ")
    assert "after 5 generations" in lines[0]
    for name in (train.METRICS, train.PLOT, train.CHECKPOINT, run_folder.RUN_FILE, "summary.json"):
        assert (out / name).stat().st_size > 0
    assert (out / train.PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    records = train.read_metrics(str(out / train.METRICS))
    assert [r["generation"] for r in records] == [0, 1, 2, 3, 4]
    assert {"fitness_mean", "fitness_max", "parameter_error", "elapsed_s"} <= set(records[0])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["generations"] == 5
    assert "parameter_error" in summary


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "nope"], "invalid choice: 'nope'"),
        (["train", "digits", "--bogus"], "unrecognized arguments: --bogus"),
        (["train", "digits", "--population", "many"], "invalid int value: 'many'"),
        (["train", "digits", "--hidden", "8,x"], "comma-separated positive integers"),
        (["train", "digits", "--optimizer", "lbfgs"], "invalid choice: 'lbfgs'"),
        (["train", "matching", "--population", "3"], "population must be even"),
        (["train", "matching", "--sigma", "-1"], "sigma"),
        (["train", "matching", "--generations", "-2"], "--generations must be an integer >= 0"),
        (["train", "matching", "--checkpoint-every", "0"], "--checkpoint-every must be"),
        (["train", "matching", "--inputs", "0"], "--inputs must be an integer >= 1"),
        (["train", "matching", "--threads", "-1"], "--threads must be an integer >= 0"),
        (["train", "matching", "--workers", "0"], "--workers must be an integer >= 1"),
        (["train", "mnist"], "--data is required"),
        (["train", "mnist", "--data", "/nonexistent/x"], "neither a directory nor an .npz"),
        (["train", "matching", "--resume", "/nonexistent/ckpt.npz"], "No such file"),
    ],
)
def test_bad_options_are_clear_errors(tmp_path, capsys, argv, message):
    # In-process through cli.main (what the console script calls): exit 2, no traceback.
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, "--out", str(tmp_path / "o")] if len(argv) > 2 else argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_bad_option_through_console_script_has_no_traceback():
    proc = _run("train", "matching", "--population", "3", "--quiet")
    assert proc.returncode == 2
    assert "population must be even" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_resume_equals_uninterrupted(tmp_path):
    common = ["--population", "16", "--inputs", "3", "--outputs", "2", "--quiet"]
    full, part = tmp_path / "full", tmp_path / "part"
    assert cli.main(["train", "matching", *common, "--generations", "6", "--out", str(full)]) == 0
    assert cli.main(["train", "matching", *common, "--generations", "2", "--out", str(part)]) == 0
    ckpt = str(part / train.CHECKPOINT)
    # Options not given on resume come from the checkpoint and run.json beside it.
    assert (
        cli.main(
            [
                "train",
                "matching",
                "--resume",
                ckpt,
                "--generations",
                "6",
                "--quiet",
                "--out",
                str(part),
            ]
        )
        == 0
    )
    a, _ = egg.load(full / train.CHECKPOINT)
    b, state = egg.load(part / train.CHECKPOINT)
    assert state.generation == 6
    for la, lb in zip(a["layers"], b["layers"], strict=True):
        np.testing.assert_array_equal(la["W"], lb["W"])
        np.testing.assert_array_equal(la["b"], lb["b"])


def test_ctrl_c_saves_a_checkpoint_and_exits_130(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [
            *_entry_point(),
            "train",
            "matching",
            "--generations",
            "1000000",
            "--population",
            "16",
            "--quiet",
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        # Wait until a few generations are logged, then press Ctrl-C.
        while len(train.read_metrics(str(out / train.METRICS))) < 3:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130
    assert "interrupted after generation" in err
    assert "Traceback" not in err
    _, state = egg.load(out / train.CHECKPOINT)
    assert state.generation >= 3
    # The log holds at least every generation the checkpoint has (a resume keeps exactly those).
    assert len(train.read_metrics(str(out / train.METRICS))) >= state.generation


def _leaves_equal(a, b):
    la, _, _ = egg.tree.flatten(a)
    lb, _, _ = egg.tree.flatten(b)
    return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb, strict=True))


def test_workers_give_the_same_params_as_one_process(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'eggroll_np[ray]')")
    kw = dict(population=16, episodes=1, eval_episodes=1, generations=3)
    train.run("cartpole", out=str(tmp_path / "a"), **kw)
    train.run("cartpole", out=str(tmp_path / "b"), workers=2, **kw)
    pa, sa = egg.load(tmp_path / "a" / "checkpoint.npz")
    pb, sb = egg.load(tmp_path / "b" / "checkpoint.npz")
    assert sa.generation == sb.generation == 3
    assert _leaves_equal(pa, pb)

