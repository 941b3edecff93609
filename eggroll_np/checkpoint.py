"""`save` / `load`: params and ES state in one .npz (no pickle), for bit-identical resume.

Layout: "param/<leaf index>" and "opt/<optimizer key>" arrays (host copies, exact dtypes) and
"meta", a JSON document (format version, config, generation, tree spec, info) stored as uint8
bytes so that the file loads with allow_pickle=False. Noise is never saved: it is a pure function
of (seed, leaf, member, epoch), so a resumed run regenerates the same numbers.

Format 2 stores the optimizer's own hyperparameters as config["hyperparams"]; format 1 (0.1.0)
stored momentum, b1, b2 and eps flat in the config, whatever the optimizer, and still loads.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from typing import Any

import numpy as np

from . import optim
from .backend import get_xp, to_numpy
from .config import ESConfig
from .es import ESState, check_state
from .tree import TreeSpec

__all__ = ["save", "load", "FORMAT_VERSION"]

#: Version of the .npz layout `save` writes; `load` also reads the older format 1.
FORMAT_VERSION = 2
_V1_HYPERPARAMS = ("momentum", "b1", "b2", "eps")


def _config_v1(d: dict[str, Any]) -> dict[str, Any]:
    """A format-1 config dict in format 2's layout: the chosen optimizer's hyperparameters only."""
    d = dict(d)
    flat = {k: d.pop(k) for k in _V1_HYPERPARAMS if k in d}
    fields = optim.hyperparams(d["optimizer"]).__dataclass_fields__
    d["hyperparams"] = {k: v for k, v in flat.items() if k in fields}
    return d


_CONFIG_READERS = {1: _config_v1, 2: dict}


def save(path: str | os.PathLike[str], params: Any, state: ESState) -> None:
    """Write params and state to `path` (exactly that name; written atomically).

    Raises:
        TypeError, ValueError: params that do not match the state (nothing is written).
    """
    leaves = check_state(params, state)
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
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        # mkstemp creates 0600 files; give the checkpoint the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


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
        read_config = _CONFIG_READERS.get(meta.get("format_version"))
        if read_config is None:
            raise ValueError(
                f"checkpoint format {meta.get('format_version')!r} is not supported "
                f"(this version reads {sorted(_CONFIG_READERS)})"
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
        config=ESConfig.from_dict(read_config(meta["config"])),
        generation=int(meta["generation"]),
        opt_state=opt_state,
        spec=spec,
        info=meta["info"],
    )
    return spec.unflatten(leaves), state
