"""Training data a hostile user hands the workloads (issue 25): non-finite MNIST pixels, an IDX
header of 200 dimensions, `hyperparams --log-c nan` / `--log-gamma 1e308`. Each is one error
naming the file or the option (the CLI: one line, exit 2)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from eggroll_np import cli
from eggroll_np.training.workloads import mnist

pytest.importorskip("sklearn")


def _float_idx(arr: np.ndarray) -> bytes:
    head = bytes([0, 0, 0x0D, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
    return head + arr.astype(">f4").tobytes()


def _u8_idx(arr: np.ndarray) -> bytes:
    head = bytes([0, 0, 0x08, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
    return head + arr.astype(np.uint8).tobytes()


def _idx_dir(tmp_path, x_train: np.ndarray, gz: bool = False):
    y = np.arange(len(x_train)) % 10
    files = {
        "train-images-idx3-ubyte": _float_idx(x_train),
        "train-labels-idx1-ubyte": _u8_idx(y),
        "t10k-images-idx3-ubyte": _u8_idx(np.zeros((2, 4, 4))),
        "t10k-labels-idx1-ubyte": _u8_idx(np.arange(2)),
    }
    for name, content in files.items():
        if gz:
            (tmp_path / (name + ".gz")).write_bytes(gzip.compress(content))
        else:
            (tmp_path / name).write_bytes(content)
    return tmp_path


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_idx_images_name_the_file(tmp_path, bad):
    x = np.zeros((5, 4, 4), np.float32)
    x[3, 1, 2] = bad
    data = _idx_dir(tmp_path, x)
    path = str(data / "train-images-idx3-ubyte")
    with pytest.raises(
        ValueError, match=rf"^--data '{path}': x_train has non-finite pixels .*row 3"
    ):
        mnist.load(data)


def test_non_finite_npz_images_name_the_file_and_array(tmp_path):
    x = np.zeros((3, 4, 4))
    x[1, 0, 0] = 1e300  # finite in float64, inf once scaled into float32
    path = tmp_path / "mnist.npz"
    y = np.arange(3)
    np.savez(path, x_train=np.zeros((3, 4, 4)), y_train=y, x_test=x, y_test=y)
    with pytest.raises(ValueError, match=r"mnist\.npz': x_test has non-finite pixels .*row 1"):
        mnist.load(path)


def test_finite_float_images_still_load(tmp_path):
    x = np.full((5, 4, 4), 0.5, np.float32)
    loaded = mnist.load(_idx_dir(tmp_path, x, gz=True))
    assert loaded[0].shape == (5, 16)
    assert np.all(loaded[0] == 0.5)


@pytest.mark.parametrize("ndim", [0, 17, 200, 255])
def test_an_idx_header_of_absurd_ndim_names_the_file(tmp_path, ndim):
    path = tmp_path / "x-idx"
    path.write_bytes(bytes([0, 0, 0x08, ndim]) + b"\0\0\0\1" * ndim + b"\0")
    with pytest.raises(ValueError, match=rf"x-idx'.*declares {ndim} dimensions"):
        mnist.read_idx(path)


def _cli_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("option", "value"),
    [("--log-c", "nan"), ("--log-gamma", "1e308"), ("--log-c", "-inf"), ("--log-gamma", "40")],
)
def test_hyperparams_start_values_are_checked_naming_the_option(tmp_path, capsys, option, value):
    err = _cli_error(
        capsys,
        ["train", "hyperparams", f"{option}={value}", "--generations", "1", "--out", str(tmp_path)],
    )
    assert f"{option} must be finite, >= -20.0 and < 20.0" in err
    assert "FitFailedWarning" not in err
    assert "arange" not in err
