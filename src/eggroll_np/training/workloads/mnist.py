"""`mnist`: the digits MLP on MNIST read from user-supplied IDX (optionally .gz) or .npz files."""

from __future__ import annotations

import argparse
import gzip
import math
import os
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..._npz import ZIP_MAGIC, NpzError, NpzReader, named
from .classification import add_model_arguments, make_classifier_task
from .common import Task, Workload

__all__ = ["WORKLOAD", "DEFAULTS", "RECIPES", "CLASSES", "read_idx", "load", "make"]

DEFAULTS: dict[str, Any] = {
    "population": 256,
    "sigma": 0.03,
    "lr": 0.005,
    "rank": 1,
    "generations": 1000,
    "optimizer": "adam",
    "shaping": "centered_rank",
    "hidden": (128,),
    "activation": "gelu",
    "fitness": "xent",
    "batch": 256,
    "data": None,
    "baseline": False,
    "recipe": None,
}

# eggroll_mnist: the reference pages' MNIST recipe, raw training-batch accuracy as the fitness
# (non-differentiable) of an MLP with 256 GELU units; the pages report 97.5% test accuracy.
RECIPES: dict[str, dict[str, Any]] = {
    "eggroll_mnist": {
        "hidden": (256,),
        "activation": "gelu",
        "fitness": "accuracy",
        "population": 512,
        "sigma": 0.03,
        "lr": 0.005,
        "batch": 512,
        "generations": 3000,
    },
}

# IDX element types (the third byte of the magic number) -> big-endian NumPy dtypes.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


_READ_CHUNK = 1 << 24  # bytes read (decompressed) at a time
_IDX_MAX_NDIM = 16  # the header's byte allows 255; NumPy arrays have at most 64
_GZIP_MAGIC = b"\x1f\x8b"
CLASSES = 10


def _read_exactly(fh: Any, count: int) -> bytes:
    """Up to `count` bytes from fh, read in chunks: memory follows the data that is really there,
    never a size a corrupt header claims."""
    parts, have = [], 0
    while have < count:
        part = fh.read(min(_READ_CHUNK, count - have))
        if not part:
            break
        parts.append(part)
        have += len(part)
    return b"".join(parts)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """One IDX file (LeCun's MNIST format; gzip-compressed when its name ends in .gz).

    The header is read first and at most the number of bytes it promises (plus one, to detect a
    longer file) is decompressed, so a corrupt or hostile .gz cannot expand beyond its header.

    Returns:
        The array, shape and big-endian dtype as the header declares.

    Raises:
        ValueError naming the path: not IDX (or not gzip for .gz), or a size that disagrees with
        the header.
    """
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            magic = _read_exactly(fh, 4)
            if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_DTYPES:
                raise ValueError(f"{path!r} is not an IDX file (bad magic number)")
            ndim = magic[3]
            if not 1 <= ndim <= _IDX_MAX_NDIM:  # NumPy's own error would not name the file
                raise ValueError(
                    f"{path!r}: IDX header declares {ndim} dimensions; MNIST's files have 1 "
                    f"(labels) or 3 (images), this reader takes 1 to {_IDX_MAX_NDIM}"
                )
            dims = _read_exactly(fh, 4 * ndim)
            if len(dims) < 4 * ndim:
                raise ValueError(f"{path!r}: truncated IDX header")
            shape = tuple(int(d) for d in np.frombuffer(dims, ">u4", ndim))
            dtype = np.dtype(_IDX_DTYPES[magic[2]])
            nbytes = math.prod(shape) * dtype.itemsize
            raw = _read_exactly(fh, nbytes + 1)  # one byte more than promised: a longer file
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path!r} is not a readable IDX file: {exc}") from None
    if len(raw) != nbytes:
        got = f"{len(raw)}" if len(raw) <= nbytes else "more"
        raise ValueError(
            f"{path!r}: header says shape {shape} ({nbytes} bytes of data), file has {got}"
        )
    return np.frombuffer(raw, dtype).reshape(shape)


def _find(directory: str, stem: str) -> str | None:
    # Both the canonical "train-images-idx3-ubyte" and the common "train-images.idx3-ubyte".
    for name in (stem, stem.replace("-idx", ".idx")):
        for ext in ("", ".gz"):
            candidate = os.path.join(directory, name + ext)
            if os.path.isfile(candidate):
                return candidate
    return None


def load(data: str | os.PathLike[str] | None) -> tuple[np.ndarray, ...]:
    """(x_train, y_train, x_test, y_test) from a directory of the four IDX files or an .npz.

    The .npz (a file, or mnist.npz inside the directory) holds x_train, y_train, x_test, y_test
    (Keras' layout). Images are flattened and scaled to [0, 1] float32. Nothing is downloaded.
    """
    if data is None:
        raise ValueError(
            "--data is required: a directory with MNIST's four IDX files (train-images-idx3-ubyte"
            "[.gz], ...) or an .npz with x_train, y_train, x_test, y_test; nothing is downloaded"
        )
    data = os.fspath(data)
    npz = data if os.path.isfile(data) else os.path.join(data, "mnist.npz")
    if os.path.isfile(npz):
        arrays = _read_npz(npz)
        sources = {key: npz for key in _IDX_NAMES}
    elif os.path.isdir(data):
        arrays, sources = {}, {}
        for key, stem in _IDX_NAMES.items():
            found = _find(data, stem)
            if found is None:
                raise FileNotFoundError(f"--data {data!r} has no {stem}[.gz] (nor mnist.npz)")
            arrays[key], sources[key] = read_idx(found), found
    else:
        raise FileNotFoundError(f"--data {data!r} is neither a directory nor an .npz file")
    out = []
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        _check_split(split, x.shape, x.dtype, y.shape, y.dtype, data)
        images = _images(x)
        bad = np.flatnonzero(~np.isfinite(images).all(axis=1))
        if bad.size:  # else every member's fitness is NaN, and the fitness gets the blame
            raise ValueError(
                f"--data {sources[f'x_{split}']!r}: x_{split} has non-finite pixels (NaN or inf, "
                f"or beyond float32) in {bad.size} image(s), the first at row {int(bad[0])}"
            )
        out += [images, _labels(y, f"y_{split}", data)]
    if out[0].shape[1] != out[2].shape[1]:
        raise ValueError(f"--data {data!r}: train and test images have different sizes")
    return tuple(out)


def _check_split(
    split: str, x_shape: tuple, x_dtype: np.dtype, y_shape: tuple, y_dtype: np.dtype, data: str
) -> None:
    """ValueError naming --data unless x_<split> (rows, ...) real images and y_<split> (rows,)
    integer labels agree; from the shapes and dtypes alone (an .npz's headers, before its data)."""
    if len(x_shape) < 1 or not (np.issubdtype(x_dtype, np.integer) or x_dtype.kind == "f"):
        raise ValueError(
            f"--data {data!r}: x_{split} must be a real array of images, got dtype "
            f"{x_dtype} and shape {x_shape}"
        )
    if len(y_shape) != 1 or not np.issubdtype(y_dtype, np.integer):
        raise ValueError(
            f"--data {data!r}: y_{split} must be a 1-D array of integer labels, got dtype "
            f"{y_dtype} and shape {y_shape}"
        )
    if x_shape[0] != y_shape[0] or x_shape[0] == 0:
        raise ValueError(
            f"--data {data!r}: x_{split} has {x_shape[0]} rows but y_{split} has {y_shape[0]}"
        )


def _images(x: np.ndarray) -> np.ndarray:
    """(R, ...) images -> (R, pixels) float32 in [0, 1] (uint8 / 255), a block of rows at a time:
    the float64 quotient of the whole set would be 8x the uint8 images."""
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    rows = x.reshape(len(x), -1)
    out = np.empty(rows.shape, np.float32)
    step = max(1, _READ_CHUNK // max(1, 8 * rows.shape[1]))
    with np.errstate(over="ignore"):  # a float64 pixel beyond float32: refused by the caller
        for a in range(0, len(rows), step):
            out[a : a + step] = rows[a : a + step] / scale
    return out


def _read_npz(path: str) -> dict[str, np.ndarray]:
    """The four arrays of an .npz; ValueError naming the file when it is not one (or lacks them)."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head != ZIP_MAGIC:
        if head[:2] == _GZIP_MAGIC or (len(head) == 4 and head[:2] == b"\0\0"):
            raise ValueError(
                f"--data {path!r} is a single IDX file; give the directory holding MNIST's four "
                "IDX files, or an .npz with x_train, y_train, x_test, y_test"
            )
        raise ValueError(f"--data {path!r} is neither a directory of IDX files nor an .npz archive")
    try:
        with NpzReader(path) as npz:
            missing = [k for k in _IDX_NAMES if k not in npz.names]
            if missing:
                raise ValueError(f"--data {path!r} lacks arrays {missing}")
            h = {k: npz.header(k) for k in _IDX_NAMES}  # every header before any data
            for split in ("train", "test"):
                x, y = h[f"x_{split}"], h[f"y_{split}"]
                _check_split(split, x.shape, x.dtype, y.shape, y.dtype, path)
            return {k: npz.read(k) for k in _IDX_NAMES}
    except NpzError as exc:
        raise ValueError(named(f"--data {path!r}", exc)) from None


def _labels(y: np.ndarray, name: str, data: str) -> np.ndarray:
    """y (checked by `_check_split`) as int64: one label in [0, CLASSES) per row (a float
    label is refused, not truncated; -1 would otherwise silently mean the last class)."""
    if y.size and (int(y.min()) < 0 or int(y.max()) >= CLASSES):
        bad = y[(y < 0) | (y >= CLASSES)][0]
        raise ValueError(
            f"--data {data!r}: {name} must hold labels in [0, {CLASSES - 1}], found {int(bad)}"
        )
    return y.astype(np.int64)


def make(config: Mapping[str, Any]) -> Task:
    """The MNIST Task (see `classification.make_classifier_task`)."""
    return make_classifier_task(config, *load(config["data"]))


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        metavar="PATH",
        help="directory with MNIST's IDX files (train-images-idx3-ubyte[.gz], "
        "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]) "
        "or an .npz with x_train, y_train, x_test, y_test. Required: nothing is downloaded",
    )
    add_model_arguments(p, DEFAULTS)
    recipe = RECIPES["eggroll_mnist"]
    p.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        help="a preset of options, which options given explicitly override: eggroll_mnist = "
        f"{recipe['hidden'][0]} GELU units, fitness = raw training-batch accuracy, population "
        f"{recipe['population']}, sigma {recipe['sigma']}, lr {recipe['lr']}, batch "
        f"{recipe['batch']}, {recipe['generations']} generations (the reference pages report "
        "97.5%% test accuracy for this recipe)",
    )


WORKLOAD = Workload(
    name="mnist",
    help="the digits MLP on MNIST from your own IDX/.npz files (--data; nothing is downloaded)",
    metric="test_accuracy",
    defaults=DEFAULTS,
    add_arguments=_add_arguments,
    make=make,
    recipes=RECIPES,
    evaluation_options=("baseline",),
)
