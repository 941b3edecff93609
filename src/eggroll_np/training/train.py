"""`eggroll-np train NAME`: one training loop for all workloads (progress, logs, plot, resume)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from .. import _checks, checkpoint, es
from .progress import progress as progress_display
from .workloads import Task, Workload, get

__all__ = [
    "ES_KEYS",
    "SCHEDULE_DEFAULTS",
    "es_options",
    "resolve_config",
    "run",
    "plot_metrics",
    "read_metrics",
]

#: Options passed to eggroll_np.init; a checkpoint's values win over the workload's defaults.
ES_KEYS = ("population", "sigma", "lr", "rank", "seed", "optimizer", "shaping")
SCHEDULE_DEFAULTS: dict[str, Any] = {"lr_schedule": "constant", "lr_final": 0.0}
"""Every workload's lr schedule unless its defaults say otherwise; a linear or cosine schedule
decays over the run's --generations (stored in the checkpoint: a resumed run keeps it)."""


def es_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """The `es.init` keyword arguments of a resolved run config (ES_KEYS and the lr schedule)."""
    options = {k: config[k] for k in ES_KEYS}
    if config["lr_schedule"] != "constant":
        options.update(
            lr_schedule=config["lr_schedule"],
            lr_final=config["lr_final"],
            lr_decay_steps=max(1, int(config["generations"])),
        )
    return options


METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.npz"
PLOT = "learning_curve.png"
RUN_FILE = "run.json"


def resolve_config(
    w: Workload, overrides: Mapping[str, Any], saved: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Defaults, a recipe's values, a resumed run's saved options, then the options given.

    None means "not given". The recipe (`--recipe`, workloads that have recipes) comes from the
    options given or else from the saved run.
    """
    config: dict[str, Any] = {**SCHEDULE_DEFAULTS, **w.defaults, "seed": 0}
    unknown = sorted(set(overrides) - set(config))
    if unknown:
        raise TypeError(f"{w.name} has no option(s) {', '.join(unknown)}")
    recipe = overrides.get("recipe") or (saved or {}).get("recipe")
    if recipe is not None:
        if recipe not in w.recipes:
            raise ValueError(
                f"--recipe must be one of {sorted(w.recipes)} for {w.name}, got {recipe!r}"
            )
        config.update(w.recipes[recipe])
        config["recipe"] = recipe
    if saved:
        config.update({k: v for k, v in saved.items() if k in config})
        _check_resume_options(w, overrides, saved)
    config.update({k: v for k, v in overrides.items() if v is not None})
    if isinstance(config.get("hidden"), list):
        config["hidden"] = tuple(config["hidden"])
    _checks.integer("--seed", config["seed"], 0, 2**64)
    _checks.integer("--generations", config["generations"], 0)
    return config


def _same(a: Any, b: Any) -> bool:
    """Equal option values (run.json stores tuples as lists)."""
    a = tuple(a) if isinstance(a, list) else a
    b = tuple(b) if isinstance(b, list) else b
    return a == b


def _check_resume_options(
    w: Workload, overrides: Mapping[str, Any], saved: Mapping[str, Any]
) -> None:
    """ValueError naming every option given on the command line that differs from the resumed
    run's (run.json); only options that do not change what is trained may differ."""
    may_change = {"generations", *w.evaluation_options}
    differ = [
        k
        for k, v in overrides.items()
        if v is not None and k not in may_change and k in saved and not _same(v, saved[k])
    ]
    if differ:
        parts = ", ".join(
            f"--{k.replace('_', '-')} {_show(overrides[k])} (the run has {_show(saved[k])})"
            for k in differ
        )
        raise ValueError(
            f"--resume: the command line differs from the checkpoint's run: {parts}; drop "
            "these options to resume (they are read from its run.json), or start a new run"
        )


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _resume_state(
    path: str, config: dict[str, Any], overrides: Mapping[str, Any]
) -> tuple[Any, Any]:
    params, state = checkpoint.load(path)
    saved = state.config
    for key in ES_KEYS:
        given = overrides.get(key)
        if given is not None and given != getattr(saved, key):
            raise ValueError(
                f"--{key} {given} differs from the checkpoint's {getattr(saved, key)}; "
                "drop it to resume, or start a new run"
            )
        config[key] = getattr(saved, key)
    return params, state


def read_metrics(path: str) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl (an empty list when it does not exist)."""
    if not os.path.exists(path):
        return []
    records = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path!r} line {n} is not JSON: {exc}") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("generation"), int):
                raise ValueError(f"{path!r} line {n} is not a metrics record")
            records.append(rec)
    return records


def plot_metrics(
    records: list[dict[str, Any]],
    path: str,
    title: str,
    fitness_label: str = "fitness",
    references: Mapping[str, float] | None = None,
) -> Any:
    """Learning curve PNG: fitness mean/max (and min-max band), plus each monitored value.

    Args:
        fitness_label: the fitness axis's label (what the fitness is).
        references: a dashed reference line on the panel of each monitored key k for which
            references holds ``"baseline_" + k`` (e.g. the baseline's test accuracy).

    Returns:
        The matplotlib Figure written to `path`.
    """
    from matplotlib.figure import Figure  # no pyplot: no global backend state, no GUI

    base = {"generation", "fitness_mean", "fitness_max", "fitness_min", "fitness_std"}
    base |= {"update_norm", "elapsed_s"}
    extra = [k for k in (records[0] if records else {}) if k not in base]
    fig = Figure(figsize=(7, 3.2 * (1 + len(extra))), layout="constrained")
    axes = fig.subplots(1 + len(extra), 1, squeeze=False)[:, 0]
    gen = [r["generation"] for r in records]
    ax = axes[0]
    ax.fill_between(
        gen,
        [r["fitness_min"] for r in records],
        [r["fitness_max"] for r in records],
        alpha=0.2,
        label="population min-max",
    )
    ax.plot(gen, [r["fitness_mean"] for r in records], label="fitness mean")
    ax.plot(gen, [r["fitness_max"] for r in records], lw=0.8, label="fitness max")
    ax.set_ylabel(fitness_label, fontsize=8 if len(fitness_label) > 30 else None)
    ax.set_title(title)
    ax.legend(loc="lower right")
    for ax, key in zip(axes[1:], extra, strict=True):
        pts = [(r["generation"], r[key]) for r in records if key in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=key)
        ax.set_ylabel(key)
        ref = (references or {}).get(f"baseline_{key}")
        if ref is not None:
            ax.axhline(ref, ls="--", color="gray", label=f"baseline {ref:.3g}")
            ax.legend(loc="lower right")
    axes[-1].set_xlabel("generation")
    fig.savefig(path, dpi=100)
    return fig


def _write_run_file(out: str, name: str, config: Mapping[str, Any]) -> None:
    with open(os.path.join(out, RUN_FILE), "w", encoding="utf-8") as fh:
        json.dump({"workload": name, "config": dict(config)}, fh, indent=2, default=list)


def _saved_config(resume: str, name: str) -> dict[str, Any] | None:
    path = os.path.join(os.path.dirname(os.path.abspath(resume)), RUN_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            saved = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"--resume: cannot read the run's options from {path!r}: {exc}") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
        raise ValueError(f"--resume: {path!r} is not a run.json written by eggroll-np train")
    if saved.get("workload") != name:
        raise ValueError(f"--resume {resume!r} is a {saved.get('workload')!r} run, not {name!r}")
    return saved["config"]


def _check_out(out: str) -> None:
    """ValueError naming --out when the output directory could not be created or written
    (before any work is done); creates nothing: a refused run leaves no folder behind."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out!r} exists and is not a directory")
    parent = os.path.abspath(out)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"--out {out!r} cannot be created: {parent!r} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        what = "is not writable" if parent == os.path.abspath(out) else "cannot be created"
        raise ValueError(f"--out {out!r} {what} ({parent!r} is not writable)")


def _make_out(out: str) -> None:
    """Create the output directory once the run's options and task are accepted."""
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--out {out!r} cannot be created: {exc.strerror or exc}") from None


def run(
    name: str,
    out: str | None = None,
    resume: str | None = None,
    progress: bool = False,
    checkpoint_every: int = 50,
    threads: int = 0,
    workers: int | None = None,
    ray_address: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Train workload `name`; the Python form of `eggroll-np train NAME`.

    Args:
        name: a workload name (eggroll_np.training.workloads.NAMES).
        out: output directory (created), default runs/NAME: metrics.jsonl (one JSON record per
            generation), learning_curve.png, checkpoint.npz, run.json, summary.json.
        resume: a checkpoint to continue from; its ES settings and the run.json beside it win
            over the defaults, and continuing gives exactly the params of an uninterrupted run.
        progress: show the tqdm progress bar.
        checkpoint_every: save a checkpoint every this many generations (and at the end and on
            KeyboardInterrupt, which is re-raised after saving).
        threads: threads of BLAS and of the C++ core during the run, as
            `eggroll_np.threads(threads)`; 0 leaves both at their defaults.
        workers: evaluate the population on this many Ray actors (`eggroll_np.distributed`,
            the `ray` extra); None runs in this process. The params are the same either way.
        ray_address: an existing Ray cluster for `workers` (None: start a local Ray).
        **overrides: options of the workload (population, sigma, ..., hidden, fitness, ...);
            None means "not given".

    Returns:
        The summary: workload, generations, wall_s, the evaluation's values, the baseline's.
    """
    if workers is not None:
        workers = _checks.integer("--workers", workers, 1)
    from ..tuning import threads_for_run

    with threads_for_run(threads):
        return _train(
            name, out, resume, progress, checkpoint_every, overrides, workers, ray_address
        )


def _train(
    name: str,
    out: str | None,
    resume: str | None,
    progress: bool,
    checkpoint_every: int,
    overrides: Mapping[str, Any],
    workers: int | None = None,
    ray_address: str | None = None,
) -> dict[str, Any]:
    w = get(name)
    checkpoint_every = _checks.integer("--checkpoint-every", checkpoint_every, 1)
    out = out or os.path.join("runs", name)
    _check_out(out)
    config = resolve_config(w, overrides, _saved_config(resume, name) if resume else None)
    if resume:
        params, state = _resume_state(resume, config, overrides)
    task: Task = w.make(config)
    if resume:
        es.check_state(params, state)  # a changed model (e.g. --hidden) cannot resume
    else:
        params = task.params
        state = es.init(params, **es_options(config), **task.es_options)
    _make_out(out)
    _write_run_file(out, name, config)
    metrics_path, ckpt_path = os.path.join(out, METRICS), os.path.join(out, CHECKPOINT)
    # Keep the log of the generations the resumed state has already done, drop the rest.
    records = [r for r in read_metrics(metrics_path) if r["generation"] < state.generation]
    offset = float(records[-1].get("elapsed_s", 0.0)) if records else 0.0
    resumed_at = state.generation
    generations = int(config["generations"])
    bar = progress_display(generations, min(state.generation, generations), progress)
    evaluator = None
    start = time.perf_counter()
    try:
        if workers is not None:
            from ..distributed import RayEvaluator

            evaluator = RayEvaluator(
                params,
                state,
                partial(_workload_fitness, name, dict(config)),
                workers=workers,
                batched=task.batched,
                factory=True,
                address=ray_address,
            )
        with open(metrics_path, "w", encoding="utf-8") as log:
            for r in records:
                log.write(json.dumps(r) + "\n")
            while state.generation < generations:
                # (params, state) advance only once the generation is logged, so a Ctrl-C
                # anywhere saves a checkpoint that the log agrees with.
                if evaluator is None:
                    new_params, new_state = es.step(
                        params, task.fitness, state, batched=task.batched
                    )
                else:  # the workers and the evaluator's own replica advance together
                    new_params, new_state = evaluator.step()
                rec = {
                    k: new_state.info[k]
                    for k in (
                        "generation",
                        "fitness_mean",
                        "fitness_max",
                        "fitness_min",
                        "fitness_std",
                        "update_norm",
                    )
                }
                rec["elapsed_s"] = round(offset + time.perf_counter() - start, 4)
                if task.monitor is not None:
                    rec.update(task.monitor(new_params))
                log.write(json.dumps(rec) + "\n")
                log.flush()
                records.append(rec)
                params, state = new_params, new_state
                bar.set_postfix(mean=f"{rec['fitness_mean']:.4g}", max=f"{rec['fitness_max']:.4g}")
                bar.update()
                if state.generation % checkpoint_every == 0:
                    checkpoint.save(ckpt_path, params, state)
    except KeyboardInterrupt:
        bar.close()  # before the message below (close is idempotent)
        checkpoint.save(ckpt_path, params, state)
        print(
            f"interrupted after generation {state.generation}; checkpoint {ckpt_path}; continue "
            f"with: eggroll-np train {name} --resume {ckpt_path} --out {out}",
            file=sys.stderr,
        )
        raise
    finally:
        bar.close()
        if evaluator is not None:
            evaluator.shutdown()
    train_s = time.perf_counter() - start
    checkpoint.save(ckpt_path, params, state)
    baseline = task.baseline() if task.baseline is not None else {}
    if records:
        plot_metrics(
            records, os.path.join(out, PLOT), f"eggroll-np train {name}", task.fitness_label,
            baseline,
        )
    # train_s covers the whole run: a resumed run adds the time logged before it stopped.
    summary: dict[str, Any] = {
        "workload": name,
        "generations": state.generation,
        "train_s": round(offset + train_s, 2),
    }
    if resume:
        summary["resumed_at_generation"] = resumed_at
        summary["session_train_s"] = round(train_s, 2)
    summary.update(task.evaluate(params))
    summary.update(baseline)
    if task.sample is not None:
        summary["sample"] = task.sample(params)
    summary["wall_s"] = round(time.perf_counter() - start, 2)
    with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2)
    return summary


def _workload_fitness(name: str, config: Mapping[str, Any]) -> Callable[[Any], Any]:
    """The fitness of workload `name`, rebuilt on a Ray worker (its data is made there)."""
    return get(name).make(config).fitness
