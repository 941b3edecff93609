"""Tests of learning-rate schedules: values, validation, the step they scale, exact resume."""

from __future__ import annotations

import math
import zipfile

import numpy as np
import pytest

import eggroll_np as egg
from eggroll_np import optim
from eggroll_np.training import train

from .engine_helpers import as_format_2


def _params():
    rng = np.random.default_rng(2)
    return {"W": rng.standard_normal((4, 3)).astype(np.float32), "b": np.zeros(3, np.float32)}


def _fitness(p):
    return -float(((p["W"] - 0.5) ** 2).sum() + ((p["b"] + 1.0) ** 2).sum())


def test_schedule_values():
    lin = egg.init(_params(), population=4, lr=0.1, lr_schedule="linear", lr_decay_steps=4).config
    assert [optim.learning_rate(lin, c) for c in (1, 3, 5, 9)] == pytest.approx(
        [0.1, 0.05, 0.0, 0.0]
    )
    cos = egg.init(
        _params(), population=4, lr=0.1, lr_schedule="cosine", lr_final=0.02, lr_decay_steps=10
    ).config
    assert optim.learning_rate(cos, 1) == pytest.approx(0.1)
    assert optim.learning_rate(cos, 6) == pytest.approx(
        0.02 + 0.08 * 0.5 * (1 + math.cos(0.5 * math.pi))
    )
    assert optim.learning_rate(cos, 11) == pytest.approx(0.02)
    assert optim.learning_rate(cos, 500) == pytest.approx(0.02)
    const = egg.init(_params(), population=4, lr=0.1).config
    assert const.schedule == optim.Schedule("constant", None, None)
    assert optim.learning_rate(const, 1000) == 0.1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr_schedule": "step"}, "lr_schedule"),
        ({"lr_schedule": "cosine"}, "lr_decay_steps"),
        ({"lr_schedule": "cosine", "lr_decay_steps": 0}, "lr_decay_steps"),
        ({"lr_schedule": "linear", "lr_decay_steps": 5, "lr_final": -1.0}, "lr_final"),
        ({"lr_final": 0.01}, "lr_final"),
        ({"lr_decay_steps": 10}, "lr_decay_steps"),
    ],
)
def test_bad_schedules_name_the_argument(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        egg.init(_params(), population=4, **kwargs)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_step_uses_the_scheduled_lr(optimizer):
    # Same fitness and noise: the scheduled run's k-th step is the constant run's at lr_k / lr
    # (sgd exactly proportional; adam's direction does not depend on lr either).
    params = _params()
    kw = {"population": 8, "seed": 3, "optimizer": optimizer, "lr": 0.05}
    sched = egg.init(params, lr_schedule="linear", lr_final=0.0, lr_decay_steps=2, **kw)
    const = egg.init(params, **kw)
    p_s, s_s = egg.step(params, _fitness, sched)
    p_c, s_c = egg.step(params, _fitness, const)
    np.testing.assert_allclose(p_s["W"], p_c["W"], rtol=1e-6)  # step 1: lr
    p_s2, s_s2 = egg.step(p_s, _fitness, s_s)
    p_c2, _ = egg.step(p_c, _fitness, s_c)
    d_s, d_c = p_s2["W"] - p_s["W"], p_c2["W"] - p_c["W"]
    np.testing.assert_allclose(d_s, 0.5 * d_c, rtol=1e-4, atol=1e-7)  # step 2: lr / 2
    p_s3, _ = egg.step(p_s2, _fitness, s_s2)
    np.testing.assert_array_equal(p_s3["W"], p_s2["W"])  # step 3 on: lr_final = 0


def test_resume_with_a_schedule_is_bit_identical(tmp_path):
    params = _params()
    state = egg.init(
        params, population=6, seed=1, lr=0.05, lr_schedule="cosine", lr_final=0.005,
        lr_decay_steps=6,
    )  # fmt: skip
    for _ in range(2):
        params, state = egg.step(params, _fitness, state)
    egg.save(tmp_path / "k.npz", params, state)
    for _ in range(5):
        params, state = egg.step(params, _fitness, state)
    resumed, rstate = egg.load(tmp_path / "k.npz")
    assert rstate.config == state.config
    for _ in range(5):
        resumed, rstate = egg.step(resumed, _fitness, rstate)
    for k in params:
        np.testing.assert_array_equal(params[k], resumed[k])


def test_a_checkpoint_without_schedule_fields_loads_as_constant(tmp_path):
    params = _params()
    state = egg.init(params, population=4, lr=0.05)
    egg.save(tmp_path / "c.npz", params, state)

    def drop_schedule(meta):
        for key in ("lr_schedule", "lr_final", "lr_decay_steps"):
            del meta["config"][key]

    as_format_2(tmp_path / "c.npz", tmp_path / "old.npz", drop_schedule)
    assert zipfile.is_zipfile(tmp_path / "old.npz")
    _, loaded = egg.load(tmp_path / "old.npz")
    assert loaded.config == state.config
    assert loaded.config.schedule == optim.Schedule()


def test_train_decays_over_the_generations_and_stores_it(tmp_path):
    kw = {"population": 8, "inputs": 4, "outputs": 3, "batch": 16}
    train.run("matching", out=str(tmp_path), generations=3, lr_schedule="cosine", **kw)
    _, state = egg.load(tmp_path / train.CHECKPOINT)
    assert state.config.schedule == optim.Schedule("cosine", final=0.0, steps=3)
