"""The host emulator of the CUDA kernels (csrc/cuda/emulation): how to build it, and its cases.

One emulator, built one way ($CXX or c++, C++20, with AddressSanitizer/UBSan where available),
shared by test_cuda_emulation.py (noise and low-rank kernels vs NumPy) and test_cuda_layers.py
(the layers' epilogue cases, which check themselves).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "csrc" / "cuda" / "emulation" / "host_emulation.cpp"


def cuda_include() -> Path | None:
    """A directory holding cuda_runtime.h and cuda_fp16.h (the CUDA toolkit's headers)."""
    candidates = [os.environ.get(v) for v in ("CUDA_HOME", "CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(str(Path(nvcc).resolve().parents[1]))
    candidates += ["/usr/local/cuda", "/usr"]
    for c in candidates:
        if c and (Path(c) / "include" / "cuda_runtime.h").is_file():
            if (Path(c) / "include" / "cuda_fp16.h").is_file():
                return Path(c) / "include"
    return None


def compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")


def skip_reason() -> str | None:
    if not SOURCE.is_file():
        return f"{SOURCE} is not here (tests run outside a source checkout)"
    if compiler() is None:
        return "no host C++ compiler (c++/g++, or $CXX) to build the CUDA emulator"
    if cuda_include() is None:
        return "no CUDA headers (cuda_runtime.h) found via $CUDA_HOME, nvcc or /usr/local/cuda"
    return None


# AddressSanitizer and UBSan stand in for compute-sanitizer's memcheck: a kernel that reads or
# writes past a buffer (or shifts out of range) stops the emulator with a report.
_SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"]


def build(directory: Path) -> Path:
    """Compile the emulator into `directory`; pytest.skip where the compiler cannot do C++20."""
    exe = directory / "host_emulation"
    cmd = [
        compiler(), "-std=c++20", "-O1", "-ffp-contract=off", "-Wall",
        "-Wno-attributes", "-Wno-unknown-pragmas", f"-I{ROOT / 'csrc'}", f"-I{cuda_include()}",
        str(SOURCE), "-o", str(exe), "-lpthread",
    ]  # fmt: skip
    done = subprocess.run(cmd + _SANITIZE, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:  # no sanitizer runtime here: the plain build still checks values
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        if "c++20" in done.stderr or "<barrier>" in done.stderr:
            pytest.skip(f"the host compiler cannot build C++20 (<barrier>): {done.stderr[-300:]}")
        pytest.fail(f"building the CUDA emulator failed:\n{' '.join(cmd)}\n{done.stderr[-4000:]}")
    return exe


class Cases:
    """Writes a batch of emulator cases (cases.txt + raw inputs) and reads their outputs."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.lines: list[str] = []

    def put(self, name: str, **arrays: np.ndarray) -> None:
        for key, a in arrays.items():
            np.ascontiguousarray(a).tofile(self.dir / f"{name}.{key}.bin")

    def get(self, name: str, suffix: str, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
        return np.fromfile(self.dir / f"{name}.{suffix}.bin", dtype=dtype).reshape(shape)

    def run(self, exe: Path) -> str:
        (self.dir / "cases.txt").write_text("\n".join(self.lines) + "\n")
        cmd = [str(exe), str(self.dir)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
        return done.stdout


