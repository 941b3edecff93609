"""The README's population-layer example runs as printed and learns."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_cnn_example_runs_and_learns():
    pytest.importorskip("sklearn")
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- readme-cnn-example -->\n```python\n(.*?)```", text, re.S)
    assert match, "README lost its CNN example block"
    code = match.group(1)
    assert len(code.strip().splitlines()) <= 13
    assert "for g in range(60):" in code
    code = code.replace("range(60)", "range(12)")  # the same loop, shorter for the test suite
    scope: dict = {}
    exec(compile(code, "README.md (CNN example)", "exec"), scope)
    fitness, state, params, egg, X, y = (
        scope[k] for k in ("fitness", "state", "params", "egg", "X", "y")
    )
    assert state.generation == 12
    # The trained CNN's population classifies held digits above chance (0.1); a run is a pure
    # function of its seeds, so this is the same number on every run.
    acc = fitness(egg.ask(params, state), X[:400], y[:400])
    assert acc.shape == (128,)
    assert float(acc.mean()) > 0.15


@pytest.mark.parametrize("block", [0, 1], ids=["blackbox", "batched"])
def test_readme_quickstart_blocks_each_run_alone(block):
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- readme-quickstart -->\n```python\n(.*?)```", text, re.S)
    assert len(blocks) == 2, "README lost a quick-start block"
    code = re.sub(r"range\(200\)", "range(3)", blocks[block])  # the same loop, shorter
    scope: dict = {}  # nothing from the other block: pasted alone, it must run
    exec(compile(code, f"README.md (quick start {block})", "exec"), scope)
    assert scope["state"].generation == 3
