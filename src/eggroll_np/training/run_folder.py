"""The `--out` folder of a training run: its files, its lock, and reading them back."""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no advisory locks here; one run per folder is up to the user
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "METRICS",
    "CHECKPOINT",
    "PLOT",
    "RUN_FILE",
    "SUMMARY",
    "check_out",
    "remove_created",
    "locked",
    "read_metrics",
    "write_run_file",
    "read_run_file",
]

METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.npz"
PLOT = "learning_curve.png"
RUN_FILE = "run.json"
SUMMARY = "summary.json"
# flock errors of file systems that do not lock directories: the run goes on unlocked.
_NO_LOCKS = {errno.EBADF, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL}


def check_out(out: str) -> list[str]:
    """Create the output directory, or ValueError naming --out (before any work is done).

    Returns:
        The directories it created, deepest first (`remove_created` takes them away again when
        the run is refused: a refused run leaves no folder behind).
    """
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out!r} exists and is not a directory")
    created, missing = [], os.path.abspath(out)
    while not os.path.exists(missing):
        created.append(missing)
        missing = os.path.dirname(missing)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        remove_created(created)
        raise ValueError(f"--out {out!r} cannot be created: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        remove_created(created)
        raise ValueError(f"--out {out!r} is not writable")
    return created


def remove_created(created: list[str]) -> None:
    """Remove the directories `check_out` created, deepest first, as far as they are empty."""
    for directory in created:
        try:
            os.rmdir(directory)
        except OSError:
            return  # not empty (the run wrote something), or gone


@contextlib.contextmanager
def locked(out: str) -> Iterator[None]:
    """Hold the folder's lock (an exclusive flock on the directory itself) for the block.

    Nothing is written to take it, and the kernel releases it when the process ends, however
    it ends, so a killed run never leaves the folder locked. A file system that cannot lock a
    directory (some NFS mounts) gets no lock.

    Raises:
        ValueError: another run holds the lock; the message names the folder.
    """
    if fcntl is None:
        yield
        return
    fd = os.open(out, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(
                f"--out {out!r} is in use by another eggroll-np train; wait for it to finish or "
                "choose another --out"
            ) from None
        except OSError as exc:
            if exc.errno not in _NO_LOCKS:
                raise
        yield
    finally:
        os.close(fd)  # releases the lock


def read_metrics(path: str) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl (an empty list when it does not exist).

    Raises:
        ValueError: a line that is not a JSON metrics record (naming the file and line).
    """
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


def write_run_file(out: str, name: str, config: Mapping[str, Any]) -> None:
    """run.json: {"workload": name, "config": the resolved options}."""
    with open(os.path.join(out, RUN_FILE), "w", encoding="utf-8") as fh:
        json.dump({"workload": name, "config": dict(config)}, fh, indent=2, default=list)


def read_run_file(resume: str, name: str) -> dict[str, Any] | None:
    """The options in the run.json beside checkpoint `resume` (None when there is none).

    Raises:
        ValueError: an unreadable run.json, or one of another workload than `name`.
    """
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
