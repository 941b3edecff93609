"""`mnist`: the digits MLP on MNIST read from user-supplied IDX (optionally .gz) or .npz files."""

from __future__ import annotations

import argparse
import gzip
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from .classification import add_model_arguments, make_classifier_task
from .common import Task, Workload

__all__ = ["WORKLOAD", "DEFAULTS", "RECIPES", "read_idx", "load", "make"]

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


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """One IDX file (LeCun's MNIST format; gzip-compressed when its name ends in .gz).

    Raises:
        ValueError: a file that is not IDX or whose size disagrees with its header.
    """
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path!r} is not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path!r}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header != count * dtype.itemsize:
        raise ValueError(
            f"{path!r}: header says shape {shape} ({count * dtype.itemsize} bytes of data), "
            f"file has {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype, count, header).reshape(shape)


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
        with np.load(npz, allow_pickle=False) as f:
            missing = [k for k in _IDX_NAMES if k not in f.files]
            if missing:
                raise ValueError(f"--data {npz!r} lacks arrays {missing}")
            arrays = {k: f[k] for k in _IDX_NAMES}
    elif os.path.isdir(data):
        arrays = {}
        for key, stem in _IDX_NAMES.items():
            found = _find(data, stem)
            if found is None:
                raise FileNotFoundError(f"--data {data!r} has no {stem}[.gz] (nor mnist.npz)")
            arrays[key] = read_idx(found)
    else:
        raise FileNotFoundError(f"--data {data!r} is neither a directory nor an .npz file")
    out = []
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(f"--data: x_{split} has {len(x)} rows but y_{split} has {len(y)}")
        scale = 255.0 if x.dtype == np.uint8 else 1.0
        out += [(x.reshape(len(x), -1) / scale).astype(np.float32), y.astype(np.int64)]
    if out[0].shape[1] != out[2].shape[1]:
        raise ValueError("--data: train and test images have different sizes")
    return tuple(out)


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
)
