"""eggroll_np asks OpenBLAS's idle threads to sleep at once, only before NumPy loads OpenBLAS."""

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
        ("import numpy, eggroll_np; from eggroll_np import _blas_env; " + _SHOW, {}, "None False"),
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
def test_thread_timeout_is_set_only_before_openblas_loads(code, env, want):
    assert _run(code, **env) == want


def test_info_reports_the_setting():
    out = _run("from eggroll_np import sysinfo; print(sysinfo.format_info(sysinfo.system_info()))")
    assert "OPENBLAS_THREAD_TIMEOUT 4 (set by eggroll_np at import)" in out
