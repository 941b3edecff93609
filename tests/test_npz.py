"""Hostile .npz files (checkpoints, MNIST): refused by name before any data is allocated."""

from __future__ import annotations

import tracemalloc
import zipfile

import numpy as np
import pytest

import eggroll_np as egg
from eggroll_np.training.workloads import mnist

MIB = 1 << 20


def _deflated_zeros(zf: zipfile.ZipFile, name: str, shape: tuple, descr: str) -> None:
    """Member `name`.npy: a valid header, then zeros, deflated (~230:1 at level 1)."""
    with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": descr, "fortran_order": False, "shape": shape}
        )
        left = int(np.prod(shape)) * np.dtype(descr).itemsize
        zeros = bytes(MIB)
        while left:
            fh.write(zeros[: min(left, MIB)])
            left -= min(left, MIB)


def _peak_bytes(fn) -> tuple[int, BaseException | None]:
    """Peak traced allocation (NumPy's array data included) while fn() runs, and its error."""
    tracemalloc.start()
    try:
        fn()
        error = None
    except Exception as exc:  # noqa: BLE001 (returned to the test)
        error = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, error


def _checkpoint(path) -> None:
    params = {"W": np.ones((8, 4), np.float32)}
    egg.save(path, params, egg.init(params, population=4))


def test_an_extra_deflated_array_in_a_checkpoint_is_refused_before_it_is_read(tmp_path):
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    _checkpoint(good)
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w", zipfile.ZIP_DEFLATED, True, 1) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        _deflated_zeros(dst, "extra", (16 * MIB,), "<f8")  # 128 MiB in about 0.6 MB
    assert bad.stat().st_size < 2 * MIB
    peak, error = _peak_bytes(lambda: egg.load(bad))
    assert isinstance(error, ValueError)
    assert "bad.npz' has unexpected arrays ['extra']" in str(error)
    assert peak < 16 * MIB


def test_a_header_shape_other_than_the_spec_is_refused_before_the_data(tmp_path):
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    _checkpoint(good)
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w", zipfile.ZIP_DEFLATED, True, 1) as dst:
        for info in src.infolist():
            if info.filename == "param/0.npy":
                _deflated_zeros(dst, "param/0", (4096, 4096), "<f4")  # 64 MiB, not (8, 4)
            else:
                dst.writestr(info.filename, src.read(info))
    peak, error = _peak_bytes(lambda: egg.load(bad))
    assert isinstance(error, ValueError)
    assert "bad.npz" in str(error)
    assert peak < 16 * MIB


def test_garbage_in_front_of_a_checkpoint_is_named_without_pickle_advice(tmp_path):
    path = tmp_path / "c.npz"
    _checkpoint(path)
    path.write_bytes(b"#!garbage\n" + path.read_bytes())
    with pytest.raises(ValueError, match=r"c\.npz' does not start with a ZIP header") as exc:
        egg.load(path)
    assert "pickle" not in str(exc.value)


def _mnist_arrays(rows: int = 20) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (rows, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, rows).astype(np.uint8)
    return {"x_train": x, "y_train": y, "x_test": x[:5], "y_test": y[:5]}


def test_a_deflate_bomb_as_mnist_npz_is_refused_before_it_expands(tmp_path):
    path = tmp_path / "mnist.npz"
    small = _mnist_arrays()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, True, 1) as zf:
        _deflated_zeros(zf, "x_train", (120_000, 28, 28), "|u1")  # 90 MiB in about 0.4 MB
        _deflated_zeros(zf, "y_train", (120_000,), "|u1")
        for k in ("x_test", "y_test"):
            with zf.open(f"{k}.npy", "w") as fh:
                np.lib.format.write_array(fh, small[k])
    peak, error = _peak_bytes(lambda: mnist.load(path))
    assert isinstance(error, ValueError)
    assert f"--data {str(path)!r}: 'x_train' expands" in str(error)
    assert peak < 16 * MIB


def test_an_npz_header_promising_2_to_the_40_floats_is_a_value_error(tmp_path):
    path = tmp_path / "mnist.npz"
    arrays = _mnist_arrays()
    with zipfile.ZipFile(path, "w") as zf:
        for k, v in arrays.items():
            with zf.open(f"{k}.npy", "w") as fh:
                if k == "x_train":
                    np.lib.format.write_array_header_1_0(
                        fh, {"descr": "<f8", "fortran_order": False, "shape": (2**40,)}
                    )
                    fh.write(bytes(64))
                else:
                    np.lib.format.write_array(fh, v)
    with pytest.raises(ValueError, match=r"mnist\.npz' is damaged: 'x_train' declares"):
        mnist.load(path)


def test_garbage_in_front_of_an_mnist_npz_is_named(tmp_path):
    path = tmp_path / "mnist.npz"
    np.savez(path, **_mnist_arrays())
    path.write_bytes(b"garbage" + path.read_bytes())
    with pytest.raises(ValueError, match=r"mnist\.npz' is neither a directory of IDX files nor"):
        mnist.load(path)


def test_real_compressed_mnist_npz_loads_as_before(tmp_path):
    arrays = _mnist_arrays()
    np.savez_compressed(tmp_path / "mnist.npz", **arrays)
    x_train, y_train, x_test, y_test = mnist.load(tmp_path / "mnist.npz")
    want = (arrays["x_train"].reshape(20, -1) / 255.0).astype(np.float32)
    assert x_train.tobytes() == want.tobytes()
    np.testing.assert_array_equal(y_test, arrays["y_test"])


def test_the_reader_checks_names_and_round_trips_layouts(tmp_path):
    from eggroll_np import _npz

    path = tmp_path / "a.npz"
    f_order = np.asfortranarray(np.arange(12, dtype=">f8").reshape(3, 4))
    np.savez(path, f=f_order, empty=np.zeros((0, 3), np.float32), scalar=np.int64(7))
    with _npz.NpzReader(path) as npz:
        assert set(npz.names) == {"f", "empty", "scalar"}
        h = npz.header("f")
        assert (h.shape, h.dtype, h.fortran_order) == ((3, 4), np.dtype(">f8"), True)
        np.testing.assert_array_equal(npz.read("f"), f_order)
        assert npz.read("empty").shape == (0, 3)
        assert npz.read("scalar") == 7
    with zipfile.ZipFile(tmp_path / "b.npz", "w") as zf:
        zf.writestr("notes.txt", "hello")
    with pytest.raises(_npz.NpzError, match="holds 'notes.txt', which is not a .npy array"):
        _npz.NpzReader(tmp_path / "b.npz")
