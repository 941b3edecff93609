"""`eggroll-np bench tables`: every section written (json, md, plots), settings and helpers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eggroll_np import cli
from eggroll_np.benchmarks import tables
from eggroll_np.benchmarks.tables import measure, report

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")


@pytest.mark.slow
def test_bench_tables_quick_writes_every_section(tmp_path, capsys):
    # The --quick preset with smaller models and budgets: the real code path, CI-sized.
    out = tmp_path / "tables"
    rc = cli.main(
        ["bench", "tables", "--quick", "--sizes", "3000,12000", "--populations", "8,16",
         "--population", "16", "--budget", "0.1", "--out", str(out)]
    )  # fmt: skip
    assert rc == 0
    data = json.loads((out / "tables.json").read_text())
    assert set(tables.SECTIONS) <= set(data)
    ms = data["model_size"]["rows"]
    assert [r["params"] for r in ms] == [
        measure.param_count(measure.mlp_sizes(p)) for p in (3000, 12000)
    ]
    for row in ms + data["population_scaling"]["rows"]:
        for key in ("standard_es_s", "eggroll_s", "standard_es_mb", "eggroll_mb"):
            assert row[key] > 0, key
    assert [r["population"] for r in data["population_scaling"]["rows"]] == [8, 16]
    assert [r["rank"] for r in data["rank"]["rows"]] == [1, 2, 4]
    for row in data["rank"]["rows"]:
        assert 0 <= row["test_accuracy"] <= 1
        assert row["peak_mb"] > 0
    methods = [r["method"] for r in data["matching_convergence"]["rows"]]
    assert methods == [
        "EGGROLL r=1",
        "EGGROLL r=2",
        "standard ES (full rank)",
        "SGD (exact gradients)",
    ]  # noqa: E501
    for row in data["matching_convergence"]["rows"]:
        assert row["final_fitness"] <= 0
    cnn_rows = data["cnn"]["rows"]
    assert [r["method"] for r in cnn_rows][-1] == "SGD (exact gradients)"
    for row in cnn_rows:
        assert 0 <= row["test_accuracy"] <= 1
        assert row["seconds_per_generation"] > 0
    md = (out / "tables.md").read_text()
    for name in tables.SECTIONS:
        assert f"## {name}" in md
        assert report.CLAIMS[name] in md
    assert "85-90%" in md  # the pages' CNN claim beside ours
    for png in ("model_size.png", "population_scaling.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## cnn" in capsys.readouterr().out
    # --only re-measures one section and keeps the others
    before = data["model_size"]
    rc = cli.main(
        ["bench", "tables", "--quick", "--only", "rank", "--population", "16", "--budget", "0.05",
         "--out", str(out)]
    )  # fmt: skip
    assert rc == 0
    again = json.loads((out / "tables.json").read_text())
    assert again["model_size"] == before
    assert "--only rank" in again["rank"]["measured_by"]["command"]
    assert set(tables.SECTIONS) <= set(again)


def test_mlp_sizes_hit_the_requested_parameter_counts():
    for target in (10**6, 10**7, 10**8):
        got = measure.param_count(measure.mlp_sizes(target))
        assert abs(got - target) / target < 0.02
    assert measure.param_count((3, 4, 2)) == 3 * 4 + 4 + 4 * 2 + 2


def test_traced_sees_numpy_allocations():
    _, peak = measure.traced(lambda: np.ones(1 << 20, np.float32).sum())
    assert 4 << 20 <= peak < 6 << 20


def test_markdown_marks_skips_and_ratios():
    section = {
        "population": 256,
        "rows": [
            {"params": 1000, "standard_es_s": 2.0, "eggroll_s": 0.5, "standard_es_mb": 3.0,
             "eggroll_mb": 1.0},
            {"params": 10**8, "standard_es_s": None, "eggroll_s": 1.5, "standard_es_mb": None,
             "eggroll_mb": 900.0},
        ],
        "skipped": ["standard_es at 100,000,000 params, population 256: too slow"],
    }  # fmt: skip
    md = report.markdown({"model_size": section})
    assert "| 1,000 | 2 | 0.5 | 4 | 3 | 1 |" in md
    assert "| 100,000,000 | skipped | 1.5 | skipped | skipped | 900 |" in md
    assert report._fmt(2712.4) == "2,712"
    assert report._fmt(0.01234) == "0.0123"
    assert "Skipped: standard_es at 100,000,000 params" in md


def test_bad_options_are_rejected(tmp_path):
    with pytest.raises(SystemExit):
        cli.main(["bench", "tables", "--quick"])  # --out is required
    with pytest.raises(SystemExit):
        cli.main(["bench", "tables", "--sizes", "0", "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "tables", "--populations", "7", "--out", str(tmp_path)])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        cli.main(["bench", "tables", "--only", "nope", "--out", str(tmp_path / "x")])
    assert not any(tmp_path.iterdir())  # nothing written
