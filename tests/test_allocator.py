"""The CPU allocator setting that ``clg-layers train`` and ``demo`` apply to their own process."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

_PROBE = "from clg_layers.tools.allocator import tune_allocator; print(tune_allocator())"


def _probe(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    clean.pop("CLG_LAYERS_TUNE_MALLOC", None)
    out = subprocess.run([sys.executable, "-c", _PROBE], env={**clean, **env}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")
def test_applies_on_glibc() -> None:
    assert _probe() == "True"


@pytest.mark.parametrize(
    "env",
    [
        {"CLG_LAYERS_TUNE_MALLOC": "0"},
        {"MALLOC_TRIM_THRESHOLD_": "131072"},
        {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"},
    ],
)
def test_leaves_a_chosen_setting_alone(env: dict[str, str]) -> None:
    assert _probe(**env) == "False"


def test_import_does_not_load_it() -> None:
    # The library never changes process-wide allocator settings: importing it does not even load the module.
    code = "import sys, clg_layers; print('clg_layers.tools.allocator' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_train_command_tunes_before_training(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from types import SimpleNamespace

    import clg_layers.training as training
    from clg_layers import cli
    from clg_layers.tools import allocator

    events: list[str] = []
    monkeypatch.setattr(allocator, "tune_allocator", lambda: events.append("tune") or True)

    def fake_train(config: object) -> SimpleNamespace:
        events.append("train")
        return SimpleNamespace(rank=0, metrics={}, steps=0, seconds=0.0, weights="w", last_checkpoint=None)

    monkeypatch.setattr(training, "train", fake_train)
    assert (
        cli.main(["train", "--model", "clginet-tiny", "--train", str(tmp_path), "--out", str(tmp_path)]) == 0
    )
    assert events == ["tune", "train"]
