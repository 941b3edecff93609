"""The progress display: a few plain lines when the output is not a terminal."""

from __future__ import annotations

import io

import pytest

from eggroll_np.progress import LineProgress, progress


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


def test_an_interrupted_run_reports_where_it_stopped():
    out = io.StringIO()
    bar = progress(100, 0, enabled=True, file=out)
    for _ in range(37):
        bar.update()
    bar.close()
    assert out.getvalue().splitlines()[-1].startswith("generation 37/100 [37%]")


def test_disabled_progress_writes_nothing():
    out = io.StringIO()
    bar = progress(50, 0, enabled=False, file=out)
    for _ in range(50):
        bar.update()
    bar.close()
    assert out.getvalue() == ""
