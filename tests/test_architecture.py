"""The package's shape, read from the INSTALLED sources (so a wheel is checked too): the engine
imports no tool, engine modules import in the layer order of docs/architecture.md, no import
cycle anywhere, and no module over 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import eggroll_np
from eggroll_np import dispatch

PACKAGE = Path(eggroll_np.__file__).resolve().parent

#: The tools: subpackages (and the deprecated module entry point) the engine never imports.
TOOLS = ("benchmarks", "training", "models", "distributed", "gpu", "cli", "gpu_check", "__main__")

#: The engine's import layers (docs/architecture.md, "Import order"): a module imports only
#: modules of EARLIER layers, at the top or inside a function. A new engine module is placed here.
ENGINE_LAYERS: list[list[str]] = [
    ["_blas_env", "backend", "_ext", "_reference", "_files", "_startup"],
    ["_checks", "tree", "dispatch", "_array_cache", "intmath", "_npz"],
    ["schedule", "shaping", "_optimizers", "lowrank", "noise", "_cuda_ops", "_cuda_layers",
     "_cuda_int8", "tuning", "sysinfo", "intops"],
    ["noise_table", "optim", "epilogue"],
    ["config", "layers", "_checkpoint_formats"],
    ["perturbation", "conv", "intlayers", "fused_linear", "state"],
    ["gradient", "population", "intupdate", "_update_checks"],
    ["evaluate"],
    ["es"],
    ["checkpoint"],
    ["__init__"],
]  # fmt: skip

MAX_LINES = 400


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(module: str) -> set[str]:
    """eggroll_np modules that `module` imports anywhere (top level or in a function), without
    the packages above it (initialised before it anyway)."""
    path = MODULES[module]
    here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + [node.module or ""]).strip(".")
            elif (node.module or "").split(".")[0] == "eggroll_np":
                base = node.module
            else:
                continue
            subs = {f"{base}.{a.name}" for a in node.names} & MODULES.keys()
            found |= subs or {_owner(base)}
        elif isinstance(node, ast.Import):
            found |= {_owner(a.name) for a in node.names if a.name.split(".")[0] == "eggroll_np"}
    return {m for m in found if m != module and not module.startswith(m + ".")}


def _owner(name: str) -> str:
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _engine(module: str) -> bool:
    parts = module.split(".")
    return len(parts) <= 2 and (len(parts) == 1 or parts[1] not in TOOLS)


def _short(module: str) -> str:
    return module.split(".", 1)[1] if "." in module else "__init__"


def test_every_engine_module_has_a_layer():
    placed = [m for layer in ENGINE_LAYERS for m in layer]
    assert len(placed) == len(set(placed))
    engine = sorted(_short(m) for m in MODULES if _engine(m))
    assert sorted(placed) == engine, "place new engine modules in ENGINE_LAYERS (and the docs)"


def test_engine_modules_import_only_earlier_layers_and_no_tool():
    layer_of = {m: j for j, layer in enumerate(ENGINE_LAYERS) for m in layer}
    wrong = []
    for module in filter(_engine, MODULES):
        for dep in sorted(_imports(module)):
            if not _engine(dep):
                wrong.append(f"{module} imports the tool {dep}")
            elif layer_of[_short(dep)] >= layer_of[_short(module)]:
                wrong.append(f"{module} (layer {layer_of[_short(module)]}) imports {dep} "
                             f"(layer {layer_of[_short(dep)]})")  # fmt: skip
    assert wrong == []


def test_dispatch_rows_name_engine_modules_only():
    # The table resolves its rows by name at call time (the one place the engine refers to a
    # later layer): those names must still be engine modules.
    for key, row in dispatch.ROWS.items():
        module = row.impl.split(":")[0]
        if module in ("_core", "_cuda"):
            continue
        assert module in MODULES and _engine(module), (key, row.impl)


def test_no_import_cycle_anywhere():
    graph = {m: _imports(m) for m in MODULES}
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                pytest.fail("import cycle: " + " -> ".join([*path[path.index(d):], m, d]))
            if d not in state:
                visit(d, [*path, m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_no_module_is_over_400_lines():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, "split these modules by concern"
