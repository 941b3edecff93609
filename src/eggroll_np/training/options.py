"""The options of a training run: defaults, recipe, saved run, command line; its `init` settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import _checks
from .workloads import Workload

__all__ = [
    "ES_KEYS",
    "SCHEDULE_KEYS",
    "SCHEDULE_DEFAULTS",
    "es_options",
    "resolve_config",
    "check_schedule_options",
    "differing",
    "show",
]

#: Options passed to eggroll_np.init; a checkpoint's values win over the workload's defaults.
ES_KEYS = ("population", "sigma", "lr", "rank", "seed", "optimizer", "shaping")
#: The lr schedule's options (`init`'s lr_schedule, lr_final, lr_decay_steps).
SCHEDULE_KEYS = ("lr_schedule", "lr_final", "lr_decay_steps")
SCHEDULE_DEFAULTS: dict[str, Any] = {
    "lr_schedule": "constant",
    "lr_final": 0.0,
    "lr_decay_steps": None,
}
"""Every workload's lr schedule unless its defaults say otherwise; a linear or cosine schedule
decays over --lr-decay-steps generations, by default the run's --generations (stored in the
checkpoint: a resumed run keeps it)."""


def es_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """The `es.init` keyword arguments of a resolved run config (ES_KEYS and the lr schedule)."""
    options = {k: config[k] for k in ES_KEYS}
    if config["lr_schedule"] != "constant":
        steps = config.get("lr_decay_steps")
        options.update(
            lr_schedule=config["lr_schedule"],
            lr_final=config["lr_final"],
            lr_decay_steps=max(1, int(config["generations"])) if steps is None else steps,
        )
    return options


def check_schedule_options(schedule: str, overrides: Mapping[str, Any]) -> None:
    """ValueError naming both options when --lr-final or --lr-decay-steps is given to a run whose
    lr schedule is constant (they would be silently ignored); --lr-decay-steps must be >= 1."""
    for key in ("lr_final", "lr_decay_steps"):
        if overrides.get(key) is not None and schedule == "constant":
            raise ValueError(
                f"--{key.replace('_', '-')} is only used by --lr-schedule linear or cosine; this "
                "run's --lr-schedule is constant"
            )
    if overrides.get("lr_decay_steps") is not None:
        _checks.integer("--lr-decay-steps", overrides["lr_decay_steps"], 1)


def resolve_config(
    w: Workload, overrides: Mapping[str, Any], saved: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Defaults, a recipe's values, a resumed run's saved options, then the options given.

    None means "not given". The recipe (`--recipe`, workloads that have recipes) comes from the
    options given or else from the saved run.

    Raises:
        TypeError: an option the workload does not have.
        ValueError: a given option that differs from the saved run's (see `differing`), or an
            invalid --seed, --generations or lr schedule option.
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
        differ = differing(w, overrides, saved)
        if differ:
            raise ValueError(
                f"--resume: the command line differs from the checkpoint's run: {differ}; drop "
                "these options to resume (they are read from the checkpoint), or start a new run"
            )
    config.update({k: v for k, v in overrides.items() if v is not None})
    if isinstance(config.get("hidden"), list):
        config["hidden"] = tuple(config["hidden"])
    _checks.integer("--seed", config["seed"], 0, 2**64)
    _checks.integer("--generations", config["generations"], 0)
    check_schedule_options(config["lr_schedule"], overrides)
    return config


def _same(a: Any, b: Any) -> bool:
    """Equal option values (JSON stores tuples as lists)."""
    a = tuple(a) if isinstance(a, list) else a
    b = tuple(b) if isinstance(b, list) else b
    return a == b


def differing(w: Workload, given: Mapping[str, Any], saved: Mapping[str, Any]) -> str:
    """"--hidden 32 (the run has 64), ..." for every option of `given` (None: not given) that
    differs from `saved`, or "" when none does. Only options that do not change what is trained
    may differ: --generations, --lr-decay-steps (checked with the schedule) and the workload's
    evaluation options."""
    may_change = {"generations", "lr_decay_steps", *w.evaluation_options}
    keys = [
        k
        for k, v in given.items()
        if v is not None and k not in may_change and k in saved and not _same(v, saved[k])
    ]
    return ", ".join(
        f"--{k.replace('_', '-')} {show(given[k])} (the run has {show(saved[k])})" for k in keys
    )


def show(value: Any) -> str:
    """An option value as the command line writes it (sizes comma-separated)."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)
