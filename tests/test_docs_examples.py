"""The examples printed in docs/ run as printed: the quick start blocks, the CNN example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "docs" / "layers.md"
GETTING_STARTED = PAGE.with_name("getting-started.md")


def test_layers_page_cnn_example_runs_and_learns():
    pytest.importorskip("sklearn")
    text = PAGE.read_text(encoding="utf-8")
    match = re.search(r"<!-- docs-cnn-example -->\n```python\n(.*?)```", text, re.S)
    assert match, "docs/layers.md lost its CNN example block"
    code = match.group(1)
    assert len(code.strip().splitlines()) <= 13
    assert "for g in range(60):" in code
    code = code.replace("range(60)", "range(12)")  # the same loop, shorter for the test suite
    scope: dict = {}
    exec(compile(code, "docs/layers.md (CNN example)", "exec"), scope)
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
def test_quickstart_blocks_each_run_alone(block):
    text = GETTING_STARTED.read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- quickstart -->\n```python\n(.*?)```", text, re.S)
    assert len(blocks) == 2, "docs/getting-started.md lost a quick-start block"
    code = re.sub(r"range\(200\)", "range(3)", blocks[block])  # the same loop, shorter
    scope: dict = {}  # nothing from the other block: pasted alone, it must run
    exec(compile(code, f"docs/getting-started.md (quick start {block})", "exec"), scope)
    assert scope["state"].generation == 3
