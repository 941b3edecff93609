"""Checkpoints whose meta JSON a hostile editor nested deeply, or gave an eps that is 0 in the
leaves' dtype: `load` refuses them with a ValueError naming the file (issue 25)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import numpy as np
import pytest

import eggroll_np as egg

_DEEP = "[" * 100_000 + "]" * 100_000


def _saved(tmp_path) -> str:
    p = {"W": np.zeros((4, 3), np.float32), "b": np.zeros(3, np.float32)}
    path = tmp_path / "c.npz"
    egg.save(path, p, egg.init(p, population=8))
    return path


def _rewrite(path, edit: Callable[[str], str]) -> None:
    """Replace the checkpoint's meta JSON text by edit(text), the arrays kept."""
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    text = edit(arrays["meta"].tobytes().decode())
    arrays["meta"] = np.frombuffer(text.encode(), np.uint8)
    np.savez(path, **arrays)


def _refused(path, match: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(str(path))) + ".*" + match):
        egg.load(path)


def test_deeply_nested_meta_json_names_the_file(tmp_path):
    path = _saved(tmp_path)
    _rewrite(path, lambda text: text[:-1] + ', "extra": ' + _DEEP + "}")
    _refused(path, r"'meta' JSON nests too deeply")


def test_deeply_nested_info_names_the_file(tmp_path):
    path = _saved(tmp_path)
    _rewrite(path, lambda text: text.replace('"info": {}', '"info": {"a": ' + _DEEP + "}"))
    _refused(path, r"'meta' JSON nests too deeply")


@pytest.mark.parametrize("depth", [150, 400, 3000])
def test_deeply_nested_spec_structure_names_the_file(tmp_path, depth):
    path = _saved(tmp_path)

    def deep_spec(text: str) -> str:
        meta = json.loads(text)
        # a list inside a list ... around one leaf, written as JSON text (json.dumps recurses)
        structure = '["list", [' * depth + "null" + "]]" * depth
        meta["spec"] = (
            '{"structure": ' + structure + ', "paths": [[' + ", ".join(["0"] * depth) + "]], "
            '"shapes": [[3]], "dtypes": ["float32"]}'
        )
        meta["config"]["kinds"] = ["full"]
        return json.dumps(meta)

    _rewrite(path, deep_spec)
    _refused(path, r"'spec' (JSON|structure) nests too deeply|'spec' structure is not a param")


def test_an_eps_that_is_zero_in_float32_is_refused_by_load(tmp_path):
    path = _saved(tmp_path)

    def tiny_eps(text: str) -> str:
        meta = json.loads(text)
        meta["config"]["hyperparams"]["eps"] = 1e-50
        return json.dumps(meta)

    _rewrite(path, tiny_eps)
    _refused(path, r"eps=1e-50 is 0 in float32")
