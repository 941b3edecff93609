"""`--resume`: the checkpoint checked against the command before anything in --out changes.

A checkpoint that `eggroll-np train` writes carries its run record (`checkpoint.save(run=)`):
the workload, every option of the run and a fingerprint of its data. `prepare` takes the options
not given from it (older checkpoints: from the run.json beside them) and refuses by name every
option given with another value; `check_task` then refuses a model whose leaves are not the
checkpoint's, and data whose fingerprint is not the run's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import checkpoint, es
from ..schedule import Schedule
from . import run_folder
from .options import ES_KEYS, check_schedule_options, differing, resolve_config, show
from .workloads import Task, Workload

__all__ = ["Resumed", "data_fingerprint", "run_record", "prepare", "check_task"]


def data_fingerprint(arrays: Sequence[np.ndarray]) -> str:
    """A hash (hex) of arrays' dtypes, shapes and bytes: equal exactly when the data is."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape};".encode("ascii"))
        h.update(a.reshape(-1).view(np.uint8).data)
    return h.hexdigest()


def run_record(name: str, config: Mapping[str, Any], fingerprint: str) -> dict[str, Any]:
    """What identifies a run, saved in its checkpoints: {"workload", "options", "data"}."""
    options = json.loads(json.dumps(dict(config), default=list))  # tuples as lists, like run.json
    return {"workload": name, "options": options, "data": fingerprint}


@dataclasses.dataclass(frozen=True)
class Resumed:
    """A checkpoint checked against the command, ready to continue.

    Attributes:
        config: the run's options (the checkpoint's, then those given that may change).
        params, state: from the checkpoint (state's lr schedule stretched by --lr-decay-steps).
        record: the checkpoint's run record (None: a checkpoint of an older version).
    """

    config: dict[str, Any]
    params: Any
    state: es.ESState
    record: dict[str, Any] | None


def _record(path: str) -> dict[str, Any] | None:
    record = checkpoint.load_run(path)
    if record is None:
        return None
    if not (
        isinstance(record.get("workload"), str)
        and isinstance(record.get("options"), dict)
        and isinstance(record.get("data"), (str, type(None)))
    ):
        raise ValueError(f"--resume {path!r}: its run record is not one eggroll-np train writes")
    return record


def prepare(w: Workload, path: str, overrides: Mapping[str, Any]) -> Resumed:
    """Read checkpoint `path` and check it against the command's options (None: not given).

    Raises:
        ValueError: another workload's checkpoint; a run.json beside it that describes another
            run; an option given with another value than the run's (all of them named); an lr
            schedule option that the run's schedule refuses; --generations past a decaying
            schedule's end without --lr-decay-steps.
    """
    file_options = run_folder.read_run_file(path, w.name)
    record = _record(path)
    params, state = checkpoint.load(path)
    if record is not None:
        if record["workload"] != w.name:
            raise ValueError(f"--resume {path!r} is a {record['workload']!r} run, not {w.name!r}")
        saved = record["options"]
        if file_options is not None:
            _check_run_file(w, path, file_options, saved)
    else:
        saved = file_options
        if saved is None:
            print(
                f"eggroll-np train: warning: {path!r} has no run record (an older version wrote "
                f"it) and no {run_folder.RUN_FILE} beside it: options not given are {w.name}'s "
                "defaults, and only the model's shapes can be checked against it",
                file=sys.stderr,
            )
    config = resolve_config(w, overrides, saved)
    for key in ES_KEYS:
        given, have = overrides.get(key), getattr(state.config, key)
        if given is not None and given != have:
            raise ValueError(
                f"--{key} {given} differs from the checkpoint's {have}; drop it to resume, or "
                "start a new run"
            )
        config[key] = have
    state = _schedule(config, overrides, state, (saved or {}).get("generations"))
    return Resumed(config, params, state, record)


def _check_run_file(
    w: Workload, path: str, file_options: Mapping[str, Any], saved: Mapping[str, Any]
) -> None:
    differ = differing(w, file_options, saved)
    if differ:
        run_file = os.path.join(os.path.dirname(os.path.abspath(path)), run_folder.RUN_FILE)
        raise ValueError(
            f"--resume: {run_file!r} does not describe the checkpoint {path!r} (its options "
            f"against the checkpoint's run: {differ}); move one of them away"
        )


def _schedule(
    config: dict[str, Any], overrides: Mapping[str, Any], state: es.ESState, planned: Any
) -> es.ESState:
    """The checkpoint's lr schedule, checked against the options given; --lr-decay-steps
    stretches it. Extending a decaying run without it is refused: its new generations would
    all train at lr_final (0 by default: no update at all)."""
    sched = state.config.schedule
    check_schedule_options(sched.kind, overrides)
    config["lr_schedule"] = sched.kind
    if sched.kind == "constant":
        return state
    given = overrides.get("lr_final")
    if given is not None and float(given) != sched.final:
        raise ValueError(
            f"--lr-final {given} differs from the checkpoint's {sched.final}; drop it to resume, "
            "or start a new run"
        )
    config["lr_final"] = sched.final
    steps = overrides.get("lr_decay_steps")
    generations = int(config["generations"])
    if steps is None:
        planned = planned if isinstance(planned, int) else sched.steps
        if generations > max(sched.steps, planned):
            raise ValueError(
                f"--generations {generations} runs past the run's {sched.kind} lr schedule, "
                f"which decays over {sched.steps} generations: generations {sched.steps} to "
                f"{generations - 1} would all train at lr {show(sched.final)}. Give "
                f"--lr-decay-steps N to decay over N generations instead (e.g. "
                f"--lr-decay-steps {generations}), or --generations {sched.steps} or fewer"
            )
        config["lr_decay_steps"] = sched.steps
        return state
    config["lr_decay_steps"] = int(steps)
    stretched = Schedule(sched.kind, sched.final, int(steps))
    return dataclasses.replace(state, config=dataclasses.replace(state.config, schedule=stretched))


def check_task(path: str, resumed: Resumed, task: Task, fingerprint: str) -> None:
    """ValueError unless the model of `task` has the checkpoint's leaves and its data the run's
    fingerprint (`data_fingerprint(task.data)`, as computed by the caller)."""
    try:
        es.check_state(task.params, resumed.state)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"--resume {path!r}: the checkpoint's model is not the one these options build "
            f"({exc}); give the run's options, or start a new run"
        ) from None
    want = (resumed.record or {}).get("data")
    if want is not None and want != fingerprint:
        raise ValueError(
            f"--resume {path!r}: the data is not the run's (fingerprint {fingerprint[:16]}, the "
            f"run's {want[:16]}): the file behind --data, or the bundled data set, changed"
        )
