"""tables.md (each table beside the reference pages' claimed figure) and the PNG plots."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["CLAIMS", "markdown", "plot"]

# The reference benchmark pages' claims, as the issue that asked for these tables states them;
# none of them comes with a command that reproduces it.
CLAIMS: dict[str, str] = {
    "model_size": 'memory and time per generation at 1M/10M/100M parameters, "100x" '
    "(EGGROLL against standard ES)",
    "population_scaling": "time and memory per generation at populations 50 to 1024 "
    "(no figure stated)",
    "rank": "rank 1/2/4 (no figure stated)",
    "matching_convergence": "parameter-matching convergence (no figure stated)",
    "cnn": "Simple CNN on MNIST, population 256, 100 generations: EGGROLL 85-90% at 0.5 s "
    "a generation; SGD 95%+",
}


def _fmt(value: Any, none: str = "skipped") -> str:
    if value is None:
        return none
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.3g}"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> list[str]:
    lines = ["| " + " | ".join(title for _, title in columns) + " |"]
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        cells = [
            _fmt(
                row.get(key), "not within budget" if key == "generations_to_converge" else "skipped"
            )
            for key, _ in columns
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _ratio(a: Any, b: Any) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "model_size": [
        ("params", "parameters"),
        ("standard_es_s", "standard ES s/gen"),
        ("eggroll_s", "EGGROLL s/gen"),
        ("speedup", "speed-up"),
        ("standard_es_mb", "standard ES peak MB"),
        ("eggroll_mb", "EGGROLL peak MB"),
    ],
    "population_scaling": [
        ("population", "population"),
        ("standard_es_s", "standard ES s/gen"),
        ("eggroll_s", "EGGROLL s/gen"),
        ("speedup", "speed-up"),
        ("standard_es_mb", "standard ES peak MB"),
        ("eggroll_mb", "EGGROLL peak MB"),
    ],
    "rank": [
        ("rank", "rank"),
        ("seconds_per_generation", "s/gen"),
        ("peak_mb", "peak MB"),
        ("test_accuracy", "digits test accuracy"),
    ],
    "matching_convergence": [
        ("method", "method"),
        ("generations_to_converge", "generations to converge"),
        ("final_fitness", "final fitness (-MSE)"),
        ("final_parameter_error", "final parameter error"),
        ("total_s", "total s"),
    ],
    "cnn": [
        ("method", "method"),
        ("test_accuracy", "test accuracy"),
        ("seconds_per_generation", "s/gen (SGD: s/step)"),
        ("generations", "generations (SGD: steps)"),
        ("total_s", "total s"),
    ],
}


def _describe(name: str, section: Mapping[str, Any]) -> str:
    if name == "model_size":
        return f"3-layer ReLU MLPs, population {section['population']}, 16 shared input rows."
    if name == "population_scaling":
        return f"MLP {section['layers']} ({section['params']:,} parameters), 16 shared rows."
    if name == "rank":
        return (
            f"digits MLP (hidden {section['hidden']}), population {section['population']}, "
            f"{section['generations']} generations."
        )
    if name == "matching_convergence":
        return (
            f"one tanh layer {section['inputs']} -> {section['outputs']}, population "
            f"{section['population']}, budget {section['budget']} generations (SGD: steps); "
            f"converged = parameter error <= {section['threshold']}."
        )
    return (
        f"Simple CNN on {section['data']}, channels {section['channels']}, hidden "
        f"{section['hidden']}, population {section['population']}."
    )


def markdown(tables: Mapping[str, Any]) -> str:
    """tables.md: every section as a table, the pages' claim under its title, skips listed."""
    lines = ["# eggroll-np bench tables", ""]
    meta = tables.get("meta", {})
    if meta:
        lines += [
            f"Last command: `{meta.get('command', '')}`; machine: {meta.get('machine', '')}; "
            f"{meta.get('wall_s', 0):.0f} s.",
            "",
            'Standard ES is the library\'s `noise="full"` path evaluated member by member '
            "(each dense perturbation regenerated from its counters and dropped after use); "
            "peak MB is the NumPy memory traced over init and one generation.",
            "",
        ]
    for name, columns in _COLUMNS.items():
        section = tables.get(name)
        if section is None:
            continue
        rows = [dict(r) for r in section["rows"]]
        for r in rows:
            if "eggroll_s" in r:
                r["speedup"] = _ratio(r.get("standard_es_s"), r.get("eggroll_s"))
        lines += [f"## {name}", "", f"Reference pages claim: {CLAIMS[name]}.", ""]
        lines += [f"Ours: {_describe(name, section)}", ""]
        by = section.get("measured_by")
        if by:
            lines += [f"Measured by `{by['command']}` ({by['machine']}).", ""]
        lines += _table(rows, columns)
        for why in section.get("skipped", []):
            lines.append(f"\nSkipped: {why}.")
        lines.append("")
    return "\n".join(lines)


def plot(tables: Mapping[str, Any], out: str) -> list[str]:
    """PNG plots (log axes, both methods): time and memory against model size and population.

    Returns the paths written.
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI

    written = []
    for name, key, label in (
        ("model_size", "params", "parameters"),
        ("population_scaling", "population", "population"),
    ):
        section = tables.get(name)
        if section is None:
            continue
        fig = Figure(figsize=(10, 4), layout="constrained")
        ax_t, ax_m = fig.subplots(1, 2)
        for method, title in (("standard_es", "standard ES"), ("eggroll", "EGGROLL")):
            pts = [(r[key], r[f"{method}_s"], r[f"{method}_mb"]) for r in section["rows"]]
            pts = [p for p in pts if p[1] is not None]
            if not pts:
                continue
            ax_t.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=title)
            ax_m.plot([p[0] for p in pts], [p[2] for p in pts], "o-", label=title)
        for ax, ylabel in ((ax_t, "seconds per generation"), (ax_m, "peak memory (MB)")):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(label)
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
        fig.suptitle(f"{name.replace('_', ' ')}: EGGROLL vs standard ES")
        path = os.path.join(out, f"{name}.png")
        fig.savefig(path, dpi=100)
        written.append(path)
    return written
