"""The progress display: a few plain lines when the output is not a terminal."""

from __future__ import annotations

import io

import pytest

from eggroll_np.training.progress import LineProgress, progress


@pytest.mark.parametrize(("total", "initial"), [(1000, 0), (7, 0), (1000, 450), (1, 0)])
def test_line_progress_prints_about_ten_lines(total, initial):
    out = io.StringIO()
    bar = progress(total, initial, enabled=True, file=out)
    assert isinstance(bar, LineProgress)
    for _ in range(total - initial):
        bar.set_postfix(mean="1.5")
        bar.update()
    bar.close()
    bar.close()  # idempotent
    lines = out.getvalue().splitlines()
    assert 1 <= len(lines) <= 11
    assert "\r" not in out.getvalue()
    assert lines[-1].startswith(f"generation {total}/{total} [100%]")
    assert lines[-1].endswith("(mean=1.5)")


def _output(total, steps, enabled=True):
    out = io.StringIO()
    bar = progress(total, 0, enabled=enabled, file=out)
    for _ in range(steps):
        bar.update()
    bar.close()
    return out.getvalue()


def test_an_interrupted_run_reports_where_it_stopped():
    assert _output(100, 37).splitlines()[-1].startswith("generation 37/100 [37%]")


def test_disabled_progress_writes_nothing():
    assert _output(50, 50, enabled=False) == ""
