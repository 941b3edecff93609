"""The mnist loader against bad files: labels, sizes promised by IDX headers, files of no format."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from eggroll_np.training.workloads import mnist


def _idx(arr: np.ndarray) -> bytes:
    head = bytes([0, 0, 0x08, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
    return head + arr.astype(np.uint8).tobytes()


def _npz(path, y_train, y_test=None):
    x = np.zeros((len(y_train), 4, 4), np.uint8)
    y_test = y_train if y_test is None else y_test
    np.savez(path, x_train=x, y_train=y_train, x_test=x[: len(y_test)], y_test=y_test)
    return path


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.array([0, 1, -1]), r"y_train must hold labels in \[0, 9\], found -1"),
        (np.array([0, 10, 2]), r"y_train must hold labels in \[0, 9\], found 10"),
        (np.array([0, 10**7, 2]), r"found 10000000"),
        (np.array([0.0, 1.5, 2.0]), "integer labels, got dtype float64"),
        (np.array([[0], [1], [2]]), r"1-D array of integer labels.*shape \(3, 1\)"),
    ],
)
def test_labels_must_be_integers_0_to_9(tmp_path, labels, message):
    path = _npz(tmp_path / "m.npz", labels)
    with pytest.raises(ValueError, match=message):
        mnist.load(path)


def test_test_labels_are_checked_too(tmp_path):
    path = _npz(tmp_path / "m.npz", np.array([0, 1, 2]), np.array([3, 11]))
    with pytest.raises(ValueError, match="y_test must hold labels"):
        mnist.load(path)


def test_valid_labels_load_as_int64(tmp_path):
    got = mnist.load(_npz(tmp_path / "m.npz", np.arange(10, dtype=np.uint8)))
    assert got[1].dtype == np.int64
    np.testing.assert_array_equal(got[1], np.arange(10))


def test_a_gz_longer_than_its_header_is_not_decompressed_beyond_it(tmp_path, monkeypatch):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(_idx(np.zeros(10, np.uint8)))
        fh.write(bytes(32 << 20))  # 32 MiB more than the header's 10 bytes (compresses to ~32 KB)
    handed_out = []
    real_open = gzip.open

    class Counting:
        def __init__(self, fh):
            self._fh = fh

        def read(self, n=-1):
            assert n >= 0, "the reader must always bound what it decompresses"
            data = self._fh.read(n)
            handed_out.append(len(data))
            return data

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._fh.close()

    monkeypatch.setattr(mnist.gzip, "open", lambda p, mode: Counting(real_open(p, mode)))
    with pytest.raises(ValueError, match=r"header says shape \(10,\) \(10 bytes of data\)"):
        mnist.read_idx(path)
    assert sum(handed_out) <= 4 + 4 + 10 + 1


def test_a_header_promising_more_than_the_file_has(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(_idx(np.zeros((4, 3), np.uint8))[:-2])
    with pytest.raises(
        ValueError, match=r"header says shape \(4, 3\) \(12 bytes of data\), file has 10"
    ):
        mnist.read_idx(path)


def test_a_huge_header_on_a_small_file_allocates_only_what_is_there(tmp_path):
    path = tmp_path / "x"
    head = bytes([0, 0, 0x08, 3]) + np.asarray([60000, 60000, 60000], ">u4").tobytes()
    path.write_bytes(head + bytes(100))
    with pytest.raises(ValueError, match="file has 100"):
        mnist.read_idx(path)


def test_a_gz_name_on_a_file_that_is_not_gzip(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(_idx(np.zeros((2, 2, 2), np.uint8)))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz.*not a readable IDX file"):
        mnist.read_idx(path)


def test_a_truncated_gz(tmp_path):
    path = tmp_path / "a.gz"
    path.write_bytes(gzip.compress(_idx(np.zeros((50, 50), np.uint8)))[:40])
    with pytest.raises(ValueError, match=r"a\.gz"):
        mnist.read_idx(path)


def test_a_text_file_is_named_as_neither_idx_nor_npz(tmp_path):
    path = tmp_path / "passwd"
    path.write_text("root:x:0:0:root:/root:/bin/bash\n")
    with pytest.raises(ValueError, match="passwd' is neither a directory of IDX files nor an .npz"):
        mnist.load(path)


def test_an_empty_file(tmp_path):
    path = tmp_path / "empty.npz"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.npz' is neither"):
        mnist.load(path)


def test_a_single_idx_file_is_named_as_such(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(_idx(np.zeros((2, 2, 2), np.uint8)))
    with pytest.raises(ValueError, match="is a single IDX file; give the directory"):
        mnist.load(path)


def test_a_corrupt_npz(tmp_path):
    path = tmp_path / "m.npz"
    path.write_bytes(b"PK\x03\x04" + bytes(40))
    with pytest.raises(ValueError, match=r"m\.npz' is not readable as an \.npz archive"):
        mnist.load(path)


def test_an_npz_of_objects_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "m.npz"
    obj = np.array([{"a": 1}, None], dtype=object)
    np.savez(path, x_train=obj, y_train=obj, x_test=obj, y_test=obj)
    with pytest.raises(ValueError, match=r"m\.npz': 'x_train' holds Python objects \(pickle\), which are never loaded"):
        mnist.load(path)


def test_images_that_are_not_numbers(tmp_path):
    path = tmp_path / "m.npz"
    np.savez(
        path,
        x_train=np.array(["a", "b"]),
        y_train=np.array([0, 1]),
        x_test=np.array(["a"]),
        y_test=np.array([0]),
    )
    with pytest.raises(ValueError, match="x_train must be a real array of images"):
        mnist.load(path)
