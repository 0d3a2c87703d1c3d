"""Every script under examples/ runs (with fast settings)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):  # noqa: ANN202
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_custom_network_example_learns() -> None:
    gain = _load("custom_network").main(["--steps", "60", "--size", "32"])
    assert gain > 0.5  # a fresh model is the identity (gain 0); training must improve on it
