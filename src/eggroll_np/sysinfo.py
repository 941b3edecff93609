"""What this installation runs on: version, extensions, SIMD level, CUDA device, BLAS."""

from __future__ import annotations

import os
import platform
from typing import Any

import numpy as np

from . import _blas_env, _ext, dispatch

__all__ = ["system_info", "format_info", "peak_rss_bytes"]


def peak_rss_bytes() -> int:
    """This process's peak resident memory in bytes, since it started (or last exec'd).

    Linux: VmHWM of /proc/self/status, the high-water mark of this process's own address
    space. Not getrusage's ru_maxrss: after fork + exec (multiprocessing's spawn) that also
    keeps the parent's size at the fork, so a small child would report a large parent's peak.
    Elsewhere: ru_maxrss (bytes on macOS, KiB on other systems).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # "VmHWM:   12345 kB"
    except OSError:
        pass
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss) if sys.platform == "darwin" else int(rss) * 1024


def _blas_info() -> list[dict[str, Any]]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        threadpool_info = None
    if threadpool_info is not None:
        return [
            {k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            for d in threadpool_info()
            if d.get("user_api") == "blas"
        ]
    try:  # numpy >= 1.25 reports the BLAS it was built against
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        return [{"internal_api": blas.get("name"), "version": blas.get("version")}]
    except Exception:  # noqa: BLE001 - old numpy: no machine-readable config
        return []


def system_info() -> dict[str, Any]:
    """A dict describing the installation (used by `eggroll-np info`)."""
    from . import __version__

    core = _ext.core
    info: dict[str, Any] = {
        "eggroll_np": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "core_extension": core is not None,
        "core_error": _ext.core_error,
        "simd_level": core.simd_level() if core is not None else None,
        "simd_forced": _ext.simd_forced,
        "threads": core.num_threads() if core is not None else None,
        "cuda_extension": _ext.cuda is not None,
        "cuda_error": _ext.cuda_error,
        "cuda_devices": [],
        "cuda_contract": _cuda_contract(),
        "blas": _blas_info(),
        "openblas_thread_timeout": os.environ.get(_blas_env.VARIABLE),
        "openblas_thread_timeout_set_by_eggroll_np": _blas_env.applied,
        "openblas_restarted_by_eggroll_np": list(_blas_env.restarted),
    }
    if _ext.cuda is not None:
        n = _ext.cuda_device_count()
        info["cuda_devices"] = [_ext.cuda.device_info(d) for d in range(n)]
    try:
        import cupy  # noqa: F401

        info["cupy"] = cupy.__version__
    except Exception:  # noqa: BLE001
        info["cupy"] = None
    return info


def _cuda_contract() -> str:
    """The update contraction a CuPy run would take (`dispatch.cuda_contract`), or the variable's
    bad value as set: info reports it, the run raises."""
    try:
        return dispatch.cuda_contract()
    except ValueError:
        return os.environ[dispatch.CUDA_CONTRACT]


def _simd_line(info: dict[str, Any]) -> str:
    if info["simd_level"] is None:
        return "none (NumPy reference path)"
    how = f"forced by {_ext.SIMD_ENV}" if info.get("simd_forced") else "best available"
    return f"{info['simd_level']} ({how})"


def format_info(info: dict[str, Any]) -> str:
    """Human-readable lines for `eggroll-np info`."""
    core = "loaded" if info["core_extension"] else f"MISSING: {info['core_error']}"
    lines = [
        f"eggroll_np      {info['eggroll_np']}",
        f"python          {info['python']} ({info['machine']})",
        f"numpy           {info['numpy']}",
        f"C++ core        {core}",
        f"SIMD level      {_simd_line(info)}",
        f"core threads    {info['threads']}",
    ]
    if info["cuda_extension"]:
        devs = info["cuda_devices"]
        if devs:
            desc = "; ".join(
                f"{d['name']} (sm_{d['compute_capability'][0]}{d['compute_capability'][1]})"
                for d in devs
            )
        else:
            desc = "built, but no CUDA device is usable here"
        lines.append(f"CUDA extension  {desc}")
        contract = info["cuda_contract"]
        bits = {"exact": "the C++ core's bits", "cublas": "cuBLAS's bits"}.get(
            contract, "not a setting: an update would raise ValueError"
        )
        lines.append(f"GPU update      {dispatch.CUDA_CONTRACT}={contract} ({bits})")
    else:
        lines.append(f"CUDA extension  not built ({info['cuda_error']})")
    lines.append(f"CuPy            {info['cupy'] or 'not installed'}")
    blas = info["blas"]
    if blas:
        for b in blas:
            desc = ", ".join(f"{k}={v}" for k, v in b.items() if v is not None)
            lines.append(f"BLAS            {desc}")
    else:
        lines.append("BLAS            unknown")
    timeout = info["openblas_thread_timeout"]
    set_here = info["openblas_thread_timeout_set_by_eggroll_np"]
    notes = ["set by eggroll_np at import"] if set_here else []
    if info.get("openblas_restarted_by_eggroll_np"):
        notes.append("OpenBLAS loaded before eggroll_np re-read it")
    who = f" ({'; '.join(notes)})" if notes else ""
    lines.append(f"OPENBLAS_THREAD_TIMEOUT {timeout if timeout is not None else 'unset'}{who}")
    return "\n".join(lines)
