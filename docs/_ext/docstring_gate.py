"""Sphinx extension: every public name is in the API reference, with a docstring.

Two checks, both reported as warnings so that `sphinx-build -W` fails:
- after reading, every name in `__all__` of each module of `api_modules` must be documented on
  some page (as `module.name`, or as `eggroll_np.name` when the package re-exports it) and must
  carry a docstring (functions, classes, modules) or a `#:` doc comment (data);
- while autodoc renders, a public method or property without a docstring is reported too.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging

logger = logging.getLogger(__name__)

# Dataclass fields and plain attributes are described in their class's docstring; everything a
# user calls must carry its own.
GATED = {"class", "exception", "function", "method", "property", "classmethod", "staticmethod"}


def _check_rendered(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    if what in GATED and not name.endswith(".__init__") and not any(s.strip() for s in lines):
        logger.warning("%s %s has no docstring", what, name, type="eggroll", subtype="docstring")


def _has_doc(module: Any, name: str, obj: Any) -> bool:
    if inspect.ismodule(obj) or inspect.isclass(obj) or callable(obj):
        return bool(inspect.getdoc(obj))
    try:  # data: a `#:` comment or a string literal right after the assignment
        attr_docs = ModuleAnalyzer.for_module(module.__name__).find_attr_docs()
    except Exception:  # noqa: BLE001 - no source: nothing to find a comment in
        return False
    return any(line.strip() for line in attr_docs.get(("", name), []))


def _check_coverage(app: Sphinx, env: BuildEnvironment) -> None:
    documented = set(env.get_domain("py").objects)
    package = app.config.api_package
    top = importlib.import_module(package)
    for modname in app.config.api_modules:
        module = importlib.import_module(modname)
        names = getattr(module, "__all__", None)
        if names is None:
            logger.warning("%s has no __all__", modname, type="eggroll", subtype="api")
            continue
        for name in names:
            obj = getattr(module, name)
            targets = {f"{modname}.{name}"}
            if modname != package and getattr(top, name, None) is obj:
                targets.add(f"{package}.{name}")  # re-exported by the package: documented there
            if inspect.ismodule(obj):
                targets.add(obj.__name__)
            elif inspect.isclass(obj) or inspect.isfunction(obj):  # where it is defined
                targets.add(f"{obj.__module__}.{obj.__qualname__}")
            if not targets & documented:
                logger.warning(
                    "%s.%s is public (in __all__) but not in the API reference",
                    modname,
                    name,
                    type="eggroll",
                    subtype="api",
                )
            elif not _has_doc(module, name, obj) and name != "__version__":
                logger.warning(
                    "%s.%s has no docstring", modname, name, type="eggroll", subtype="docstring"
                )


def setup(app: Sphinx) -> dict[str, Any]:
    """Register `api_package`, `api_modules` and both checks (before napoleon rewrites them)."""
    app.add_config_value("api_package", "", "env")
    app.add_config_value("api_modules", [], "env")
    app.connect("autodoc-process-docstring", _check_rendered, priority=100)
    app.connect("env-check-consistency", _check_coverage)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
