"""Sphinx configuration of the eggroll_np documentation site (built as the README says)."""

from __future__ import annotations

import sys
from importlib.metadata import version as _version
from pathlib import Path

# Local extensions (docs/_ext): the docstring gate and the benchmark plots.
sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "eggroll_np"
author = "eggroll_np developers"
copyright = "eggroll_np developers"  # noqa: A001 - Sphinx's name for it
release = _version("eggroll_np")  # the INSTALLED package is what autodoc documents
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "docstring_gate",
    "benchplots",
]

source_suffix = {".md": "markdown"}
# `x` in docstrings is code (the docstrings use single backticks as Markdown does).
default_role = "literal"
root_doc = "index"
exclude_patterns = ["_build", "_generated_src", "Thumbs.db", ".DS_Store", "README.md"]
templates_path: list[str] = []

# Every reference must resolve: -W turns these warnings into a failed build.
nitpicky = True
# Names from libraries whose inventories are not fetched (the build is offline): numpy, cupy,
# the standard library's typing helpers. Anything of eggroll_np's own must resolve.
nitpick_ignore_regex = [
    (r"py:.*", r"(numpy|np|cupy|cp)(\..*)?"),
    (r"py:.*", r"(typing|collections\.abc|types|os|argparse|pathlib|dataclasses|enum)\..*"),
    (r"py:.*", r"(Any|Callable|Mapping|Sequence|Iterable|Iterator|ModuleType|PathLike|Path)"),
    (r"py:.*", r"(ray|torch|concurrent\.futures)(\..*)?"),
    (r"py:class", r"(optional|array-like|array|callable|ndarray)"),
    # Sphinx splits `Callable[[Any], dict[str, float]]` (training.workloads.Workload) at its comma
    # and looks up the fragment "dict[str" as a class.
    (r"py:class", r"dict\[str"),
]

# MyST: ```{directive}``` fences, ::: colon fences, definition lists, headings as link targets.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# autodoc: members in __all__ order, signatures with type hints, Google-style docstrings.
autodoc_default_options = {
    "members": True,
    "undoc-members": True,
    "member-order": "bysource",
    "show-inheritance": True,
}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True  # "Attributes:" as fields: the members themselves are documented once

# viewcode: source pages of the modules named on the pages; a type alias (tree.Path) must not send
# it to "builtins", which has no source to show.
viewcode_follow_imported_members = False

html_theme = "pydata_sphinx_theme"
html_title = f"eggroll_np {release}"
html_static_path: list[str] = []
html_last_updated_fmt = None
html_copy_source = False
html_show_sourcelink = False
# Offline site: no icon links (external images), no analytics, no version switcher JSON, no
# announcement fetched from a URL; the theme ships its fonts (Font Awesome) in _static.
html_theme_options = {
    "icon_links": [],
    "analytics": {},
    "navbar_align": "left",
    "header_links_before_dropdown": 4,
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "footer_start": ["copyright"],
    "footer_end": [],
    "secondary_sidebar_items": ["page-toc"],
    "check_switcher": False,
}
html_context = {"default_mode": "auto"}
# The section navigation only where a section has pages (the API reference); elsewhere it is empty.
html_sidebars = {"api/*": ["sidebar-nav-bs"], "*": []}

# docstring_gate: the modules whose `__all__` the API reference must cover, name by name.
api_package = "eggroll_np"
api_modules = [
    "eggroll_np",
    "eggroll_np.config",
    "eggroll_np.es",
    "eggroll_np.population",
    "eggroll_np.tree",
    "eggroll_np.noise",
    "eggroll_np.perturbation",
    "eggroll_np.layers",
    "eggroll_np.conv",
    "eggroll_np.epilogue",
    "eggroll_np.models.mlp",
    "eggroll_np.models.simple_cnn",
    "eggroll_np.shaping",
    "eggroll_np.gradient",
    "eggroll_np.optim",
    "eggroll_np.schedule",
    "eggroll_np.checkpoint",
    "eggroll_np.distributed",
    "eggroll_np.distributed.replica",
    "eggroll_np.backend",
    "eggroll_np.lowrank",
    "eggroll_np.intmath",
    "eggroll_np.intops",
    "eggroll_np.intlayers",
    "eggroll_np.intupdate",
    "eggroll_np.training.workloads",
    "eggroll_np.training.workloads.int_mlp",
    "eggroll_np.training.workloads.int_charlm",
    "eggroll_np.benchmarks.int_bench",
    "eggroll_np.benchmarks.reference",
    "eggroll_np.benchmarks.bench",
    "eggroll_np.cli.main",
    "eggroll_np.training.train",
    "eggroll_np.training.options",
    "eggroll_np.tuning",
    "eggroll_np.sysinfo",
]
