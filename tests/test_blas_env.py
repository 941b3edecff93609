"""eggroll_np asks OpenBLAS's idle threads to sleep at once, whether NumPy was imported first or not."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_SHOW = "import os; print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'), _blas_env.applied)"


def _run(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("OPENBLAS_THREAD_TIMEOUT", "EGGROLL_NP_BLAS_SPIN")}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-P", "-c", code], capture_output=True, text=True, env=clean | env,
        check=True, timeout=120,
    )  # fmt: skip
    return done.stdout.strip()


@pytest.mark.parametrize(
    ("code", "env", "want"),
    [
        ("import eggroll_np; from eggroll_np import _blas_env; " + _SHOW, {}, "4 True"),
        ("import numpy, eggroll_np; from eggroll_np import _blas_env; " + _SHOW, {}, "4 True"),
        (
            "import eggroll_np; from eggroll_np import _blas_env; " + _SHOW,
            {"OPENBLAS_THREAD_TIMEOUT": "20"},
            "20 False",
        ),
        (
            "import eggroll_np; from eggroll_np import _blas_env; " + _SHOW,
            {"EGGROLL_NP_BLAS_SPIN": "1"},
            "None False",
        ),
    ],
    ids=["first-import", "numpy-first", "user-value", "opt-out"],
)
def test_thread_timeout_is_set_unless_the_user_chose(code, env, want):
    assert _run(code, **env) == want


def test_info_reports_the_setting():
    out = _run("from eggroll_np import sysinfo; print(sysinfo.format_info(sysinfo.system_info()))")
    assert "OPENBLAS_THREAD_TIMEOUT 4 (set by eggroll_np at import)" in out


# What the OpenBLAS that NumPy loaded reads now: its own accessor of the timeout, through ctypes.
_LOADED = (
    "import ctypes, os, numpy, eggroll_np; from eggroll_np import _blas_env; "
    "libs = _blas_env._loaded_openblas(); "
    "print(len(libs), len(_blas_env.restarted), *[ctypes.CDLL(p, mode=os.RTLD_NOLOAD)"
    ".openblas_thread_timeout() for p in libs])"
)


def test_numpy_first_openblas_rereads_the_timeout():
    # NumPy loaded OpenBLAS with the default (0: unset); importing eggroll_np afterwards makes
    # that same library read 4 and restart its threads with it.
    libs, restarted, *timeouts = _run(_LOADED).split()
    if libs == "0":
        pytest.skip("NumPy does not use a shared OpenBLAS here")
    assert restarted == libs
    assert timeouts == ["4"] * int(libs)


def test_numpy_first_opt_out_leaves_openblas_alone():
    libs, restarted, *timeouts = _run(_LOADED, EGGROLL_NP_BLAS_SPIN="1").split()
    if libs == "0":
        pytest.skip("NumPy does not use a shared OpenBLAS here")
    assert restarted == "0"
    assert timeouts == ["0"] * int(libs)


def test_numpy_first_blas_still_computes_and_obeys_thread_limits():
    code = (
        "import numpy as np, eggroll_np, threadpoolctl; a = np.arange(256.0).reshape(16, 16); "
        "r = a @ a; print(bool((r == np.einsum('ij,jk->ik', a, a)).all()), "
        "*(d['num_threads'] for d in threadpoolctl.threadpool_info() if d['user_api'] == 'blas'))"
    )
    pytest.importorskip("threadpoolctl")
    ok, *counts = _run(code).split()
    assert ok == "True" and counts and all(int(c) >= 1 for c in counts)


def test_info_reports_the_restart_when_numpy_came_first():
    out = _run(
        "import numpy; from eggroll_np import sysinfo; "
        "print(sysinfo.format_info(sysinfo.system_info()))"
    )
    if "openblas" not in out.lower():
        pytest.skip("NumPy does not use OpenBLAS here")
    assert "OPENBLAS_THREAD_TIMEOUT 4 (set by eggroll_np at import; OpenBLAS loaded before" in out
