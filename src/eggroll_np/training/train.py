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
from . import resume as resuming
from .interrupts import Interrupts
from .options import es_options, resolve_config
from .progress import progress as progress_display
from .run_folder import (
    CHECKPOINT,
    METRICS,
    PLOT,
    SUMMARY,
    check_out,
    locked,
    read_metrics,
    remove_created,
    write_run_file,
)
from .workloads import Task, Workload, get

__all__ = [
    "run",
    "plot_metrics",
    "read_metrics",
]


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
    created = check_out(out)
    try:
        return _locked_train(name, w, out, resume, overrides, progress, checkpoint_every,
                             workers, ray_address)
    except BaseException:
        remove_created(created)  # a refused (or failed) run that wrote nothing leaves no folder
        raise


def _locked_train(
    name: str,
    w: Workload,
    out: str,
    resume: str | None,
    overrides: Mapping[str, Any],
    progress: bool,
    checkpoint_every: int,
    workers: int | None,
    ray_address: str | None,
) -> dict[str, Any]:
    """The run, holding the folder's lock (`run_folder.locked`)."""
    with locked(out):
        # Every check comes first: nothing in --out changes before the first generation is done.
        if resume:
            resumed = resuming.prepare(w, resume, overrides)
            config = resumed.config
        else:
            config = resolve_config(w, overrides)
        task: Task = w.make(config)
        fingerprint = resuming.data_fingerprint(task.data)
        if resume:
            resuming.check_task(resume, resumed, task, fingerprint)
            params, state = resumed.params, resumed.state
        else:
            params = task.params
            state = es.init(params, **es_options(config), **task.es_options)
        record = resuming.run_record(name, config, fingerprint)
        log = _Log(out, name, config, state.generation)
        summary = _loop(
            name, out, resume, task, params, state, record, log, progress, checkpoint_every,
            workers, ray_address,
        )
    return summary


class _Log:
    """run.json and metrics.jsonl (the records before `generation` kept), both written only once
    the session's first generation is done (or at its end when it has none): a resume that
    fails anywhere before leaves the run folder as it was."""

    def __init__(self, out: str, name: str, config: Mapping[str, Any], generation: int) -> None:
        self.out, self.name, self.config = out, name, config
        self.path = os.path.join(out, METRICS)
        self.records = [r for r in read_metrics(self.path) if r["generation"] < generation]
        self._fh: Any = None

    @property
    def started(self) -> bool:
        return self._fh is not None

    def start(self) -> None:
        if self._fh is None:
            write_run_file(self.out, self.name, self.config)
            self._fh = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 (closed by close)
            self._fh.writelines(json.dumps(r) + "\n" for r in self.records)

    def write(self, rec: dict[str, Any]) -> None:
        self.start()
        self._fh.write(json.dumps(rec) + "\n")
        self._fh.flush()
        self.records.append(rec)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


_INFO_KEYS = ("generation", "fitness_mean", "fitness_max", "fitness_min", "fitness_std")


def _loop(
    name: str,
    out: str,
    resume: str | None,
    task: Task,
    params: Any,
    state: Any,
    record: dict[str, Any],
    log: _Log,
    progress: bool,
    checkpoint_every: int,
    workers: int | None,
    ray_address: str | None,
) -> dict[str, Any]:
    config = log.config
    ckpt_path = os.path.join(out, CHECKPOINT)
    records = log.records
    offset = float(records[-1].get("elapsed_s", 0.0)) if records else 0.0
    resumed_at = state.generation
    generations = int(config["generations"])
    bar = progress_display(generations, min(state.generation, generations), progress)
    evaluator = None
    start = time.perf_counter()
    # The generation ckpt_path holds (None: none of this run yet), for the interrupt message.
    saved_at = resumed_at if resume and _same_file(resume, ckpt_path) else None
    interrupts = Interrupts()
    with interrupts:
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
            while state.generation < generations:
                # (params, state) advance only once the generation is logged, so a Ctrl-C
                # anywhere saves a checkpoint that the log agrees with.
                if evaluator is None:
                    new_params, new_state = es.step(
                        params, task.fitness, state, batched=task.batched
                    )
                else:  # the workers and the evaluator's own replica advance together
                    new_params, new_state = evaluator.step()
                rec = {k: new_state.info[k] for k in (*_INFO_KEYS, "update_norm")}
                rec["elapsed_s"] = round(offset + time.perf_counter() - start, 4)
                if task.monitor is not None:
                    rec.update(task.monitor(new_params))
                log.write(rec)
                params, state = new_params, new_state
                bar.set_postfix(mean=f"{rec['fitness_mean']:.4g}", max=f"{rec['fitness_max']:.4g}")
                bar.update()
                if state.generation % checkpoint_every == 0:
                    checkpoint.save(ckpt_path, params, state, run=record)
                    saved_at = state.generation
        except KeyboardInterrupt:
            interrupts.hold()  # a second Ctrl-C must not abort the checkpoint below
            bar.close()  # before the message below (close is idempotent)
            _save_interrupted(name, out, resume, ckpt_path, params, state, record, log, saved_at)
            raise
        finally:
            bar.close()
            log.close()
            if evaluator is not None:
                evaluator.shutdown()
    train_s = time.perf_counter() - start
    log.start()  # a session without generations still records its options
    log.close()
    checkpoint.save(ckpt_path, params, state, run=record)
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
    with open(os.path.join(out, SUMMARY), "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2)
    return summary


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _save_interrupted(
    name: str,
    out: str,
    resume: str | None,
    ckpt_path: str,
    params: Any,
    state: Any,
    record: dict[str, Any],
    log: _Log,
    saved_at: int | None,
) -> None:
    """The checkpoint of the last generation done, and one line on stderr saying what holds it
    (`saved_at`: the generation of the checkpoint already at `ckpt_path`, None if none)."""
    if not log.started:
        where = (
            f"{resume} still holds generation {state.generation}"
            if resume
            else "start the run again"
        )
        print(
            f"interrupted before this session's first generation was done; nothing in {out} "
            f"was changed ({where})",
            file=sys.stderr,
        )
        return
    try:
        checkpoint.save(ckpt_path, params, state, run=record)
    except Exception as exc:
        held = "no checkpoint of this run" if saved_at is None else f"generation {saved_at}"
        print(
            f"interrupted after generation {state.generation}, but its checkpoint could not be "
            f"written ({exc}); {ckpt_path} still holds {held}",
            file=sys.stderr,
        )
        raise KeyboardInterrupt from exc
    print(
        f"interrupted after generation {state.generation}; checkpoint {ckpt_path} holds it; "
        f"continue with: eggroll-np train {name} --resume {ckpt_path} --out {out}",
        file=sys.stderr,
    )


def _workload_fitness(name: str, config: Mapping[str, Any]) -> Callable[[Any], Any]:
    """The fitness of workload `name`, rebuilt on a Ray worker (its data is made there)."""
    return get(name).make(config).fitness
