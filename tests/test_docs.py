"""The Sphinx docs build with warnings as errors, and their code examples run (doctest builder).

Sphinx runs in a fresh process: other tests register their own zoo entries in this one, which
would change what the docs' examples print.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.parametrize("builder", ["html", "doctest"])
def test_docs_build(builder: str, tmp_path: Path) -> None:
    out = tmp_path / builder
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", builder, str(DOCS), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"sphinx-build -b {builder} failed:\n{result.stdout}\n{result.stderr}"
    if builder == "doctest":
        report = (out / "output.txt").read_text()
        assert "0 failures in tests" in report and " 0 tests" not in report
