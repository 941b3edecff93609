"""Sphinx extension: draws the benchmark figures from `eggroll-np bench --json` output.

The plots are never committed: they are redrawn from the JSON file (docs/data/bench_cpu.json) on
every build, so the page's figures and the data the command wrote cannot drift apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

# (key in a result record, label) in the order the bars are drawn.
TIMES = [
    ("inference_s", "pure inference"),
    ("forward_s", "population forward"),
    ("generation_s", "full generation"),
    ("naive_generation_s", "naive full-rank ES generation"),
]


def _load(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        results = data["results"]
        for r in results:
            for key in ("workload", "inference_s", "forward_s", "generation_s"):
                r[key]  # noqa: B018 - presence check; a KeyError names the missing field
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ExtensionError(f"{path}: not an `eggroll-np bench --json` file ({exc!r})") from exc
    return results


def draw(results: list[dict[str, Any]], out: Path) -> None:
    """Two panels: median times per workload (log scale) and the ratios to pure inference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = [r["workload"] for r in results]
    fig, (ax_t, ax_r) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    x = np.arange(len(names))
    width = 0.2
    for j, (key, label) in enumerate(TIMES):
        vals = [r.get(key, np.nan) * 1e3 for r in results]
        ax_t.bar(x + (j - 1.5) * width, vals, width, label=label)
    ax_t.set_yscale("log")
    ax_t.set_xticks(x, names)
    ax_t.set_ylabel("median time per call (ms, log scale)")
    ax_t.set_title("time per call")
    ax_t.legend(fontsize="small")

    ratios = [
        ("forward_throughput_ratio", "forward throughput / inference"),
        ("generation_over_inference", "generation time / inference time"),
    ]
    for j, (key, label) in enumerate(ratios):
        ax_r.bar(x + (j - 0.5) * 0.35, [r[key] for r in results], 0.35, label=label)
    ax_r.axhline(1.0, color="black", linewidth=0.8)
    ax_r.set_xticks(x, names)
    ax_r.set_title("ratio to pure inference of all N x B rows")
    ax_r.legend(fontsize="small")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _build(app: Sphinx) -> None:
    src = Path(app.srcdir)
    for name in app.config.benchplots:
        data = src / "data" / f"{name}.json"
        draw(_load(data), src / "_generated" / f"{name}.png")


def setup(app: Sphinx) -> dict[str, Any]:
    """Register `benchplots` (names of docs/data/NAME.json files) and draw them before reading."""
    app.add_config_value("benchplots", ["bench_cpu"], "env")
    app.connect("builder-inited", _build)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
