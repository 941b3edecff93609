"""CLI hardening: one-line errors, --resume against the command line, --out first, pipes, logs."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import pytest

from eggroll_np import cli
from eggroll_np.training import run_folder, train
from eggroll_np.training.workloads import get

pytest.importorskip("sklearn")

SMALL = ["--population", "8", "--inputs", "3", "--outputs", "2", "--batch", "8", "--quiet"]


def _entry_point() -> list[str]:
    script = shutil.which("eggroll-np", path=os.path.dirname(sys.executable))
    return [script] if script else [sys.executable, "-m", "eggroll_np"]


def _error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1, captured.err  # exactly one line
    assert "Traceback" not in captured.err
    return captured.err


@pytest.fixture
def part_run(tmp_path):
    out = tmp_path / "part"
    argv = ["train", "matching", *SMALL, "--generations", "2", "--out", str(out)]
    assert cli.main(argv) == 0
    return out


def test_resume_refuses_changed_model_options_and_names_them(part_run, capsys):
    ckpt = str(part_run / train.CHECKPOINT)
    before = (part_run / run_folder.RUN_FILE).read_text()
    err = _error(
        capsys,
        [
            "train",
            "matching",
            "--resume",
            ckpt,
            "--inputs",
            "4",
            "--batch",
            "16",
            "--generations",
            "4",
            "--out",
            str(part_run),
        ],
    )
    assert "--inputs 4 (the run has 3)" in err
    assert "--batch 16 (the run has 8)" in err
    assert (part_run / run_folder.RUN_FILE).read_text() == before  # nothing rewritten


def test_resume_refuses_a_changed_es_option(part_run, capsys):
    ckpt = str(part_run / train.CHECKPOINT)
    err = _error(
        capsys, ["train", "matching", "--resume", ckpt, "--sigma", "0.5", "--out", str(part_run)]
    )
    assert "--sigma 0.5 (the run has 0.005)" in err


class _TickingClock:
    """`time` for the train module whose perf_counter advances by exactly 1 s per read."""

    def __init__(self) -> None:
        self.reads = 0

    def perf_counter(self) -> float:
        self.reads += 1
        return float(self.reads)


def test_resume_accepts_options_equal_to_the_run_and_a_new_length(part_run, capsys, monkeypatch):
    ckpt = str(part_run / train.CHECKPOINT)
    logged = train.read_metrics(str(part_run / train.METRICS))
    clock = _TickingClock()  # the resumed session's clock: exact, so the sums are exact
    monkeypatch.setattr(train, "time", clock)
    argv = [
        "train",
        "matching",
        "--resume",
        ckpt,
        "--inputs",
        "3",
        "--population",
        "8",
        "--generations",
        "4",
        "--quiet",
        "--out",
        str(part_run),
    ]
    assert cli.main(argv) == 0
    line = capsys.readouterr().out.strip()
    assert "after 4 generations" in line
    assert "resumed at generation 2" in line
    summary = json.loads((part_run / "summary.json").read_text())
    assert summary["resumed_at_generation"] == 2
    # train_s is the whole run's: the first session's logged time plus this one's, and the
    # resumed generations' elapsed_s go on from the first session's last one.
    records = train.read_metrics(str(part_run / train.METRICS))
    offset = logged[-1]["elapsed_s"]
    session = summary["session_train_s"]
    assert records[:2] == logged
    assert [r["elapsed_s"] for r in records[2:]] == [round(offset + k, 4) for k in (1, 2)]
    assert session >= 3  # start, two generations, end: at least 4 reads 1 s apart
    assert summary["train_s"] == round(offset + session, 2)
    assert json.loads((part_run / run_folder.RUN_FILE).read_text())["config"]["inputs"] == 3


def test_resume_may_change_evaluation_only_options():
    w = get("cartpole")
    saved = train.resolve_config(w, {})
    config = train.resolve_config(w, {"eval_episodes": 3, "generations": 9}, saved)
    assert config["eval_episodes"] == 3
    with pytest.raises(ValueError, match=r"--hidden 8 \(the run has 16\)|--hidden 8 \(the run"):
        train.resolve_config(w, {"hidden": (8,)}, {**saved, "hidden": [16]})


def test_a_malformed_metrics_log_is_one_line_naming_it(part_run, capsys):
    with open(part_run / train.METRICS, "a", encoding="utf-8") as fh:
        fh.write("{truncated\n")
    err = _error(
        capsys,
        [
            "train",
            "matching",
            "--resume",
            str(part_run / train.CHECKPOINT),
            "--generations",
            "3",
            "--out",
            str(part_run),
        ],
    )
    assert "metrics.jsonl' line 3 is not JSON" in err


def test_a_malformed_run_json_is_one_line(part_run, capsys):
    (part_run / run_folder.RUN_FILE).write_text("{not json")
    err = _error(
        capsys,
        ["train", "matching", "--resume", str(part_run / train.CHECKPOINT), "--out", str(part_run)],
    )
    assert "run.json" in err
    assert "cannot read" in err


def test_out_naming_a_file_fails_before_any_work(tmp_path, capsys, monkeypatch):
    made = []
    real = get("matching")

    def make(config):
        made.append(config)
        return real.make(config)

    monkeypatch.setattr(train, "get", lambda name: dataclasses.replace(real, make=make))
    target = tmp_path / "file"
    target.write_text("x")
    err = _error(capsys, ["train", "matching", *SMALL, "--out", str(target)])
    assert f"--out '{target}' exists and is not a directory" in err
    assert made == []
    err = _error(capsys, ["train", "matching", *SMALL, "--out", str(target / "sub")])
    assert "--out" in err
    assert "cannot be created" in err
    assert made == []


@pytest.mark.parametrize("workload", ["digits", "matching"])
def test_negative_seed_names_the_option(tmp_path, capsys, workload):
    err = _error(capsys, ["train", workload, "--seed", "-1", "--out", str(tmp_path)])
    assert "--seed must be in [0, 2^64), got -1" in err
    assert "random_state" not in err


def test_usage_errors_are_one_line(capsys):
    err = _error(capsys, ["train", "matching", "--population", "many"])
    assert "invalid int value: 'many'" in err
    err = _error(capsys, ["nope"])
    assert "invalid choice" in err


def test_a_directory_as_checkpoint_is_one_line(tmp_path, capsys):
    err = _error(
        capsys, ["train", "matching", "--resume", str(tmp_path), "--out", str(tmp_path / "o")]
    )
    assert str(tmp_path) in err


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 broken", b"not a checkpoint"])
def test_a_malformed_checkpoint_is_one_line(tmp_path, capsys, content):
    bad = tmp_path / "checkpoint.npz"
    bad.write_bytes(content)
    err = _error(capsys, ["train", "matching", "--resume", str(bad), "--out", str(tmp_path)])
    assert repr(str(bad)) in err


def test_info_into_a_closed_pipe_has_no_broken_pipe_error():
    read, write = os.pipe()
    os.close(read)  # the reader has gone, like `head` after its lines
    try:
        proc = subprocess.run(
            [*_entry_point(), "info"], stdout=write, stderr=subprocess.PIPE, timeout=120
        )
    finally:
        os.close(write)
    assert b"BrokenPipeError" not in proc.stderr, proc.stderr.decode()
    assert b"Traceback" not in proc.stderr
    assert proc.returncode in (0, 141)


def test_info_piped_into_head_keeps_its_first_line():
    proc = subprocess.run(
        " ".join([*_entry_point(), "info"]) + " | head -n 1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout.startswith("eggroll_np")
    assert "Error" not in proc.stderr


def test_progress_is_coarse_when_stderr_is_not_a_terminal(tmp_path):
    proc = subprocess.run(
        [
            *_entry_point(),
            "train",
            "matching",
            "--population",
            "8",
            "--inputs",
            "3",
            "--outputs",
            "2",
            "--batch",
            "8",
            "--generations",
            "200",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert 2 <= len(lines) <= 11, proc.stderr
    assert "\r" not in proc.stderr
    assert lines[-1].startswith("generation 200/200 [100%]")
    assert len(proc.stderr) < 2000


@pytest.mark.parametrize(
    "argv",
    [["train", "mnist"], ["train", "digits", "--population", "3"]],
    ids=["mnist-without-data", "odd-population"],
)
def test_a_refused_run_leaves_no_output_folder(tmp_path, capsys, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    _error(capsys, argv)
    assert list(tmp_path.iterdir()) == []  # no runs/<name>/
