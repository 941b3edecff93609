"""Tests of eggroll_np.tree: canonical flattening, paths, TreeSpec and leaf validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from eggroll_np import tree
from eggroll_np.tree import TreeSpec, check_params, flatten, leaf_paths, path_str, unflatten

from .engine_helpers import FakeGpuArray, patch_fake_cupy
from .strategies import param_trees


def _tree():
    z = np.zeros
    return {
        "layers": [{"W": z((3, 2), np.float32), "b": z(2, np.float32)}, (z(4),)],
        "emb": z((5, 3), np.float32),
    }


def test_canonical_order_sorted_keys_depth_first():
    assert leaf_paths(_tree()) == ["emb", "layers/0/W", "layers/0/b", "layers/1/0"]
    _, paths, _ = flatten(_tree())
    assert paths == [("emb",), ("layers", 0, "W"), ("layers", 0, "b"), ("layers", 1, 0)]


def test_dict_insertion_order_does_not_matter():
    a = {"b": np.ones(1), "a": np.zeros(1)}
    b = {"a": np.zeros(1), "b": np.ones(1)}
    assert leaf_paths(a) == leaf_paths(b) == ["a", "b"]
    assert flatten(a)[2] == flatten(b)[2]


def test_path_str():
    assert path_str(("layers", 0, "W")) == "layers/0/W"
    assert path_str("x/y") == "x/y"
    assert path_str(()) == ""


@settings(max_examples=50, deadline=None)
@given(param_trees())
def test_flatten_unflatten_roundtrip(t):
    leaves, paths, structure = flatten(t)
    back = unflatten(structure, leaves)
    leaves2, paths2, structure2 = flatten(back)
    assert paths2 == paths
    assert structure2 == structure
    assert all(x is y for x, y in zip(leaves, leaves2, strict=True))
    assert type(back) is type(t)


@settings(max_examples=50, deadline=None)
@given(param_trees())
def test_spec_json_roundtrip(t):
    _, spec, xp = check_params(t)
    assert xp is np
    assert TreeSpec.from_json(spec.to_json()) == spec
    for i, p in enumerate(spec.paths):
        assert spec.index(p) == i
        assert spec.index(path_str(p)) == i


def test_single_array_is_a_tree():
    _, spec, _ = check_params(np.zeros(3, np.float32))
    assert spec.paths == ((),)
    assert spec.index("") == 0


def test_map_leaves_keeps_structure():
    t = _tree()
    doubled = tree.map_leaves(lambda x: x + 1, t)
    assert leaf_paths(doubled) == leaf_paths(t)
    assert isinstance(doubled["layers"][1], tuple)
    assert np.all(doubled["emb"] == 1)


def test_unflatten_rejects_extra_leaves():
    _, _, s = flatten([np.zeros(1)])
    with pytest.raises(ValueError, match="more leaves"):
        unflatten(s, [np.zeros(1), np.zeros(1)])


def test_index_unknown_path_lists_leaves():
    _, spec, _ = check_params(_tree())
    with pytest.raises(ValueError, match="'nope'.*layers/0/W"):
        spec.index("nope")


@pytest.mark.parametrize(
    ("leaf", "what"),
    [
        (np.zeros(3, np.int32), "dtype"),
        (np.zeros(3, np.float16), "dtype"),
        (1.5, "float"),
        ([1.0, 2.0], "float"),  # a list is a container: its first item is the bad leaf
        (None, "NoneType"),
    ],
)
def test_bad_leaves_name_the_path(leaf, what):
    t = {"a": np.zeros(2, np.float32), "net": [np.zeros(1, np.float32), {"bad": leaf}]}
    where = "net/1/bad/0" if isinstance(leaf, list) else "net/1/bad"
    with pytest.raises(TypeError, match=f"'{where}'.*{what}"):
        check_params(t)


def test_bad_keys():
    with pytest.raises(TypeError, match="must be str"):
        flatten({1: np.zeros(1)})
    with pytest.raises(ValueError, match="contains '/'"):
        flatten({"a/b": np.zeros(1)})


def test_empty_tree_rejected():
    with pytest.raises(ValueError, match="no array leaves"):
        check_params({"a": []})


def test_mixed_backends_name_the_leaf(monkeypatch):
    patch_fake_cupy(monkeypatch)
    t = {"a": np.zeros(2, np.float32), "b": np.zeros(2, np.float32).view(FakeGpuArray)}
    with pytest.raises(TypeError, match="'b'.*mixed NumPy/CuPy"):
        check_params(t)


def test_difference_messages():
    _, spec, _ = check_params(_tree())
    t = _tree()
    t["emb"] = np.zeros((5, 4), np.float32)
    assert "'emb'" in spec.difference(check_params(t)[1])
    assert "shape" in spec.difference(check_params(t)[1])
    t = _tree()
    t["emb"] = t["emb"].astype(np.float64)
    assert "dtype" in spec.difference(check_params(t)[1])
    t = _tree()
    del t["emb"]
    assert "missing leaves ['emb']" in spec.difference(check_params(t)[1])
    t = _tree()
    t["layers"][1] = [np.zeros(4)]  # tuple -> list: same paths, other container
    assert "container" in spec.difference(check_params(t)[1])
    assert spec.difference(check_params(_tree())[1]) is None
