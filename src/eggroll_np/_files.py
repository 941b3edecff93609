"""Writing a file atomically: a temporary beside it, fsync, rename; stale temporaries cleaned.

The temporary of `dir/NAME` is `dir/.eggroll-<tag>-<host>-<pid>-<random>.npz.tmp`: <tag> hashes
NAME, <host> the machine and <pid> is the writer's process. A writer killed by SIGKILL (or a
power cut) cannot remove its temporary; the next `write_atomically` or `clean_stale` of the same
NAME removes it once that writer is gone: its process is dead (same machine), or it has not been
modified for STALE_AFTER seconds (another machine sharing the folder, or temporaries of older
versions, whose names carry no tag).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import stat
import tempfile
import time
from collections.abc import Callable
from typing import BinaryIO

__all__ = ["STALE_AFTER", "file_kind", "check_target", "write_atomically", "clean_stale"]

#: Seconds after its last write that a temporary of another machine (or an older version) is
#: considered abandoned: a writer writes continuously until it renames the file.
STALE_AFTER = 3600.0
_PREFIX = ".eggroll-"
_SUFFIX = ".npz.tmp"
_OURS = re.compile(r"^\.eggroll-([0-9a-f]{8})-([0-9a-f]{8})-(\d+)-[A-Za-z0-9_]+\.npz\.tmp$")
_LEGACY = re.compile(r"^\.eggroll-[A-Za-z0-9_]{8}\.npz\.tmp$")  # 0.x names: no tag, no pid


def _short_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=4).hexdigest()


def file_kind(mode: int) -> str:
    """"symbolic link", "directory", "FIFO", ... for an st_mode that is not a regular file."""
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


def check_target(path: str) -> int | None:
    """The permission bits of the regular file at `path`, or None when there is none.

    Raises:
        ValueError: `path` is a symlink, FIFO, directory or device (writing there would clobber
            something that is not ours), or a read-only file (replacing it would silently undo
            its owner's protection).
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(
            f"cannot save to {path!r}: it is a {file_kind(st.st_mode)}, not a regular file"
        )
    mode = stat.S_IMODE(st.st_mode)
    # The mode bits, not only access(): root may write anything, yet a 0444 file says "keep".
    if not mode & 0o222 or not os.access(path, os.W_OK):
        raise ValueError(
            f"cannot save to {path!r}: it is read-only (mode {mode:04o}); make it writable or "
            "save elsewhere (nothing was written)"
        )
    return mode


def _writer_gone(host: str, pid: int, mtime: float, now: float) -> bool:
    if now - mtime > STALE_AFTER:
        return True
    if host != _short_hash(socket.gethostname()):
        return False  # a process of another machine: only its age tells
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: alive, another user's
        return False
    return False


def clean_stale(path: str) -> list[str]:
    """Remove the abandoned temporaries of `path` (see the module docstring); never raises.

    Returns:
        The names removed.
    """
    directory, name = os.path.split(os.path.abspath(path))
    tag, now, removed = _short_hash(name), time.time(), []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        ours = _OURS.match(entry.name)
        if ours is None and not _LEGACY.match(entry.name):
            continue
        if ours is not None and ours.group(1) != tag:
            continue  # another file's temporary
        try:
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                continue
            if ours is None:
                gone = now - st.st_mtime > STALE_AFTER
            else:
                gone = _writer_gone(ours.group(2), int(ours.group(3)), st.st_mtime, now)
            if gone:
                os.remove(entry.path)
                removed.append(entry.name)
        except OSError:  # vanished meanwhile, or a read-only folder: leave it
            continue
    return removed


def write_atomically(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Run `write(fh)` into a temporary beside `path`, fsync it and rename it over `path`.

    A crash or error leaves the old file or the new one, never a half-written one; an error
    (or KeyboardInterrupt) removes the temporary, SIGKILL cannot (see `clean_stale`). An existing
    file keeps its permission bits; a new one gets those of a plain open() under the umask.

    Raises:
        ValueError: see `check_target`; nothing is written.
        OSError: the write failed (e.g. ENOSPC); the message names `path`.
    """
    mode = check_target(path)
    directory, name = os.path.split(os.path.abspath(path))
    clean_stale(path)
    prefix = f"{_PREFIX}{_short_hash(name)}-{_short_hash(socket.gethostname())}-{os.getpid()}-"
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=_SUFFIX)
    except OSError as exc:
        raise _naming(exc, path) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())  # the data is on disk before the rename makes it visible
        if mode is None:  # mkstemp creates 0600 files; give the permissions open() would
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        check_target(path)  # again: something may have appeared there meanwhile
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        if isinstance(exc, OSError):
            raise _naming(exc, path) from exc
        raise
    _fsync_directory(directory)


def _naming(exc: OSError, path: str) -> OSError:
    """`exc` as an OSError of the same errno (same subclass) whose message names `path`."""
    if exc.errno is None:
        return OSError(f"{exc} (writing {path!r})")
    return OSError(exc.errno, f"{exc.strerror or os.strerror(exc.errno)} (writing {path!r})")


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
