"""The short examples in examples/ run as shipped (charlm_texts.py in a tiny mode), in a fresh
process, and learn.

Each run is a pure function of its seeds, so the thresholds sit well inside what the examples
print (README and the examples' docstrings quote those figures); a broken layer, update or API
change fails here instead of in a user's hands. The long-running train_*.py scripts are covered
by the workload tests (tests/test_workloads.py) through the same code.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(name: str, tmp_path: Path) -> str:
    # From a scratch directory, so that the installed package is imported, not a source tree.
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _floats(pattern: str, text: str) -> list[float]:
    found = [float(v) for v in re.findall(pattern, text)]
    assert found, f"no match for {pattern!r} in:\n{text[-2000:]}"
    return found


def test_quickstart_blackbox_reduces_the_loss(tmp_path):
    out = _run("quickstart_blackbox.py", tmp_path)
    ((loss, start),) = re.findall(r"loss ([0-9.]+) \(start ([0-9.]+)\)", out)
    assert float(loss) < 0.5 * float(start)


def test_quickstart_batched_fits_the_target(tmp_path):
    out = _run("quickstart_batched.py", tmp_path)
    # Before training V is zero, so the loss is mean(y^2), about 0.45 on this data.
    assert _floats(r"batched: loss ([0-9.]+)", out)[0] < 0.2


def test_cnn_digits_example_learns(tmp_path):
    pytest.importorskip("sklearn")
    out = _run("cnn_digits.py", tmp_path)
    assert _floats(r"final test accuracy ([0-9.]+)", out)[0] > 0.7  # chance is 0.1


def test_token_model_example_learns(tmp_path):
    out = _run("token_model.py", tmp_path)
    bits = _floats(r"([0-9.]+) bits per character", out)
    assert bits[-1] < bits[0] - 1.0  # more than one bit per character below the first score
    assert "member 0 continues:" in out


def test_digits_own_loop_example_learns(tmp_path):
    pytest.importorskip("sklearn")
    out = _run("digits_own_loop.py", tmp_path)
    assert _floats(r"final test accuracy ([0-9.]+)", out)[0] > 0.9


def test_charlm_texts_example_tiny_mode_and_reuse(tmp_path):
    """The evaluation over several texts, in a tiny mode (one text from Python's own source,
    2 generations): a Markdown table row with both baselines and a verdict; a second call reads
    the finished run back instead of training again."""
    args = ["--texts", "email-src", "--generations", "2", "--out", str(tmp_path / "texts")]

    def once() -> subprocess.CompletedProcess:
        done = subprocess.run(
            [sys.executable, str(EXAMPLES / "charlm_texts.py"), *args],
            cwd=tmp_path, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        return done

    first = once()
    (row,) = [line for line in first.stdout.splitlines() if line.startswith("| email-src |")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "Python source"
    assert cells[3] == "yes"  # tuned on
    unigram, bigram, bits = (float(c.strip("*")) for c in cells[4:7])
    assert bigram < unigram
    assert cells[7] == ("below" if bits < bigram else "NOT below") + " the bigram baseline"
    assert "train charlm" in first.stderr
    second = once()
    assert second.stdout == first.stdout
    assert "train charlm" not in second.stderr  # read back, not run again
