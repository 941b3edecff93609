"""The C++ core's persistent thread pool: same bits at every thread count, fork, two callers, exit."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from eggroll_np import _ext, noise_table

core = _ext.core
pytestmark = pytest.mark.skipif(core is None, reason=f"C++ core not built: {_ext.core_error}")

THREAD_COUNTS = (1, 2, 3, 7)


def _outputs() -> list[np.ndarray]:
    """One large call of every threaded driver (each big enough to be split over 7 threads)."""
    rng = np.random.default_rng(3)
    keys = np.arange(24, dtype=np.uint32)
    outs = [np.empty((24, 20_000), np.float32), np.empty((24, 300), np.float32)]
    core.fill_normals_many(7, [1, 2], keys, 5, [0, 99], outs)
    single = np.empty((24, 40_000), np.float32)
    core.fill_normals(7, 3, keys, 5, 11, single)
    a = rng.standard_normal((64, 96, 2), dtype=np.float32)
    b = rng.standard_normal((64, 700, 2), dtype=np.float32)
    w = rng.standard_normal(64).astype(np.float32)
    contracted = core.contract(a, b, w)
    contracted64 = core.contract(a.astype(np.float64), b.astype(np.float64), w.astype(np.float64))
    x = rng.standard_normal((96, 4, 64), dtype=np.float32)
    ka, kb = np.ascontiguousarray(a[:, :64]), np.ascontiguousarray(b[:, :128])
    mk = (np.arange(96) % 64).astype(np.uint32)
    coef = rng.standard_normal(96).astype(np.float32)
    corr = np.zeros((96, 4, 128), np.float32)
    core.lowrank_correction(x, ka, kb, mk, coef, corr)
    lin = np.empty((96, 4, 128), np.float32)
    base = rng.standard_normal((4, 128), dtype=np.float32)
    bias = rng.standard_normal(128).astype(np.float32)
    core.linear_epilogue(lin, base, x, ka, None, None, kb, mk, coef, bias, None, None, 2)
    theta = rng.standard_normal(300_000).astype(np.float32)
    g, mu = rng.standard_normal((2, 300_000), dtype=np.float32)
    nu = np.abs(rng.standard_normal(300_000)).astype(np.float32)
    adam = core.adam_step(theta, g, mu, nu, 0.01, 0.9, 0.999, 1e-8, 0.0, 3)
    table = noise_table.table(1, 1 << 20)
    starts = rng.integers(0, (1 << 20) - 5000, (2, 64)).astype(np.int64)
    gathered = [np.empty((64, 5000), np.float32), np.empty((64, 100), np.float32)]
    core.gather_rows_many(table, list(starts), gathered)
    return [*outs, single, contracted, contracted64, corr, lin, *adam[:3], np.float64(adam[3]),
            *gathered]  # fmt: skip


@pytest.fixture
def restore_threads():
    before = core.num_threads()
    yield
    core.set_num_threads(before)


def test_every_driver_gives_the_same_bits_at_1_2_3_and_7_threads(restore_threads):
    results = {}
    for n in THREAD_COUNTS:
        core.set_num_threads(n)
        assert core.num_threads() == n
        results[n] = _outputs()
    assert core.pool_workers() >= 6  # 7 threads: the caller and six workers took part
    for n in THREAD_COUNTS[1:]:
        for i, (got, want) in enumerate(zip(results[n], results[1])):
            assert np.asarray(got).tobytes() == np.asarray(want).tobytes(), f"{n} threads, #{i}"


def test_two_python_threads_at_once_get_the_serial_bits(restore_threads):
    # The GIL is released in the drivers: both threads are in the core together; one runs on
    # the pool and the other inline, and neither waits for the other.
    core.set_num_threads(1)
    want = _outputs()
    core.set_num_threads(3)
    got: dict[int, list] = {}
    errors: list[BaseException] = []

    def work(slot: int) -> None:
        try:
            for _ in range(3):
                got[slot] = _outputs()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors and all(not t.is_alive() for t in threads)
    for slot in range(2):
        for g, w in zip(got[slot], want):
            assert np.asarray(g).tobytes() == np.asarray(w).tobytes()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_starts_its_own_pool_and_gets_the_same_bits(restore_threads):
    core.set_num_threads(3)
    want = _outputs()  # the parent's pool is running (workers asleep) when it forks
    assert core.pool_workers() >= 2
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        status = 1
        try:
            fresh = core.pool_workers() == 0  # the parent's workers are not in this process
            same = all(np.asarray(g).tobytes() == np.asarray(w).tobytes()
                       for g, w in zip(_outputs(), want))  # fmt: skip
            os.write(write, f"{int(fresh)}{int(same)}{int(core.pool_workers() >= 2)}".encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read) as r:
        report = r.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert report == "111"  # fresh pool, same bits, and the child's own workers started
    assert all(np.asarray(g).tobytes() == np.asarray(w).tobytes() for g, w in zip(_outputs(), want))


def _python(code: str, tmp_path, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "EGGROLL_NUM_THREADS"}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-P", "-c", code], cwd=tmp_path, env=full, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip


def test_exit_joins_the_workers_even_with_a_daemon_thread_in_the_core(tmp_path):
    code = (
        "import threading, numpy as np\n"
        "from eggroll_np import _ext\n"
        "core = _ext.core\n"
        "core.set_num_threads(3)\n"
        "keys = np.arange(16, dtype=np.uint32)\n"
        "def spin():\n"
        "    out = np.empty((16, 50_000), np.float32)\n"
        "    while True:\n"
        "        core.fill_normals(1, 2, keys, 3, 0, out)\n"
        "threading.Thread(target=spin, daemon=True).start()\n"
        "out = np.empty((16, 50_000), np.float32)\n"
        "core.fill_normals(1, 2, keys, 3, 0, out)\n"
        "print(core.pool_workers())\n"
    )
    run = _python(code, tmp_path)
    assert run.returncode == 0, run.stderr
    assert int(run.stdout) >= 1


@pytest.mark.parametrize("value", ["-1", "0", "abc", "2.5", "3abc", " 2", "+2", "99999999999"])
def test_a_bad_eggroll_num_threads_is_an_error_at_first_use_naming_it(value, tmp_path):
    code = (
        "import eggroll_np\n"  # importing never raises
        "print('imported', flush=True)\n"
        "from eggroll_np import _ext\n"
        "_ext.core\n"
    )
    run = _python(code, tmp_path, EGGROLL_NUM_THREADS=value)
    assert run.returncode != 0
    assert run.stdout.strip() == "imported"
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("ValueError: EGGROLL_NUM_THREADS=")
    assert repr(value) in last


@pytest.mark.parametrize(("value", "want"), [("1", 1), ("3", 3), ("", None)])
def test_a_good_eggroll_num_threads_sets_the_default(value, want, tmp_path):
    run = _python("from eggroll_np import _ext; print(_ext.core.num_threads())", tmp_path,
                  EGGROLL_NUM_THREADS=value)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert int(run.stdout) == (want or os.cpu_count())
