"""Checkpoint files: `save` is atomic and writes only regular files; `load` rejects bad files."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

import eggroll_np as egg


def _run():
    params = {"W": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.zeros(3, np.float32)}
    state = egg.init(params, population=4, seed=3)
    return params, state


def _listing(directory):
    return sorted(p.name for p in directory.iterdir())


def test_save_refuses_a_symlink_and_leaves_its_target_alone(tmp_path):
    params, state = _run()
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    link = tmp_path / "ckpt.npz"
    link.symlink_to(target)
    with pytest.raises(ValueError, match=r"ckpt\.npz.*symbolic link, not a regular file"):
        egg.save(link, params, state)
    assert link.is_symlink()
    assert target.read_text() == "keep me"
    assert _listing(tmp_path) == ["ckpt.npz", "precious.txt"]


def test_save_refuses_a_fifo(tmp_path):
    params, state = _run()
    fifo = tmp_path / "ckpt.npz"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="FIFO, not a regular file"):
        egg.save(fifo, params, state)  # must not block opening the FIFO either
    assert _listing(tmp_path) == ["ckpt.npz"]


def test_save_refuses_a_directory(tmp_path):
    params, state = _run()
    (tmp_path / "ckpt").mkdir()
    with pytest.raises(ValueError, match="directory, not a regular file"):
        egg.save(tmp_path / "ckpt", params, state)
    assert _listing(tmp_path) == ["ckpt"]


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs /dev/null")
def test_save_refuses_a_device_node():
    params, state = _run()
    with pytest.raises(ValueError, match="character device, not a regular file"):
        egg.save("/dev/null", params, state)


def test_a_failure_mid_write_keeps_the_old_checkpoint_and_no_temporary(tmp_path, monkeypatch):
    params, state = _run()
    path = tmp_path / "ckpt.npz"
    egg.save(path, params, state)
    before = path.read_bytes()
    new_params, new_state = egg.step(params, lambda p: float(p["W"].sum()), state)

    def crash(fh, **arrays):
        fh.write(b"PK\x03\x04 half an archive")  # some bytes reach the temporary file ...
        raise OSError(28, "No space left on device")  # ... then the disk fills up

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="No space left"):
        egg.save(path, new_params, new_state)
    assert path.read_bytes() == before
    assert _listing(tmp_path) == ["ckpt.npz"]
    monkeypatch.undo()
    p2, s2 = egg.load(path)
    assert s2.generation == 0
    np.testing.assert_array_equal(p2["W"], params["W"])


def test_an_interrupt_mid_write_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    params, state = _run()
    path = tmp_path / "ckpt.npz"
    egg.save(path, params, state)
    before = path.read_bytes()

    def interrupted(fh, **arrays):
        fh.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        egg.save(path, params, state)
    assert path.read_bytes() == before
    assert _listing(tmp_path) == ["ckpt.npz"]


def test_save_replaces_a_regular_file_in_place(tmp_path):
    params, state = _run()
    path = tmp_path / "ckpt.npz"
    path.write_bytes(b"an older file")
    egg.save(path, params, state)
    assert _listing(tmp_path) == ["ckpt.npz"]
    assert egg.load(path)[1].generation == 0


def test_load_refuses_a_fifo_without_blocking(tmp_path):
    fifo = tmp_path / "ckpt.npz"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=r"ckpt\.npz' is a FIFO, not an eggroll_np checkpoint"):
        egg.load(fifo)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_load_refuses_a_device_without_reading_it():
    with pytest.raises(ValueError, match="is a character device, not an eggroll_np checkpoint"):
        egg.load("/dev/zero")


def test_load_follows_a_symlink_to_a_checkpoint(tmp_path):
    params, state = _run()
    egg.save(tmp_path / "real.npz", params, state)
    (tmp_path / "link.npz").symlink_to(tmp_path / "real.npz")
    assert egg.load(tmp_path / "link.npz")[1].generation == 0


def test_load_of_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        egg.load(tmp_path / "absent.npz")


def test_an_array_header_promising_too_much_is_refused(tmp_path):
    import io
    import zipfile

    params, state = _run()
    good = tmp_path / "good.npz"
    egg.save(good, params, state)
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "param/1.npy":
                buf = io.BytesIO()
                np.lib.format.write_array_header_1_0(
                    buf, {"descr": "<f4", "fortran_order": False, "shape": (2**40,)}
                )
                data = buf.getvalue() + data[-12:]
            dst.writestr(info.filename, data)
    with pytest.raises(ValueError, match=r"bad\.npz' is damaged"):
        egg.load(bad)


def test_save_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    params, state = _run()
    path = tmp_path / "ckpt.npz"
    egg.save(path, params, state)
    os.chmod(path, 0o600)
    egg.save(path, params, state)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_save_refuses_a_read_only_checkpoint_by_name(tmp_path):
    params, state = _run()
    path = tmp_path / "ckpt.npz"
    egg.save(path, params, state)
    before = path.read_bytes()
    os.chmod(path, 0o444)
    new_params, new_state = egg.step(params, lambda p: float(p["W"].sum()), state)
    with pytest.raises(ValueError, match=r"ckpt\.npz': it is read-only \(mode 0444\)"):
        egg.save(path, new_params, new_state)
    assert path.read_bytes() == before
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o444
    assert _listing(tmp_path) == ["ckpt.npz"]


def test_a_full_disk_names_the_checkpoint(tmp_path, monkeypatch):
    params, state = _run()
    path = tmp_path / "ckpt.npz"

    def full(fh, **arrays):
        fh.write(b"PK\x03\x04 some bytes")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    with pytest.raises(OSError, match=r"No space left on device \(writing '.*ckpt\.npz'\)") as exc:
        egg.save(path, params, state)
    assert exc.value.errno == errno.ENOSPC
    assert _listing(tmp_path) == []


# A child process that starts `save` of a big checkpoint and is killed by SIGKILL mid-write.
_KILLED_WRITER = """
import os, signal, sys
import numpy as np
import eggroll_np as egg
params = {"W": np.ones((64, 64), np.float32)}
state = egg.init(params, population=4)
real = np.savez
def savez(fh, **arrays):
    fh.write(b"PK" + bytes(1 << 20))
    fh.flush()
    print("writing", flush=True)
    if sys.argv[2] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    sys.stdin.read()  # wait to be killed
np.savez = savez
egg.save(sys.argv[1], params, state)
"""


@contextlib.contextmanager
def _writer(path, how):
    """A child process mid-`save` of `path`: it kills itself ("kill") or waits to be killed."""
    with subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(path), how],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout.readline() == "writing\n"
            yield proc
        finally:
            proc.kill()
            proc.wait(timeout=60)


def _killed_writer(path):
    with _writer(path, "kill") as proc:
        assert proc.wait(timeout=60) == -9


def _temporaries(directory):
    return [n for n in _listing(directory) if n.endswith(".npz.tmp")]


def test_the_temporary_of_a_writer_killed_by_sigkill_is_removed_by_the_next_save(tmp_path):
    params, state = _run()
    path = tmp_path / "ckpt.npz"
    _killed_writer(path)
    assert len(_temporaries(tmp_path)) == 1  # what SIGKILL leaves (documented) ...
    _killed_writer(path)
    assert len(_temporaries(tmp_path)) == 1  # ... until the next save of the same checkpoint
    egg.save(path, params, state)
    assert _listing(tmp_path) == ["ckpt.npz"]


def test_load_removes_stale_temporaries_of_its_checkpoint_only(tmp_path):
    params, state = _run()
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    egg.save(a, params, state)
    egg.save(b, params, state)
    _killed_writer(a)
    _killed_writer(b)
    assert len(_temporaries(tmp_path)) == 2
    egg.load(a)
    assert len(_temporaries(tmp_path)) == 1  # b's temporary is b's to clean
    egg.load(b)
    assert _listing(tmp_path) == ["a.npz", "b.npz"]


def test_a_live_writers_temporary_is_left_alone(tmp_path):
    params, state = _run()
    path = tmp_path / "ckpt.npz"
    with _writer(path, "wait"):
        egg.save(path, params, state)  # a concurrent save of the same checkpoint
        assert len(_temporaries(tmp_path)) == 1
    egg.load(path)  # now its writer is gone
    assert _listing(tmp_path) == ["ckpt.npz"]


def test_temporaries_of_older_versions_are_removed_once_an_hour_old(tmp_path):
    params, state = _run()
    old, fresh = tmp_path / ".eggroll-abcd1234.npz.tmp", tmp_path / ".eggroll-wxyz9876.npz.tmp"
    old.write_bytes(b"x")
    fresh.write_bytes(b"x")
    hours_ago = time.time() - 2 * 3600
    os.utime(old, (hours_ago, hours_ago))
    egg.save(tmp_path / "ckpt.npz", params, state)
    assert _listing(tmp_path) == [fresh.name, "ckpt.npz"]
