"""Sphinx configuration for clg-layers. Builds offline: no intersphinx, no remote assets."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

import clg_layers  # noqa: E402

project = "clg-layers"
author = "clg-layers developers"
copyright = "2026, clg-layers developers"
release = version = clg_layers.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_parser",
    "zoo_table",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "diagrams", "*_table.rst"]  # generated tables, only ever included
templates_path: list[str] = []

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
myst_heading_anchors = 2

# MathJax is loaded by the reader's browser; the build itself never touches the network.
html_theme = "furo"
html_title = f"clg-layers {release}"
html_static_path = ["_static"]

doctest_global_setup = """
import torch
import clg_layers
torch.manual_seed(0)
"""
suppress_warnings = ["myst.header"]  # the changelog is included below this page title
