"""The Sphinx docs build with warnings as errors, and their code examples run (doctest builder)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sphinx.cmd.build import build_main

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.parametrize("builder", ["html", "doctest"])
def test_docs_build(builder: str, tmp_path: Path) -> None:
    out = tmp_path / builder
    status = build_main(["-W", "--keep-going", "-q", "-b", builder, str(DOCS), str(out)])
    assert status == 0, f"sphinx-build -b {builder} failed (see the warnings above)"
    if builder == "doctest":
        report = (out / "output.txt").read_text()
        assert "0 failures in tests" in report and " 0 tests" not in report
