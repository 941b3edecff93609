"""Parameter trees: canonical flattening of nested dict/list/tuple trees, leaf paths and TreeSpec.

The canonical order (dicts by sorted key, lists and tuples in order, depth first) is normative: a
leaf's position in it is the `leaf` field of its noise counter (docs/noise-contract.md).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Union

import numpy as np

from .backend import as_array, dtype_name, is_cupy_array, namespace_of

__all__ = [
    "Path", "TreeSpec", "flatten", "unflatten", "leaf_paths", "path_str", "map_leaves",
    "check_params", "holds", "FLOAT_DTYPES", "LEAF_DTYPES",
]  # fmt: skip

Path = tuple[Union[str, int], ...]
"""A leaf path as a tuple of dict keys (str) and list/tuple positions (int), outermost first."""

# A tree's structure without its leaves, hashable and JSON-friendly once listified:
# None (a leaf), ("dict", keys, children), ("list", children) or ("tuple", children).
Structure = Any

FLOAT_DTYPES = ("float32", "float64")
"""The float dtypes a parameter leaf may have."""

LEAF_DTYPES = (*FLOAT_DTYPES, "int8")
"""Every dtype a parameter leaf may have (an int8 leaf is an integer leaf, docs/integer.md)."""


def path_str(path: Path | str) -> str:
    """'layers/0/W' for the path ('layers', 0, 'W'); strings pass through unchanged."""
    if isinstance(path, str):
        return path
    return "/".join(str(p) for p in path)


# Deeper nesting is a ValueError naming the path instead of a RecursionError (no model nests
# near this; the recursion below and json's stay far from Python's limit).
_MAX_DEPTH = 100


def _is_namedtuple(node: Any) -> bool:
    return isinstance(node, tuple) and isinstance(getattr(type(node), "_fields", None), tuple)


_CONTAINERS = (dict, list, tuple)
_KINDS = {"dict": dict, "list": list, "tuple": tuple}  # a structure's container types (`holds`)


def _flatten(
    node: Any, path: Path, leaves: list[Any], paths: list[Path], open_: set[int], name: str
) -> Structure:
    """The structure of container `node` at `path`; its leaves and their paths are appended
    to `leaves` and `paths` in canonical order."""
    if id(node) in open_:  # a container inside itself: flattening it would never end
        where = path_str(path) or "<root>"
        raise ValueError(f"{name} contains itself at '{where}' (a cycle of containers)")
    if len(path) >= _MAX_DEPTH:
        raise ValueError(
            f"{name} nests more than {_MAX_DEPTH} containers deep at '{path_str(path[:3])}/...'"
        )
    open_.add(id(node))
    is_dict = isinstance(node, dict)
    if is_dict:
        for key in node:
            if not isinstance(key, str):
                raise TypeError(
                    f"dict keys of a parameter tree must be str, got {key!r} at "
                    f"'{path_str(path) or '<root>'}'"
                )
            if "/" in key:
                raise ValueError(
                    f"dict key {key!r} at '{path_str(path) or '<root>'}' contains '/', "
                    "which separates the parts of a leaf path"
                )
        keys = tuple(sorted(node))
        items: Any = zip(keys, map(node.__getitem__, keys), strict=True)
    else:
        items = enumerate(node)
    children: list[Structure] = []
    for k, child in items:
        if isinstance(child, _CONTAINERS):
            children.append(_flatten(child, (*path, k), leaves, paths, open_, name))
        else:  # a leaf (most nodes of a tree): appended here, without a call of its own
            leaves.append(child)
            paths.append((*path, k))
            children.append(None)
    if is_dict:
        result = ("dict", keys, tuple(children))
    elif isinstance(node, list):
        result = ("list", tuple(children))
    elif _is_namedtuple(node):  # same canonical order as a tuple; the type comes back
        result = ("namedtuple", tuple(children), type(node))
    else:
        result = ("tuple", tuple(children))
    open_.discard(id(node))
    return result


def flatten(tree: Any, name: str = "the tree") -> tuple[list[Any], list[Path], Structure]:
    """Flatten a tree in canonical order.

    Args:
        tree: nested dict (str keys) / list / tuple (namedtuples included, ordered as tuples);
            anything else is a leaf.
        name: what `tree` is to the user ("params"), for error messages.

    Returns:
        (leaves, paths, structure): leaves and their paths in canonical order (leaf index =
        position), and the hashable structure that `unflatten` turns back into a tree.

    Raises:
        ValueError: a container that contains itself, or nesting deeper than 100 containers.
    """
    if not isinstance(tree, _CONTAINERS):
        return [tree], [()], None
    leaves: list[Any] = []
    paths: list[Path] = []
    structure = _flatten(tree, (), leaves, paths, set(), name)
    return leaves, paths, structure


def leaf_paths(tree: Any) -> list[str]:
    """The leaf paths of a tree as 'a/0/b' strings, in canonical order."""
    return [path_str(p) for p in flatten(tree)[1]]


def _build(s: Structure, leaves: Sequence[Any], used: list[int]) -> Any:
    # A module-level function, not a closure over `leaves`: a recursive closure is a reference
    # cycle that would keep every leaf alive until the garbage collector runs.
    if s is None:
        if used[0] == len(leaves):
            raise ValueError(f"fewer leaves ({len(leaves)}) than the structure has places for")
        used[0] += 1
        return leaves[used[0] - 1]
    if s[0] == "dict":
        return {k: _build(c, leaves, used) for k, c in zip(s[1], s[2], strict=True)}
    children = [_build(c, leaves, used) for c in s[1]]
    if s[0] == "list":
        return children
    return s[2](*children) if s[0] == "namedtuple" else tuple(children)


def unflatten(structure: Structure, leaves: Sequence[Any]) -> Any:
    """Rebuild a tree of `structure` (from `flatten`) from leaves in canonical order; a
    ValueError for fewer or more leaves than the structure has places for."""
    leaves = leaves if isinstance(leaves, (list, tuple)) else list(leaves)
    used = [0]
    tree = _build(structure, leaves, used)
    if used[0] != len(leaves):
        raise ValueError(
            f"more leaves ({len(leaves)}) than the structure has places for ({used[0]})"
        )
    return tree


def map_leaves(fn: Callable[[Any], Any], tree: Any) -> Any:
    """The tree with fn applied to each leaf (structure kept)."""
    leaves, _, structure = flatten(tree)
    return unflatten(structure, [fn(x) for x in leaves])


def _listify(s: Structure) -> Any:
    """JSON-friendly structure; a namedtuple is written as a plain tuple (its class is code)."""
    if s is None:
        return None
    if s[0] == "dict":
        return ["dict", list(s[1]), [_listify(c) for c in s[2]]]
    return ["tuple" if s[0] == "namedtuple" else s[0], [_listify(c) for c in s[1]]]


def _plain(s: Structure) -> Structure:
    """`s` with every namedtuple as a plain tuple (a checkpoint's structure)."""
    return _tuplify(_listify(s))


def _tuplify(s: Any) -> Structure:
    if s is None:
        return None
    if s[0] == "dict":
        return ("dict", tuple(s[1]), tuple(_tuplify(c) for c in s[2]))
    return (s[0], tuple(_tuplify(c) for c in s[1]))


@dataclass(frozen=True)
class TreeSpec:
    """Structure, leaf paths, shapes and dtypes of a parameter tree (what must not change).

    Attributes:
        structure: hashable tree structure (see `flatten`).
        paths: leaf paths in canonical order.
        shapes: leaf shapes.
        dtypes: leaf dtype names ("float32", "float64" or "int8").
    """

    structure: Structure
    paths: tuple[Path, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]

    @property
    def num_leaves(self) -> int:
        """Number of leaves."""
        return len(self.paths)

    # Both built once per spec (a frozen dataclass may cache in its __dict__): a fitness function
    # looks leaves up by path on every call, which must not cost O(number of leaves).
    @functools.cached_property
    def path_strings(self) -> tuple[str, ...]:
        """Leaf paths as 'a/0/b' strings."""
        return tuple(path_str(p) for p in self.paths)

    @functools.cached_property
    def _index(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self.path_strings)}

    def index(self, path: Path | str) -> int:
        """Leaf index of a path given as 'a/0/b' or ('a', 0, 'b'); ValueError if absent."""
        if type(path) is str:  # the common case (a layer call's names): one dict read
            i = self._index.get(path)
            if i is not None:
                return i
        if isinstance(path, list):
            path = tuple(path)
        if not isinstance(path, (str, tuple)):
            raise TypeError(
                f"path must be a str like 'a/0/b' or a tuple like ('a', 0, 'b'), got "
                f"{type(path).__name__}"
            )
        key = path_str(path)
        i = self._index.get(key)
        if i is None:
            shown = ", ".join(self.path_strings[:20])
            more = f", ... ({self.num_leaves} leaves)" if self.num_leaves > 20 else ""
            raise ValueError(
                f"path {key!r} is not a leaf of the parameter tree; leaves: {shown}{more}"
            )
        return i

    def unflatten(self, leaves: Sequence[Any]) -> Any:
        """A tree of this structure from leaves in canonical order."""
        return unflatten(self.structure, leaves)

    def difference(self, other: TreeSpec) -> str | None:
        """None if equal, else a sentence naming the first leaf (or the structure) that differs."""
        if self == other:
            return None
        if self.paths != other.paths:
            mine, theirs = set(self.path_strings), set(other.path_strings)
            missing = sorted(mine - theirs)
            extra = sorted(theirs - mine)
            parts = []
            if missing:
                parts.append(f"missing leaves {missing}")
            if extra:
                parts.append(f"unexpected leaves {extra}")
            return "tree structure changed: " + ("; ".join(parts) or "container types differ")
        for p, s0, s1, d0, d1 in zip(
            self.path_strings, self.shapes, other.shapes, self.dtypes, other.dtypes, strict=True
        ):
            if s0 != s1:
                return f"leaf '{p}' has shape {s1}, expected {s0}"
            if d0 != d1:
                return f"leaf '{p}' has dtype {d1}, expected {d0}"
        if _plain(self.structure) == _plain(other.structure):
            return None  # a namedtuple and a tuple in the same place: the same leaves, in order
        return "tree structure changed: container types differ (dict/list/tuple)"

    def to_json(self) -> str:
        """A JSON string that `from_json` turns back into an equal TreeSpec."""
        return json.dumps(
            {
                "structure": _listify(self.structure),
                "paths": [list(p) for p in self.paths],
                "shapes": [list(s) for s in self.shapes],
                "dtypes": list(self.dtypes),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> TreeSpec:
        """Inverse of `to_json`."""
        d = json.loads(text)
        shapes = tuple(tuple(int(n) for n in s) for s in d["shapes"])
        paths, dtypes = tuple(tuple(p) for p in d["paths"]), tuple(d["dtypes"])
        return cls(structure=_tuplify(d["structure"]), paths=paths, shapes=shapes, dtypes=dtypes)


def check_params(params: Any, name: str = "params") -> tuple[list[Any], TreeSpec, ModuleType]:
    """Flatten and validate a parameter tree.

    Every leaf must be a float32, float64 or int8 NumPy or CuPy array, all on one backend, or an
    array of another framework that exports DLPack (`backend.as_array`: adopted without a copy).
    An int8 leaf's entries must lie in [-127, 127] (docs/integer.md).

    Returns:
        (leaves, spec, xp): the leaves in canonical order, their TreeSpec, numpy or cupy.

    Raises:
        TypeError: a leaf that is not a float32/float64/int8 array (a masked array or np.matrix
            included), or leaves on different backends; the message names the leaf path.
        ValueError: no leaves, a cycle or too deep nesting (`flatten`), an int8 leaf at -128.
    """
    leaves, paths, structure = flatten(params, name)
    if not leaves:
        raise ValueError(f"{name} has no array leaves")
    xp = None
    shapes, dtypes = [], []
    for k, path in enumerate(paths):
        leaf = leaves[k]
        # A plain NumPy array (the common case) is neither to adopt nor a masked array/matrix.
        if type(leaf) is np.ndarray:
            leaf_xp = np
        else:
            leaf = leaves[k] = _array_leaf(leaf, _where(name, path))
            leaf_xp = namespace_of(leaf)
        dt = dtype_name(leaf.dtype)
        if dt not in LEAF_DTYPES:
            raise TypeError(
                f"{_where(name, path)} must have dtype float32, float64 or int8, got {leaf.dtype}"
            )
        if dt == "int8" and leaf.size and int(leaf.min()) < -127:
            raise ValueError(
                f"{_where(name, path)} is int8 and holds -128; integer leaves lie in [-127, 127] "
                "(clip it: np.clip(q, -127, 127))"
            )
        if xp is None:
            xp = leaf_xp
        elif leaf_xp is not xp:
            raise TypeError(
                f"{_where(name, path)} is a {leaf_xp.__name__} array but earlier leaves are "
                f"{xp.__name__} arrays; mixed NumPy/CuPy trees are not supported"
            )
        # a NumPy shape is already a tuple of ints; another array's is converted
        shapes.append(leaf.shape if leaf_xp is np else tuple(map(int, leaf.shape)))
        dtypes.append(dt)
    spec = TreeSpec(
        structure=structure, paths=tuple(paths), shapes=tuple(shapes), dtypes=tuple(dtypes)
    )
    return leaves, spec, xp


def holds(tree: Any, spec: TreeSpec, leaves: Sequence[Any]) -> bool:
    """True when `tree` has spec's containers (exact types) and these very NumPy arrays as its
    leaves, of spec's shapes and dtypes: `check_params` of such a tree would find them again."""
    found = [tree] if spec.structure is None else []
    if not (found or _holds(tree, spec.structure, found)) or len(found) != len(leaves):
        return False
    for a, b, sh, dt in zip(found, leaves, spec.shapes, spec.dtypes, strict=True):
        if a is not b or type(a) is not np.ndarray or a.shape != sh or dtype_name(a.dtype) != dt:
            return False
    return True


def _holds(node: Any, s: Structure, found: list[Any]) -> bool:
    """Appends node's children where s has leaves to `found`; False where a container's type,
    length or dict keys differ from s (a missing key reads None: never a leaf)."""
    subs = s[2] if s[0] == "dict" else s[1]
    kind = _KINDS.get(s[0]) or s[2]  # s[2]: a namedtuple's class
    if type(node) is not kind or len(node) != len(subs):
        return False
    for child, c in zip(map(node.get, s[1]) if kind is dict else node, subs, strict=True):
        if c is None:
            found.append(child)
        elif not _holds(child, c, found):
            return False
    return True


def _where(name: str, path: Path) -> str:
    """How errors name a leaf: "params leaf 'a/0/b'" (made only when one is raised)."""
    return f"{name} leaf '{path_str(path) or '<root>'}'"


def _array_leaf(leaf: Any, where: str) -> Any:
    """A leaf that is not a plain NumPy array as a NumPy/CuPy array (a DLPack array such as a
    torch or JAX one adopted), or a TypeError naming it (masked arrays and np.matrix too)."""
    leaf = as_array(leaf, where)
    if not (isinstance(leaf, np.ndarray) or is_cupy_array(leaf)):
        raise TypeError(
            f"{where} must be a float32, float64 or int8 NumPy/CuPy array, got "
            f"{type(leaf).__name__}"
        )
    if isinstance(leaf, (np.ma.MaskedArray, np.matrix)):  # the update would drop the mask
        raise TypeError(
            f"{where} is a {type(leaf).__module__}.{type(leaf).__name__}, which ES would turn "
            "into a plain array (a mask dropped silently); pass np.asarray(leaf) or, for a "
            "masked array, leaf.filled(value)"
        )
    return leaf
