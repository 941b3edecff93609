"""`--resume` cannot train another model: the run record, an untouched --out, schedules, locks."""

from __future__ import annotations

import contextlib
import dataclasses
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
from eggroll_np.training.workloads import matching

pytest.importorskip("sklearn")

SMALL = ["--population", "8", "--inputs", "3", "--outputs", "2", "--batch", "8", "--quiet"]
DIGITS = ["--population", "16", "--batch", "32", "--no-baseline", "--quiet"]


def _error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def _snapshot(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _refused_resume(capsys, workload, ckpt, out, *options) -> str:
    """The one-line error of a refused `--resume`, after checking that --out is unchanged."""
    before = _snapshot(out)
    argv = ["train", workload, "--resume", str(ckpt), *options, "--quiet", "--out", str(out)]
    err = _error(capsys, argv)
    assert _snapshot(out) == before
    return err


def _leaves(path):
    params, state = egg.load(path)
    return egg.tree.flatten(params)[0], state


def test_a_checkpoint_alone_resumes_its_own_model_and_refuses_another(tmp_path, capsys):
    # The repro: A trained with relu; its checkpoint copied alone (no run.json) to B.
    a, b, c, full = (tmp_path / n for n in "abcf")
    argv = ["train", "digits", *DIGITS, "--activation", "relu", "--hidden", "8"]
    assert cli.main([*argv, "--generations", "2", "--out", str(a)]) == 0
    assert cli.main([*argv, "--generations", "4", "--out", str(full)]) == 0
    b.mkdir()
    shutil.copy(a / train.CHECKPOINT, b / train.CHECKPOINT)
    resume = ["train", "digits", "--resume", str(b / train.CHECKPOINT), "--quiet"]
    err = _error(capsys, [*resume, "--generations", "4", "--hidden", "32", "--out", str(c)])
    assert "--hidden 32 (the run has 8)" in err
    assert not c.exists() or _snapshot(c) == {}
    # Without the option: the checkpoint's relu and 8 units, exactly the uninterrupted run.
    assert cli.main([*resume, "--generations", "4", "--out", str(c)]) == 0
    config = json.loads((c / run_folder.RUN_FILE).read_text())["config"]
    assert (config["activation"], config["hidden"]) == ("relu", [8])
    (got, _), (want, _) = _leaves(c / train.CHECKPOINT), _leaves(full / train.CHECKPOINT)
    assert all(np.array_equal(x, y) for x, y in zip(got, want, strict=True))


def test_the_checkpoint_carries_its_run_record(tmp_path):
    train.run("matching", out=str(tmp_path), population=8, inputs=3, outputs=2, generations=1)
    record = egg.checkpoint.load_run(tmp_path / train.CHECKPOINT)
    assert record["workload"] == "matching"
    assert record["options"]["inputs"] == 3
    assert len(record["data"]) == 32


def _mnist_npz(path, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (40, 4, 4), dtype=np.uint8)
    y = np.arange(40) % 10
    np.savez(path, x_train=x, y_train=y, x_test=x[:10], y_test=y[:10])


def test_resume_on_changed_data_is_refused(tmp_path, capsys):
    data, out = tmp_path / "mnist.npz", tmp_path / "run"
    _mnist_npz(data, 0)
    argv = ["train", "mnist", "--data", str(data), "--hidden", "4", *DIGITS, "--batch", "8"]
    assert cli.main([*argv, "--generations", "2", "--out", str(out)]) == 0
    _mnist_npz(data, 1)  # same file name, other images
    err = _refused_resume(capsys, "mnist", out / train.CHECKPOINT, out, "--generations", "3")
    assert "the data is not the run's" in err


def test_another_workloads_checkpoint_changes_nothing(tmp_path, capsys):
    digits, alone = tmp_path / "digits", tmp_path / "alone"
    argv = ["train", "digits", *DIGITS, "--hidden", "8", "--generations", "2"]
    assert cli.main([*argv, "--out", str(digits)]) == 0
    assert cli.main(["train", "matching", *SMALL, "--generations", "2", "--out", str(alone)]) == 0
    (alone / train.RUN_FILE).unlink()  # the checkpoint alone
    err = _refused_resume(capsys, "digits", alone / train.CHECKPOINT, digits)
    assert "is a 'matching' run, not 'digits'" in err
    ckpt = str(digits / train.CHECKPOINT)  # the digits run still resumes
    argv = ["train", "digits", "--resume", ckpt, "--generations", "3", "--out", str(digits)]
    assert cli.main(argv) == 0


def test_a_corrupt_log_leaves_the_run_json_as_it_was(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "matching", *SMALL, "--generations", "2", "--out", str(out)]) == 0
    with open(out / train.METRICS, "a", encoding="utf-8") as fh:
        fh.write("{truncated\n")
    err = _refused_resume(capsys, "matching", out / train.CHECKPOINT, out, "--generations", "5")
    assert "line 3 is not JSON" in err


def test_a_resume_failing_in_its_first_forward_changes_nothing(tmp_path, monkeypatch):
    out = tmp_path / "run"
    train.run("matching", out=str(out), population=8, inputs=3, outputs=2, generations=2)
    before = _snapshot(out)
    w = matching.WORKLOAD

    def failing_make(config):
        def fitness(pop):
            raise ValueError("deep in the forward")

        return dataclasses.replace(w.make(config), fitness=fitness)

    monkeypatch.setattr(matching, "WORKLOAD", dataclasses.replace(w, make=failing_make))
    with pytest.raises(ValueError, match="deep in the forward"):
        train.run("matching", out=str(out), resume=str(out / train.CHECKPOINT), generations=5)
    assert _snapshot(out) == before


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_extending_a_decaying_schedule_needs_lr_decay_steps(tmp_path, capsys, schedule):
    out = tmp_path / "run"
    argv = ["train", "matching", *SMALL, "--lr-schedule", schedule, "--generations", "2"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    err = _refused_resume(capsys, "matching", out / train.CHECKPOINT, out, "--generations", "4")
    assert f"runs past the run's {schedule} lr schedule" in err
    assert "--lr-decay-steps" in err
    resume = ["train", "matching", "--resume", str(out / train.CHECKPOINT), "--quiet"]
    stretched = ["--generations", "4", "--lr-decay-steps", "4", "--out", str(out)]
    assert cli.main([*resume, *stretched]) == 0
    norms = [r["update_norm"] for r in train.read_metrics(str(out / train.METRICS))]
    assert len(norms) == 4
    assert min(norms[2:]) > 0  # the new generations train
    assert egg.load(out / train.CHECKPOINT)[1].config.schedule.steps == 4


def test_a_run_planned_past_its_decay_resumes_without_lr_decay_steps(tmp_path):
    kw = dict(population=8, inputs=3, outputs=2, lr_schedule="cosine")
    out = tmp_path / "run"
    train.run("matching", out=str(out), generations=2, lr_decay_steps=1, **kw)
    summary = train.run("matching", out=str(out), resume=str(out / train.CHECKPOINT))
    assert summary["generations"] == 2


@pytest.mark.parametrize("option", [["--lr-final", "0.001"], ["--lr-decay-steps", "5"]])
def test_lr_schedule_options_with_the_constant_schedule_are_refused(tmp_path, capsys, option):
    err = _error(capsys, ["train", "matching", *SMALL, *option, "--out", str(tmp_path)])
    assert f"{option[0]} is only used by --lr-schedule linear or cosine" in err
    assert "--lr-schedule is constant" in err


def _entry_point() -> list[str]:
    script = shutil.which("eggroll-np", path=os.path.dirname(sys.executable))
    return [script] if script else [sys.executable, "-m", "eggroll_np"]


@contextlib.contextmanager
def _training(out):
    """A long `eggroll-np train matching --out out`, yielded once 3 generations are logged."""
    argv = ["train", "matching", "--generations", "1000000", *SMALL, "--out", str(out)]
    proc = subprocess.Popen(
        [*_entry_point(), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline
            with contextlib.suppress(ValueError):  # a line being written
                if len(train.read_metrics(str(out / train.METRICS))) >= 3:
                    break
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_a_second_run_into_the_same_folder_is_refused_by_name(tmp_path, capsys):
    out = tmp_path / "run"
    with _training(out) as proc:
        err = _error(capsys, ["train", "matching", *SMALL, "--out", str(out)])
        assert f"--out {str(out)!r} is in use by another eggroll-np train" in err
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    assert proc.returncode == 130
    generations = [r["generation"] for r in train.read_metrics(str(out / train.METRICS))]
    assert generations == list(range(len(generations)))  # one writer: nothing interleaved
    # The lock went with its process.
    assert cli.main(["train", "matching", *SMALL, "--generations", "1", "--out", str(out)]) == 0


@pytest.mark.parametrize("gap_s", [0.0005, 0.002, 0.01])
def test_a_second_ctrl_c_does_not_lose_the_interrupt_checkpoint(tmp_path, gap_s):
    out = tmp_path / "run"
    with _training(out) as proc:
        proc.send_signal(signal.SIGINT)
        time.sleep(gap_s)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    _, state = egg.load(out / train.CHECKPOINT)
    assert state.generation >= 3
    assert f"interrupted after generation {state.generation}; checkpoint " in err


def test_interrupts_raise_once_then_count():
    from eggroll_np.training.interrupts import Interrupts

    with Interrupts() as interrupts:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler runs here
        os.kill(os.getpid(), signal.SIGINT)  # deferred: only counted
        time.sleep(0.01)
    assert interrupts.count == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
