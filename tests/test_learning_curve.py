"""The learning curve PNG says what the fitness is and draws the baseline as a reference."""

from __future__ import annotations

import pytest

from eggroll_np.training import train
from eggroll_np.training.workloads import classification, get

pytest.importorskip("matplotlib")

RECORDS = [
    {"generation": g, "fitness_mean": -2.0 + g / 10, "fitness_max": -1.9 + g / 10,
     "fitness_min": -2.1 + g / 10, "fitness_std": 0.1, "update_norm": 0.1, "elapsed_s": g,
     "test_accuracy": 0.5 + g / 40}
    for g in range(1, 11)
]  # fmt: skip


def test_fitness_axis_and_baseline_line(tmp_path):
    label = classification.FITNESS_LABELS["xent"]
    fig = train.plot_metrics(RECORDS, str(tmp_path / "c.png"), "t", label,
                             {"baseline_test_accuracy": 0.972, "wall_s": 3.0})  # fmt: skip
    assert (tmp_path / "c.png").stat().st_size > 0
    fitness_ax, acc_ax = fig.axes[:2]
    assert fitness_ax.get_ylabel() == label
    assert "cross-entropy" in label
    refs = [ln for ln in acc_ax.get_lines() if ln.get_label().startswith("baseline")]
    assert len(refs) == 1
    assert list(refs[0].get_ydata()) == [0.972, 0.972]
    assert [ln.get_label() for ln in fitness_ax.get_lines()] == ["fitness mean", "fitness max"]


@pytest.mark.parametrize("fitness", classification.FITNESSES)
def test_digits_task_names_its_fitness(fitness):
    w = get("digits")
    config = {**w.defaults, "seed": 0, "fitness": fitness, "baseline": False}
    assert w.make(config).fitness_label == classification.FITNESS_LABELS[fitness]
