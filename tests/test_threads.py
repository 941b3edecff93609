"""eggroll_np.threads: one control for BLAS and the C++ core; --threads means it in every command."""

from __future__ import annotations

import argparse
import sys

import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import eggroll_np as egg
from eggroll_np import _ext, tuning
from eggroll_np.cli import build_parser

core = _ext.core


def _blas() -> int | None:
    counts = [d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"]
    return max(counts) if counts else None


@pytest.fixture(autouse=True)
def restore():
    before = egg.threads()
    yield
    if before.blas is not None:
        threadpool_limits(before.blas, user_api="blas")
    if core is not None:
        core.set_num_threads(before.core)


def test_threads_with_no_argument_reports_the_counts_in_use():
    got = egg.threads()
    assert isinstance(got, tuning.ThreadCounts)
    assert got.blas == _blas()
    assert got.core == (core.num_threads() if core is not None else None)


def test_a_setter_that_stays_and_a_context_manager_that_restores():
    before = egg.threads()
    egg.threads(1)  # a plain call: in force from now on
    assert egg.threads() == (1 if core is not None else None, 1 if _blas() else None)
    with egg.threads(3) as setting:
        assert setting.previous == egg.tuning.ThreadCounts(
            1 if core is not None else None, 1 if _blas() else None
        )
        inside = egg.threads()
        assert inside.core in (3, None) and inside.blas in (3, None)
        with egg.threads(2):
            assert egg.threads().core in (2, None)
        assert egg.threads() == inside  # the inner block restored the outer one's counts
    assert egg.threads().core in (1, None) and egg.threads().blas in (1, None)
    assert before.core is None or before.core >= 1


def test_the_context_manager_restores_after_an_exception():
    egg.threads(2)
    with pytest.raises(RuntimeError, match="boom"), egg.threads(1):
        raise RuntimeError("boom")
    assert egg.threads().core in (2, None)


@pytest.mark.parametrize(("value", "error"), [(0, ValueError), (-1, ValueError), (1 << 17, ValueError), (2.5, TypeError), ("2", TypeError), (True, TypeError)])  # fmt: skip
def test_bad_counts_are_errors_naming_n_and_change_nothing(value, error):
    egg.threads(2)
    before = egg.threads()
    with pytest.raises(error, match="^n must"):
        egg.threads(value)
    assert egg.threads() == before


def test_without_threadpoolctl_threads_warns_that_blas_is_left_alone(monkeypatch):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # import now raises ImportError
    assert egg.threads().blas is None
    with pytest.warns(RuntimeWarning, match="threadpoolctl is not installed.*BLAS keeps"):
        setting = egg.threads(1)
    assert egg.threads().core in (1, None)  # the core is still set
    with pytest.warns(RuntimeWarning, match="threadpoolctl"):
        with egg.threads(2):
            pass
    setting.__exit__(None, None, None)


def test_threads_for_run_zero_leaves_both_alone_and_checks_the_value():
    egg.threads(2)
    before = egg.threads()
    with tuning.threads_for_run(0):
        assert egg.threads() == before
    with tuning.threads_for_run(1):
        assert egg.threads().core in (1, None)
    assert egg.threads() == before
    with pytest.raises(ValueError, match="--threads must be an integer >= 0, got -1"):
        tuning.threads_for_run(-1)


def _threads_action(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Action:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    p = sub.choices[argv[0]]
    for tail in argv[1:]:
        inner = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        p = inner.choices[tail]
    return next(a for a in p._actions if "--threads" in a.option_strings)


@pytest.mark.parametrize("command", [["train", "matching"], ["bench"], ["bench", "tables"]])
def test_threads_option_has_one_meaning_and_default_in_every_command(command):
    parser = build_parser()
    action = _threads_action(parser, command if command[0] != "train" else ["train", "matching"])
    assert action.default == 0
    assert "eggroll_np.threads(T)" in action.help and "Default 0" in action.help


def test_train_sets_both_counts_for_the_run(monkeypatch, tmp_path):
    from eggroll_np.training import train as train_mod

    seen = {}

    def fake(*args, **kwargs):
        seen["counts"] = egg.threads()
        return {}

    monkeypatch.setattr(train_mod, "_train", fake)
    egg.threads(2)
    train_mod.run("matching", out=str(tmp_path), threads=1, progress=False)
    assert seen["counts"].core in (1, None) and seen["counts"].blas in (1, None)
    assert egg.threads().core in (2, None)  # restored after the run
    with pytest.raises(ValueError, match="--threads must be an integer >= 0"):
        train_mod.run("matching", out=str(tmp_path), threads=-2, progress=False)
