"""`save` / `load`: params and ES state in one .npz (no pickle), for bit-identical resume.

Layout: "param/<leaf index>" and "opt/<optimizer key>" arrays (host copies, exact dtypes) and
"meta", a JSON document (format version, config, generation, tree spec, info) stored as uint8
bytes so that the file loads with allow_pickle=False. The noise cache is never saved: noise is a
pure function of (seed, leaf, member, epoch), so a resumed run regenerates the same numbers.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
import zipfile
from typing import Any

import numpy as np

from .backend import get_xp, to_numpy
from .es import ESConfig, ESState, check_state
from .tree import TreeSpec

__all__ = ["save", "load", "FORMAT_VERSION"]

FORMAT_VERSION = 1


def _check_target(path: str) -> None:
    """ValueError unless `path` is absent or a regular file (never follow or replace a symlink,
    FIFO, directory or device node: writing there would clobber something that is not ours)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(
            f"cannot save to {path!r}: it is a {_file_kind(st.st_mode)}, not a regular file"
        )


def _file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "symbolic link"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return name
    return "special file"


def save(path: str | os.PathLike[str], params: Any, state: ESState) -> None:
    """Write params and state to `path` (exactly that name), atomically.

    The file is written to a temporary name in the same directory, flushed to disk and renamed
    over `path`, so a crash or error leaves either the old checkpoint or the new one, never a
    half-written file (and no temporary file behind).

    Raises:
        TypeError / ValueError: params that do not match the state, or a `path` that exists and
            is not a regular file (a symlink, FIFO, directory or device); nothing is written.
    """
    leaves = check_state(params, state)
    path = os.fspath(path)
    _check_target(path)
    meta = {
        "format_version": FORMAT_VERSION,
        "config": state.config.to_dict(),
        "generation": state.generation,
        "spec": state.spec.to_json(),
        "info": state.info,
    }
    arrays = {f"param/{i}": to_numpy(x) for i, x in enumerate(leaves)}
    arrays.update({f"opt/{k}": to_numpy(v) for k, v in state.opt_state.items()})
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".eggroll-", suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())  # the data is on disk before the rename makes it visible
        # mkstemp creates 0600 files; give the checkpoint the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        _check_target(path)  # again: something may have appeared there meanwhile
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    # Makes the rename itself durable; not every platform/filesystem lets a directory be opened.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _open_archive(fh: Any, path: str | os.PathLike[str]) -> Any:
    try:
        return np.load(fh, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ValueError(
            f"{os.fspath(path)!r} is not a readable eggroll_np checkpoint: {exc}"
        ) from None


def load(path: str | os.PathLike[str], xp: Any = None) -> tuple[Any, ESState]:
    """Read (params, state) written by `save`.

    Args:
        path: the file.
        xp: backend of the returned arrays: numpy (default) or cupy / "cupy".

    Returns:
        (params, state): the same tree (dict/list/tuple) and an equal state; stepping on from
        them gives exactly the parameters an uninterrupted run would.
    """
    xp = get_xp(xp)
    # np.load on an open file: a corrupt archive must not leak the file handle.
    with open(os.fspath(path), "rb") as fh, _open_archive(fh, path) as data:
        if "meta" not in data.files:
            raise ValueError(f"{os.fspath(path)!r} is not an eggroll_np checkpoint (no 'meta')")
        meta = json.loads(data["meta"].tobytes().decode("utf-8"))
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"checkpoint format {meta.get('format_version')!r} is not supported "
                f"(this version reads {FORMAT_VERSION})"
            )
        spec = TreeSpec.from_json(meta["spec"])
        leaves = [xp.asarray(data[f"param/{i}"]) for i in range(spec.num_leaves)]
        opt_state = {}
        for name in data.files:
            if name.startswith("opt/"):
                key = name[4:]
                arr = data[name]
                opt_state[key] = arr if key == "count" else xp.asarray(arr)
    state = ESState(
        config=ESConfig.from_dict(meta["config"]),
        generation=int(meta["generation"]),
        opt_state=opt_state,
        spec=spec,
        info=meta["info"],
    )
    return spec.unflatten(leaves), state
