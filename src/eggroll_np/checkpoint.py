"""`save` / `load`: params and ES state in one .npz (no pickle), for bit-identical resume.

Layout (format 3): "param/<leaf index>" arrays, "opt/count" (int64) and "opt/<j>", the optimizer
state's arrays in `optim.state_arrays` order (host copies, exact dtypes), and "meta", a JSON
document (format version, config, generation, tree spec, info) stored as uint8 bytes so that the
file loads with allow_pickle=False. Noise is never saved: it is a pure function of (seed, leaf,
member, epoch), so a resumed run regenerates the same numbers.

Older formats still load. Format 2 named the state arrays "opt/<field>/<leaf index>" and kept the
lr schedule as three config fields (lr_schedule, lr_final, lr_decay_steps; absent before
schedules: constant); format 1 (0.1.0) also stored momentum, b1, b2 and eps flat in the config,
whatever the optimizer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import stat
import tempfile
import zipfile
import zlib
from typing import Any

import numpy as np

from . import optim
from .backend import get_xp, to_numpy
from .config import ESConfig, NoiseKind, make_config
from .es import ESState, check_state
from .tree import FLOAT_DTYPES, TreeSpec, flatten

__all__ = ["save", "load", "FORMAT_VERSION"]

#: Version of the .npz layout `save` writes; `load` also reads the older formats 1 and 2.
FORMAT_VERSION = 3
_V1_HYPERPARAMS = ("momentum", "b1", "b2", "eps")
_V2_SCHEDULE = {"lr_schedule": "kind", "lr_final": "final", "lr_decay_steps": "steps"}


def _config_v1(d: dict[str, Any]) -> dict[str, Any]:
    """A format-1 config dict in format 3's layout: the chosen optimizer's hyperparameters only."""
    d = dict(d)
    flat = {k: d.pop(k) for k in _V1_HYPERPARAMS if k in d}
    fields = optim.hyperparams(d["optimizer"]).__dataclass_fields__
    d["hyperparams"] = {k: v for k, v in flat.items() if k in fields}
    return _config_v2(d)


def _config_v2(d: dict[str, Any]) -> dict[str, Any]:
    """A format-2 config dict in format 3's layout: the schedule's three fields as one value
    (saved before lr schedules existed: constant), the noise table (before it existed: None)."""
    d = {"noise_table": None, **d}
    d["schedule"] = {new: d.pop(old, None) for old, new in _V2_SCHEDULE.items()}
    if d["schedule"]["kind"] is None:
        d["schedule"]["kind"] = "constant"
    return d


_CONFIG_READERS = {1: _config_v1, 2: _config_v2, 3: dict}


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
        TypeError, ValueError: params that do not match the state, or a `path` that exists and
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
    arrays["opt/count"] = np.asarray(state.opt_state.count, dtype=np.int64)
    opt = optim.state_arrays(state.opt_state)  # the optimizer's own order; never parsed here
    arrays.update({f"opt/{j}": to_numpy(v) for j, v in enumerate(opt)})
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


_META_KEYS = {"format_version", "config", "generation", "spec", "info"}
_SPEC_KEYS = {"structure", "paths", "shapes", "dtypes"}


# What zipfile/np.load raise for damaged bytes: a flipped flag bit reads as "encrypted"
# (RuntimeError) or as an unknown compression method (NotImplementedError).
_UNREADABLE = (
    zipfile.BadZipFile,
    EOFError,
    OSError,
    ValueError,
    zlib.error,
    RuntimeError,
    NotImplementedError,
)


class _Bad(Exception):
    """A problem found in a checkpoint's contents; `load` turns it into ValueError(path: ...)."""


def _read_archive(path: str) -> dict[str, np.ndarray]:
    """Every array of the .npz at `path`, read in full (zip CRCs checked), no pickle."""
    st = os.stat(path)  # FileNotFoundError as it is; a symlink to a checkpoint is fine
    if not stat.S_ISREG(st.st_mode):  # a FIFO or a device would block or never end
        raise _Bad(f"is a {_file_kind(st.st_mode)}, not a checkpoint file")
    # np.load on an open file: a corrupt archive must not leak the file handle.
    with open(path, "rb") as fh:
        try:
            data = np.load(fh, allow_pickle=False)
        except _UNREADABLE as exc:
            raise _Bad(f"is not a readable eggroll_np checkpoint: {_reason(exc)}") from None
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise _Bad("is a single .npy array, not an eggroll_np checkpoint (.npz)")
        with data:
            try:
                return {name: data[name] for name in data.files}
            except _UNREADABLE as exc:
                raise _Bad(f"is damaged: {_reason(exc)}") from None
            except MemoryError:  # an array header declaring more than the file could hold
                raise _Bad("is damaged: an array declares more data than can be read") from None


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _read_meta(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    raw = arrays.pop("meta", None)
    if raw is None:
        raise _Bad("is not an eggroll_np checkpoint (no 'meta')")
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise _Bad(f"'meta' must be 1-D uint8 (JSON bytes), got {raw.dtype} {raw.shape}")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Bad(f"'meta' is not JSON: {_reason(exc)}") from None
    except RecursionError:  # json's parser recurses once per nested array/object
        raise _Bad("'meta' JSON nests too deeply to be a checkpoint's") from None
    if not isinstance(meta, dict):
        raise _Bad(f"'meta' must be a JSON object, got {type(meta).__name__}")
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version not in _CONFIG_READERS:
        raise _Bad(
            f"checkpoint format {version!r} is not supported (this version reads "
            f"{sorted(_CONFIG_READERS)})"
        )
    if set(meta) != _META_KEYS:
        missing, extra = sorted(_META_KEYS - set(meta)), sorted(set(meta) - _META_KEYS)
        raise _Bad(f"'meta' keys differ: missing {missing}, unexpected {extra}")
    return meta


def _read_spec(text: Any) -> TreeSpec:
    """The TreeSpec of meta['spec'], checked: a structure that rebuilds exactly its paths."""
    try:
        d = json.loads(text) if isinstance(text, str) else None
    except json.JSONDecodeError as exc:
        raise _Bad(f"'spec' is not JSON: {_reason(exc)}") from None
    except RecursionError:
        raise _Bad("'spec' JSON nests too deeply to be a parameter tree's") from None
    if not isinstance(d, dict) or set(d) != _SPEC_KEYS:
        raise _Bad(f"'spec' must be a JSON object with keys {sorted(_SPEC_KEYS)}")
    paths, shapes, dtypes = d["paths"], d["shapes"], d["dtypes"]
    if not (isinstance(paths, list) and isinstance(shapes, list) and isinstance(dtypes, list)):
        raise _Bad("'spec' paths, shapes and dtypes must be lists")
    if not len(paths) == len(shapes) == len(dtypes) or not paths:
        raise _Bad("'spec' needs as many paths, shapes and dtypes (at least one leaf)")
    for i, (p, shape, dt) in enumerate(zip(paths, shapes, dtypes, strict=True)):
        if not isinstance(p, list) or not all(
            isinstance(k, str) or (isinstance(k, int) and not isinstance(k, bool)) for k in p
        ):
            raise _Bad(f"'spec' path {i} must be a list of str/int keys, got {p!r}")
        if not isinstance(shape, list) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
        ):
            raise _Bad(f"'spec' shape of leaf {i} must be a list of sizes >= 0, got {shape!r}")
        if dt not in FLOAT_DTYPES:
            raise _Bad(f"'spec' dtype of leaf {i} must be float32 or float64, got {dt!r}")
    try:
        spec = TreeSpec.from_json(text)
        rebuilt = spec.unflatten(list(range(spec.num_leaves)))
        leaves, rebuilt_paths, structure = flatten(rebuilt)
    except (TypeError, ValueError, KeyError, IndexError, StopIteration, AttributeError) as exc:
        raise _Bad(f"'spec' structure is not a parameter tree: {_reason(exc)}") from None
    except RecursionError:  # deeper than tree.flatten's limit, found while rebuilding it
        raise _Bad("'spec' structure nests too deeply to be a parameter tree") from None
    if leaves != list(range(spec.num_leaves)) or tuple(rebuilt_paths) != spec.paths:
        raise _Bad("'spec' structure does not match its leaf paths")
    if structure != spec.structure:
        raise _Bad("'spec' structure is not canonical (dict keys must be sorted)")
    return spec


def _read_config(d: Any, version: int, spec: TreeSpec) -> ESConfig:
    """The ESConfig of meta['config'] through `make_config`: the checks of `init`, exactly."""
    if not isinstance(d, dict):
        raise _Bad(f"'config' must be a JSON object, got {type(d).__name__}")
    try:
        d = _CONFIG_READERS[version](d)  # format 2's layout
    except (KeyError, TypeError, ValueError) as exc:
        raise _Bad(f"config: {_reason(exc)}") from None
    fields = {f.name for f in dataclasses.fields(ESConfig)}
    if set(d) != fields:
        missing, extra = sorted(fields - set(d)), sorted(set(d) - fields)
        raise _Bad(f"'config' keys differ: missing {missing}, unexpected {extra}")
    kinds = d["kinds"]
    valid = [k.value for k in NoiseKind]
    if (
        not isinstance(kinds, list)
        or len(kinds) != spec.num_leaves
        or any(k not in valid for k in kinds)
    ):
        raise _Bad(
            f"'config' kinds must list one of {valid} for each of the {spec.num_leaves} leaves, "
            f"got {kinds!r}"
        )
    if not isinstance(d["hyperparams"], dict):
        raise _Bad(f"'config' hyperparams must be a JSON object, got {d['hyperparams']!r}")
    schedule = d["schedule"]
    if not isinstance(schedule, dict) or set(schedule) != set(_V2_SCHEDULE.values()):
        raise _Bad(f"'config' schedule must be a JSON object {{kind, final, steps}}, got {schedule!r}")
    kwargs = {k: v for k, v in d.items() if k not in ("kinds", "hyperparams", "schedule")}
    kwargs.update(d["hyperparams"])
    kwargs.update({old: schedule[new] for old, new in _V2_SCHEDULE.items()})
    lowrank = dict(zip(spec.path_strings, kinds, strict=True))
    try:
        config = make_config(spec, lowrank=lowrank, **kwargs)
    except (TypeError, ValueError) as exc:
        raise _Bad(f"config: {_reason(exc)}") from None
    if [k.value for k in config.kinds] != kinds:
        raise _Bad(f"'config' kinds {kinds} contradict its noise/rank settings")
    return config


def _check_array(name: str, arr: np.ndarray, shape: tuple, dtype: Any) -> None:
    if arr.shape != tuple(shape) or arr.dtype != np.dtype(dtype):
        raise _Bad(
            f"'{name}' must be {np.dtype(dtype).name} of shape {tuple(shape)}, got "
            f"{arr.dtype} of shape {arr.shape}"
        )
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise _Bad(f"'{name}' has non-finite values")


def _legacy_opt_names(template: optim.OptState) -> list[str]:
    """Formats 1 and 2 named each state array "opt/<field>/<leaf index>" (fields in the
    optimizer's order); this is their name for each array of `optim.state_arrays`."""
    return [f"opt/{f}/{i}" for i, s in sorted(template.leaves.items()) for f in s._fields]


def _read_state(
    arrays: dict[str, np.ndarray], spec: TreeSpec, config: ESConfig, version: int
) -> tuple[list[np.ndarray], optim.OptState]:
    """Params and optimizer state, each array checked against the spec and the optimizer."""
    leaves = []
    for i, (shape, dt) in enumerate(zip(spec.shapes, spec.dtypes, strict=True)):
        name = f"param/{i}"
        if name not in arrays:
            raise _Bad(f"lacks '{name}' (leaf '{spec.path_strings[i]}')")
        _check_array(name, arrays[name], shape, dt)
        leaves.append(arrays[name])
    updated = [i for i, k in enumerate(config.kinds) if k is not NoiseKind.FROZEN]
    template = optim.init(config.optimizer, {i: np.zeros(0, spec.dtypes[i]) for i in updated})
    names = (
        [f"opt/{j}" for j in range(len(optim.state_arrays(template)))]
        if version >= 3
        else _legacy_opt_names(template)
    )
    expected = {f"param/{i}" for i in range(spec.num_leaves)} | {"opt/count", *names}
    unexpected = sorted(set(arrays) - expected)
    if unexpected:
        raise _Bad(f"has unexpected arrays {unexpected}")
    for name in ["opt/count", *names]:
        if name not in arrays:
            raise _Bad(f"lacks optimizer state '{name}' ({config.optimizer})")
    _check_array("opt/count", arrays["opt/count"], (), np.int64)
    if int(arrays["opt/count"]) < 0:
        raise _Bad("'opt/count' must be >= 0")
    owners = [i for i, s in sorted(template.leaves.items()) for _ in s]
    for name, i in zip(names, owners, strict=True):
        _check_array(name, arrays[name], spec.shapes[i], spec.dtypes[i])
    state = optim.state_from_arrays(
        template, int(arrays["opt/count"]), [arrays[name] for name in names]
    )
    try:
        optim.check_state(state, config.optimizer, leaves, updated, np)
    except (TypeError, ValueError) as exc:
        raise _Bad(_reason(exc)) from None
    return leaves, state


def load(path: str | os.PathLike[str], xp: Any = None) -> tuple[Any, ESState]:
    """Read (params, state) written by `save`, checking every field.

    Args:
        path: the file.
        xp: backend of the returned arrays: numpy (default) or cupy / "cupy".

    Returns:
        (params, state): the same tree (dict/list/tuple) and an equal state; stepping on from
        them gives exactly the parameters an uninterrupted run would.

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the path and the problem, for anything that `save` would not have
            written: not an .npz, damaged (truncated, bit-flipped), wrong JSON types, any
            hyperparameter `init` would refuse, params or optimizer state whose shapes, dtypes
            or values do not fit the spec and the optimizer.
    """
    xp = get_xp(xp)
    path = os.fspath(path)
    try:
        arrays = _read_archive(path)
        meta = _read_meta(arrays)
        spec = _read_spec(meta["spec"])
        config = _read_config(meta["config"], meta["format_version"], spec)
        generation = meta["generation"]
        if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0:
            raise _Bad(f"'generation' must be an integer >= 0, got {generation!r}")
        info = meta["info"]
        if not isinstance(info, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in info.values()
        ):
            raise _Bad(
                f"'info' must be a JSON object of numbers (tell's statistics), got {info!r:.80}"
            )
        leaves, opt = _read_state(arrays, spec, config, meta["format_version"])
    except _Bad as exc:
        sep = " " if str(exc).startswith(("is ", "has ", "lacks ")) else ": "
        raise ValueError(f"{path!r}{sep}{exc}") from None
    opt_state = optim.state_from_arrays(opt, opt.count, map(xp.asarray, optim.state_arrays(opt)))
    state = ESState(config, generation, opt_state, spec, meta["info"])
    return spec.unflatten([xp.asarray(x) for x in leaves]), state
