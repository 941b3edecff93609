"""`eggroll-np bench report`: asv's results as one self-contained HTML page that works offline.

The page holds the last comparison (the two most recently run commits, regressions first) and
one history plot per benchmark (matplotlib SVG, inline): no script, no remote asset, nothing to
serve. It reads asv's results directory (`.asv/results`): `benchmarks.json` and one JSON file per
(machine, commit, environment), as asv 0.6 writes them. Every figure of this suite reads
lower-is-better (times, bytes, ratios with `unit` "ratio (lower is better)").
"""

from __future__ import annotations

import html
import io
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

__all__ = ["Run", "Row", "load_runs", "compare", "render", "write_report"]


@dataclass
class Run:
    """One asv result file: a commit's figures on one machine and environment.

    Attributes:
        commit: the full commit hash.
        date: the commit's date (ms since the epoch, as asv stores it).
        env: asv's environment name.
        started: when its newest benchmark started (ms since the epoch).
        values: benchmark name -> one float (or None: failed, skipped) per parameter
            combination, in the order of ``itertools.product(*params)``.
        ci: benchmark name -> per combination (low, high) of asv's 99% interval, or None.
    """

    commit: str
    date: float
    env: str
    started: float
    values: dict[str, list[float | None]] = field(default_factory=dict)
    ci: dict[str, list[tuple[float, float] | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class Row:
    """One line of the comparison: a benchmark at one parameter combination."""

    name: str
    params: str
    unit: str
    base: float | None
    head: float | None
    ratio: float | None  # head / base
    verdict: str  # "worse", "better", "same" or "n/a"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable asv JSON file ({exc})") from None


def _number(v: Any) -> float | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


def _run(path: Path, benchmarks: dict[str, Any]) -> Run:
    data = _read_json(path)
    if not isinstance(data, dict) or "commit_hash" not in data or "results" not in data:
        raise ValueError(f"{path}: not an asv result file (no commit_hash / results)")
    columns = data.get("result_columns", ["result", "params", "version", "started_at"])
    col = {name: j for j, name in enumerate(columns)}
    run = Run(str(data["commit_hash"]), float(data.get("date") or 0), str(data.get("env_name", "")),
              0.0)  # fmt: skip
    for name, entry in data["results"].items():
        if name not in benchmarks or not isinstance(entry, list) or not entry:
            continue
        result = entry[col["result"]]
        values = result if isinstance(result, list) else [result]
        run.values[name] = [_number(v) for v in values]
        a = entry[col["stats_ci_99_a"]] if len(entry) > col.get("stats_ci_99_a", 99) else None
        b = entry[col["stats_ci_99_b"]] if len(entry) > col.get("stats_ci_99_b", 99) else None
        if isinstance(a, list) and isinstance(b, list) and len(a) == len(b) == len(values):
            run.ci[name] = [
                (lo, hi) if _number(lo) is not None and _number(hi) is not None else None
                for lo, hi in zip(a, b, strict=True)
            ]
        started = entry[col["started_at"]] if len(entry) > col.get("started_at", 99) else None
        run.started = max(run.started, _number(started) or 0.0)
    return run


def load_runs(results: str | os.PathLike, machine: str | None = None) -> tuple[dict, list[Run]]:
    """(benchmarks.json's benchmarks, the machine's runs ordered by commit date) of an asv
    results directory. `machine` may be omitted when the directory holds one machine.

    Raises:
        ValueError: naming the path, when the directory, benchmarks.json or a result file is
            missing or not what asv writes, or the machine is ambiguous or unknown.
    """
    root = Path(results)
    if not root.is_dir():
        raise ValueError(f"{root}: no such results directory (asv writes .asv/results)")
    index = root / "benchmarks.json"
    if not index.is_file():
        raise ValueError(f"{index}: missing (run asv first: asv continuous or asv run)")
    benchmarks = _read_json(index)
    if not isinstance(benchmarks, dict):
        raise ValueError(f"{index}: not asv's benchmark list")
    benchmarks = {k: v for k, v in benchmarks.items() if isinstance(v, dict) and "type" in v}
    machines = sorted(p.name for p in root.iterdir() if (p / "machine.json").is_file())
    if machine is None:
        if len(machines) != 1:
            raise ValueError(f"{root}: holds results of machines {machines}: choose one with "
                             "--machine")  # fmt: skip
        machine = machines[0]
    elif machine not in machines:
        raise ValueError(f"{root}: no results of machine {machine!r} (found {machines})")
    runs = [_run(p, benchmarks) for p in sorted((root / machine).glob("*.json"))
            if p.name != "machine.json"]  # fmt: skip
    if not runs:
        raise ValueError(f"{root / machine}: no result files")
    return benchmarks, sorted(runs, key=lambda r: (r.date, r.started))


def _combos(meta: dict[str, Any]) -> list[str]:
    """Display labels of a benchmark's parameter combinations ("" when it has none)."""
    params = meta.get("params") or []
    if not params:
        return [""]
    names = meta.get("param_names") or [f"p{j}" for j in range(len(params))]
    return [
        ", ".join(f"{n}={str(v).strip(chr(39))}" for n, v in zip(names, combo, strict=True))
        for combo in product(*params)
    ]


def compare(benchmarks: dict, base: Run, head: Run, factor: float = 1.5) -> list[Row]:
    """Rows of head against base, regressions first (largest ratio first), then improvements,
    unchanged and n/a. A change counts when head / base passes `factor` (either way) and, where
    asv kept 99% intervals for both, the two intervals do not overlap (asv's own rule)."""
    rows = []
    for name, meta in benchmarks.items():
        unit = str(meta.get("unit", ""))
        b_vals, h_vals = base.values.get(name), head.values.get(name)
        b_ci, h_ci = base.ci.get(name), head.ci.get(name)
        for j, label in enumerate(_combos(meta)):
            b = b_vals[j] if b_vals and j < len(b_vals) else None
            h = h_vals[j] if h_vals and j < len(h_vals) else None
            if b is None or h is None or b <= 0:
                if b is not None or h is not None:
                    rows.append(Row(name, label, unit, b, h, None, "n/a"))
                continue
            ratio = h / b
            verdict = "worse" if ratio >= factor else "better" if ratio <= 1 / factor else "same"
            cb = b_ci[j] if b_ci and j < len(b_ci) else None
            ch = h_ci[j] if h_ci and j < len(h_ci) else None
            if verdict != "same" and cb and ch and cb[0] <= ch[1] and ch[0] <= cb[1]:
                verdict = "same"  # the intervals overlap: not a significant change
            rows.append(Row(name, label, unit, b, h, ratio, verdict))
    order = {"worse": 0, "better": 1, "same": 2, "n/a": 3}
    return sorted(rows, key=lambda r: (order[r.verdict], -(r.ratio or 0) if r.verdict == "worse"
                                       else (r.ratio or 0), r.name, r.params))  # fmt: skip


def _scale(unit: str) -> tuple[float, str]:
    return {"seconds": (1e3, "ms"), "bytes": (1e-6, "MB")}.get(unit, (1.0, unit))


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "n/a"
    k, label = _scale(unit)
    return f"{v * k:.4g} {label}" if label in ("ms", "MB") else f"{v:.4g}"


def _plot(name: str, meta: dict[str, Any], runs: list[Run]) -> str:
    """One benchmark's history (x: commits by date, one line per parameter combination), as
    an inline <svg> element."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI

    k, label = _scale(str(meta.get("unit", "")))
    fig = Figure(figsize=(6.4, 2.6), dpi=96)
    ax = fig.add_subplot()
    have = [r for r in runs if name in r.values]
    for j, combo in enumerate(_combos(meta)):
        pts = [(x, r.values[name][j]) for x, r in enumerate(have) if j < len(r.values[name])]
        pts = [(x, v * k) for x, v in pts if v is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", ms=3, label=combo or None)
    ax.set_xticks(range(len(have)), [r.commit[:8] for r in have], rotation=30, fontsize=7)
    ax.set_ylabel(label, fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=6, loc="best")
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]  # drop the XML declaration and DOCTYPE: inline in HTML
    return re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)  # RDF: names, no content


_CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222}
main{max-width:980px;margin:auto;padding:1em}
table{border-collapse:collapse;font-size:13px}td,th{padding:2px 8px;border-bottom:1px solid #ddd}
td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.worse td{background:#fde2e1}tr.better td{background:#e3f5e1}
section.bench svg{max-width:100%;height:auto}code{font-size:12px}"""


def render(benchmarks: dict, runs: list[Run], factor: float = 1.5) -> str:
    """The report page's HTML (see the module docstring)."""
    esc = html.escape
    out = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
           "<title>eggroll_np benchmark report</title>", f"<style>{_CSS}</style></head>",
           "<body><main><h1>eggroll_np benchmark report</h1>"]  # fmt: skip
    out.append(f"<p>{len(runs)} result files, commits in date order: "
               + ", ".join(f"<code>{esc(r.commit[:8])}</code>" for r in runs)
               + ". Every figure reads lower-is-better.</p>")  # fmt: skip
    recent = sorted(runs, key=lambda r: r.started)[-2:]
    if len(recent) == 2:
        base, head = sorted(recent, key=lambda r: (r.date, r.started))
        rows = compare(benchmarks, base, head, factor)
        n_worse = sum(r.verdict == "worse" for r in rows)
        out.append(f"<h2 id='comparison'>Last comparison: <code>{esc(base.commit[:8])}</code> to "
                   f"<code>{esc(head.commit[:8])}</code></h2><p>{n_worse} regressions (head / "
                   f"base &ge; {factor:g}, asv's 99% intervals apart), regressions first.</p>")  # fmt: skip
        out.append("<table><tr><th>verdict</th><th>benchmark</th><th>parameters</th>"
                   "<th>base</th><th>head</th><th>head / base</th></tr>")  # fmt: skip
        for r in rows:
            ratio = "n/a" if r.ratio is None else f"{r.ratio:.3g}"
            out.append(f"<tr class='{r.verdict}'><td>{r.verdict}</td><td><a href='#{esc(r.name)}'>"
                       f"{esc(r.name)}</a></td><td>{esc(r.params)}</td>"
                       f"<td class='n'>{_fmt(r.base, r.unit)}</td><td class='n'>"
                       f"{_fmt(r.head, r.unit)}</td><td class='n'>{ratio}</td></tr>")  # fmt: skip
        out.append("</table>")
    else:
        out.append("<p>One commit only: no comparison yet.</p>")
    out.append("<h2>History</h2>")
    for name in sorted(benchmarks):
        if not any(name in r.values for r in runs):
            continue
        meta = benchmarks[name]
        out.append(f"<section class='bench' id='{esc(name)}'><h3>{esc(name)}</h3>"
                   f"<p>{esc(str(meta.get('type', '')))}, unit: {esc(str(meta.get('unit', '')))}"
                   f"</p>{_plot(name, meta, runs)}</section>")  # fmt: skip
    out.append("</main></body></html>\n")
    return "\n".join(out)


def write_report(results: str | os.PathLike, out: str | os.PathLike, machine: str | None = None,
                 factor: float = 1.5) -> Path:  # fmt: skip
    """Write `out`/index.html from the asv results directory `results`; returns its path.
    The page is written to a temporary file first: a failure leaves no partial page."""
    if not (isinstance(factor, (int, float)) and factor > 1):
        raise ValueError(f"factor must be a number > 1, got {factor!r}")
    benchmarks, runs = load_runs(results, machine)
    page = render(benchmarks, runs, factor)
    dest = Path(out)
    dest.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".index-", suffix=".html", dir=dest)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(page)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the page from a web server
        os.replace(tmp, dest / "index.html")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest / "index.html"
