"""`save` / `load`: params and ES state in one .npz (no pickle), for bit-identical resume.

Layout (format 4): "param/<leaf index>" arrays (int8 leaves as int8, exactly), "opt/count"
(int64) and "opt/<j>", the optimizer state's arrays in `optim.state_arrays` order (host copies,
exact dtypes), and "meta", a JSON document (format version, config, generation, tree spec, info,
and optionally "run": what identifies the run, see `save`) stored as uint8 bytes. The archive is
read member by member (`_npz`), never through pickle. Noise is never saved: it is a pure function
of (seed, leaf, member, epoch), so a resumed run regenerates the same numbers.

Older formats still load. Format 3 had no int8 leaves (its configs get the integer settings'
defaults); format 2 named the state arrays "opt/<field>/<leaf index>" and kept the lr schedule
as three config fields (lr_schedule, lr_final, lr_decay_steps; absent before schedules:
constant); format 1 (0.1.0) also stored momentum, b1, b2 and eps flat in the config, whatever
the optimizer.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np

from . import optim
from ._checkpoint_formats import CONFIG_READERS as _CONFIG_READERS
from ._checkpoint_formats import SCHEDULE_FIELDS as _V2_SCHEDULE
from ._checkpoint_formats import legacy_opt_names as _legacy_opt_names
from ._files import clean_stale, write_atomically
from ._npz import NpzError, NpzReader, named
from .backend import get_xp, to_numpy
from .config import ESConfig, NoiseKind, make_config, optimized_leaves
from .es import ESState, check_state
from .tree import LEAF_DTYPES, TreeSpec, flatten

__all__ = ["save", "load", "load_run", "FORMAT_VERSION"]

#: Version of the .npz layout `save` writes; `load` also reads the older formats 1 to 3.
FORMAT_VERSION = 4


def save(
    path: str | os.PathLike[str], params: Any, state: ESState, run: dict[str, Any] | None = None
) -> None:
    """Write params and state to `path` (exactly that name), atomically.

    The file is written to a temporary name in the same directory, flushed to disk and renamed
    over `path`, so a crash or error leaves either the old checkpoint or the new one, never a
    half-written file. An error or Ctrl-C removes the temporary; a process killed by SIGKILL
    cannot, and the next `save` or `load` of the same path removes it once its writer is gone
    (docs/checkpoints.md). An existing checkpoint keeps its permission bits.

    Args:
        path: the file.
        params, state: the run's parameters and ES state.
        run: optional JSON object saved beside them (what identifies the run, e.g. the workload
            and its options for `eggroll-np train --resume`); `load_run` reads it back.

    Raises:
        TypeError, ValueError: params that do not match the state, non-finite values in a leaf
            that is not frozen (or in the optimizer state), a `run` that is not a JSON object,
            or a `path` that exists and is not a writable regular file (a symlink, FIFO,
            directory, device or read-only file); nothing is written.
        OSError: the write failed (a full disk): the message names `path`; the old file stays.
    """
    leaves = check_state(params, state)
    path = os.fspath(path)
    meta = {
        "format_version": FORMAT_VERSION,
        "config": state.config.to_dict(),
        "generation": state.generation,
        "spec": state.spec.to_json(),
        "info": state.info,
    }
    if run is not None:
        meta["run"] = _check_run(run)
    arrays = {f"param/{i}": to_numpy(x) for i, x in enumerate(leaves)}
    arrays["opt/count"] = np.asarray(state.opt_state.count, dtype=np.int64)
    opt = optim.state_arrays(state.opt_state)  # the optimizer's own order; never parsed here
    arrays.update({f"opt/{j}": to_numpy(v) for j, v in enumerate(opt)})
    frozen = {f"param/{i}" for i, k in enumerate(state.config.kinds) if k is NoiseKind.FROZEN}
    for name, arr in arrays.items():
        if name not in frozen and arr.dtype.kind == "f" and not np.isfinite(arr).all():
            what = f"leaf '{state.spec.path_strings[int(name[6:])]}'" if name[0] == "p" else name
            raise ValueError(
                f"cannot save to {path!r}: {what} has non-finite values; only a frozen leaf may "
                "hold inf or NaN (nothing was written)"
            )
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    write_atomically(path, lambda fh: np.savez(fh, **arrays))


def _check_run(run: Any) -> dict[str, Any]:
    """`run` as stored: a JSON object (strict JSON: no NaN)."""
    if not isinstance(run, dict):
        raise TypeError(f"run must be a dict (a JSON object), got {type(run).__name__}")
    try:
        return json.loads(json.dumps(run, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"run must be JSON-serializable: {_reason(exc)}") from None


_META_KEYS = {"format_version", "config", "generation", "spec", "info"}
_SPEC_KEYS = {"structure", "paths", "shapes", "dtypes"}


class _Bad(Exception):
    """A problem found in a checkpoint's contents; `load` turns it into ValueError(path: ...)."""


_META_MAX = 1 << 26  # bytes of the 'meta' JSON (the spec of a million leaves fits)


def _open(path: str) -> NpzReader:
    """The archive at `path`; nothing but its ZIP directory is read."""
    try:
        return NpzReader(path, label="an eggroll_np checkpoint")
    except NpzError as exc:
        raise _Bad(str(exc)) from None


def _meta_array(npz: NpzReader) -> np.ndarray:
    """The 'meta' member (JSON bytes), its header checked before it is read."""
    if "meta" not in npz.names:
        raise _Bad("is not an eggroll_np checkpoint (no 'meta')")
    h = npz.header("meta")
    if h.dtype != np.uint8 or len(h.shape) != 1:
        raise _Bad(f"'meta' must be 1-D uint8 (JSON bytes), got {h.dtype} {h.shape}")
    if h.nbytes > _META_MAX:
        raise _Bad(f"'meta' holds {h.nbytes} bytes, more than a checkpoint's {_META_MAX}")
    return npz.read("meta")


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _json(name: str, text: str | bytes) -> Any:
    """JSON of the entry `name`; _Bad when it is not UTF-8 JSON or nests too deeply."""
    try:
        return json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Bad(f"'{name}' is not JSON: {_reason(exc)}") from None
    except RecursionError:  # json's parser recurses once per nested array/object
        raise _Bad(f"'{name}' JSON nests too deeply to be a checkpoint's") from None


def _read_meta(raw: np.ndarray) -> dict[str, Any]:
    meta = _json("meta", raw.tobytes())
    if not isinstance(meta, dict):
        raise _Bad(f"'meta' must be a JSON object, got {type(meta).__name__}")
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version not in _CONFIG_READERS:
        raise _Bad(
            f"checkpoint format {version!r} is not supported (this version reads "
            f"{sorted(_CONFIG_READERS)})"
        )
    keys = set(meta) - {"run"}  # "run" is optional (`save(..., run=)`)
    if keys != _META_KEYS:
        missing, extra = sorted(_META_KEYS - keys), sorted(keys - _META_KEYS)
        raise _Bad(f"'meta' keys differ: missing {missing}, unexpected {extra}")
    if not isinstance(meta.get("run", {}), dict):
        raise _Bad(f"'run' must be a JSON object, got {type(meta['run']).__name__}")
    return meta


def _read_spec(text: Any) -> TreeSpec:
    """The TreeSpec of meta['spec'], checked: a structure that rebuilds exactly its paths."""
    d = _json("spec", text) if isinstance(text, str) else None
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
        if dt not in LEAF_DTYPES:
            raise _Bad(f"'spec' dtype of leaf {i} must be one of {list(LEAF_DTYPES)}, got {dt!r}")
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
        raise _Bad(
            f"'config' schedule must be a JSON object {{kind, final, steps}}, got {schedule!r}"
        )
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


def _check_header(npz: NpzReader, name: str, shape: tuple, dtype: Any) -> None:
    h = npz.header(name)
    if h.shape != tuple(shape) or h.dtype != np.dtype(dtype):
        raise _Bad(
            f"'{name}' must be {np.dtype(dtype).name} of shape {tuple(shape)}, got "
            f"{h.describe()}"
        )


def _read_state(
    npz: NpzReader, spec: TreeSpec, config: ESConfig, version: int
) -> tuple[list[np.ndarray], optim.OptState]:
    """Params and optimizer state. Every member's name, shape and dtype is checked against the
    spec and the optimizer before any array is read; then the values (finite, except in frozen
    leaves: a mask may hold -inf)."""
    present = set(npz.names) - {"meta"}
    for i in range(spec.num_leaves):
        if f"param/{i}" not in present:
            raise _Bad(f"lacks 'param/{i}' (leaf '{spec.path_strings[i]}')")
    updated = optimized_leaves(config, spec)
    template = optim.init(config.optimizer, {i: np.zeros(0, spec.dtypes[i]) for i in updated})
    names = (
        [f"opt/{j}" for j in range(len(optim.state_arrays(template)))]
        if version >= 3
        else _legacy_opt_names(template)
    )
    trained = [i for i, k in enumerate(config.kinds) if k is not NoiseKind.FROZEN]
    must_be_finite = {*names, *(f"param/{i}" for i in trained)}
    owners = [i for i, s in sorted(template.leaves.items()) for _ in s]
    expected = {f"param/{i}": i for i in range(spec.num_leaves)}
    expected.update(zip(names, owners, strict=True))
    unexpected = sorted(present - set(expected) - {"opt/count"})
    if unexpected:
        raise _Bad(f"has unexpected arrays {unexpected}")
    for name in ["opt/count", *names]:
        if name not in present:
            raise _Bad(f"lacks optimizer state '{name}' ({config.optimizer})")
    for name, i in expected.items():
        _check_header(npz, name, spec.shapes[i], spec.dtypes[i])
    _check_header(npz, "opt/count", (), np.int64)
    count = int(npz.read("opt/count"))
    if count < 0:
        raise _Bad("'opt/count' must be >= 0")
    arrays = {}
    for name in expected:
        arrays[name] = npz.read(name)
        if name in must_be_finite and not np.isfinite(arrays[name]).all():
            raise _Bad(f"'{name}' has non-finite values")
        if arrays[name].dtype == np.int8 and arrays[name].size and int(arrays[name].min()) < -127:
            leaf = spec.path_strings[expected[name]]
            raise _Bad(f"'{name}' (int8 leaf '{leaf}') holds -128; int8 leaves lie in [-127, 127]")
    leaves = [arrays[f"param/{i}"] for i in range(spec.num_leaves)]
    state = optim.state_from_arrays(template, count, [arrays[name] for name in names])
    try:
        optim.check_state(state, config.optimizer, leaves, updated, np)
    except (TypeError, ValueError) as exc:
        raise _Bad(_reason(exc)) from None
    return leaves, state


def _read_checkpoint(path: str) -> tuple[dict[str, Any], TreeSpec, ESConfig, NpzReader]:
    """(meta, spec, config, the open archive): everything but the arrays, checked."""
    npz = _open(path)
    try:
        meta = _read_meta(_meta_array(npz))
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
    except BaseException:
        npz.close()
        raise
    return meta, spec, config, npz


def load(path: str | os.PathLike[str], xp: Any = None) -> tuple[Any, ESState]:
    """Read (params, state) written by `save`, checking every field.

    Each array's name, shape and dtype is checked against the checkpoint's spec before any
    array is read, so a damaged or hostile file costs no more memory than the arrays the spec
    declares (and `_npz.MAX_RATIO` times the file at most). Abandoned temporaries of `path`
    (left by a writer killed during `save`) are removed first.

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
            hyperparameter `init` would refuse, unexpected arrays, params or optimizer state
            whose shapes, dtypes or values do not fit the spec and the optimizer (inf or NaN
            only in a frozen leaf).
    """
    xp = get_xp(xp)
    path = os.fspath(path)
    clean_stale(path)
    try:
        meta, spec, config, npz = _read_checkpoint(path)
        with npz:
            leaves, opt = _read_state(npz, spec, config, meta["format_version"])
    except (_Bad, NpzError) as exc:
        raise ValueError(named(repr(path), exc)) from None
    opt_state = optim.state_from_arrays(opt, opt.count, map(xp.asarray, optim.state_arrays(opt)))
    state = ESState(config, meta["generation"], opt_state, spec, meta["info"])
    return spec.unflatten([xp.asarray(x) for x in leaves]), state


def load_run(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The `run` object `save` stored with the checkpoint (None when it has none: formats 1
    and 2, or saved without one), after the same checks of the file's metadata as `load`; no
    array is read.

    Raises:
        FileNotFoundError, ValueError: as `load`.
    """
    path = os.fspath(path)
    try:
        meta, _, _, npz = _read_checkpoint(path)
        npz.close()
    except (_Bad, NpzError) as exc:
        raise ValueError(named(repr(path), exc)) from None
    return meta.get("run")
