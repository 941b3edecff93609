"""Older checkpoint formats (1 to 3) read into format 4's layout (config dict, state names)."""

from __future__ import annotations

from typing import Any

from . import optim

__all__ = ["CONFIG_READERS", "SCHEDULE_FIELDS", "legacy_opt_names"]

_V1_HYPERPARAMS = ("momentum", "b1", "b2", "eps")
#: Format 2's three config fields -> the fields of format 3's one schedule value.
SCHEDULE_FIELDS = {"lr_schedule": "kind", "lr_final": "final", "lr_decay_steps": "steps"}


def _config_v1(d: dict[str, Any]) -> dict[str, Any]:
    """A format-1 config dict in format 4's layout: the chosen optimizer's hyperparameters only."""
    d = dict(d)
    flat = {k: d.pop(k) for k in _V1_HYPERPARAMS if k in d}
    fields = optim.hyperparams(d["optimizer"]).__dataclass_fields__
    d["hyperparams"] = {k: v for k, v in flat.items() if k in fields}
    return _config_v2(d)


def _config_v2(d: dict[str, Any]) -> dict[str, Any]:
    """A format-2 config dict in format 4's layout: the schedule's three fields as one value
    (saved before lr schedules existed: constant), the noise table (before it existed: None)."""
    d = {"noise_table": None, **d}
    d["schedule"] = {new: d.pop(old, None) for old, new in SCHEDULE_FIELDS.items()}
    if d["schedule"]["kind"] is None:
        d["schedule"]["kind"] = "constant"
    return _config_v3(d)


def _config_v3(d: dict[str, Any]) -> dict[str, Any]:
    """A format-3 config dict in format 4's layout: the integer-leaf settings (int8 leaves did
    not exist: their defaults)."""
    return {"int_sigma_shift": 2, "int_update_fraction": 0.2, **d}


#: Format version -> function turning its config dict into format 4's layout.
CONFIG_READERS = {1: _config_v1, 2: _config_v2, 3: _config_v3, 4: dict}


def legacy_opt_names(template: optim.OptState) -> list[str]:
    """Formats 1 and 2 named each state array "opt/<field>/<leaf index>" (fields in the
    optimizer's order); this is their name for each array of `optim.state_arrays`."""
    return [f"opt/{f}/{i}" for i, s in sorted(template.leaves.items()) for f in s._fields]
