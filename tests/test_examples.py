"""Every script under examples/ runs (with fast settings)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_custom_network_example_learns() -> None:
    gain = _load("custom_network").main(["--steps", "60", "--size", "32"])
    assert gain > 0.5  # a fresh model is (close to) the identity (gain about 0); training must improve on it


def test_register_variant_example() -> None:
    info = _load("register_variant").main()
    assert info.name == "clginet-gray-wide" and info.in_chans == 1


def test_restore_image_example(tmp_path: Path) -> None:
    import numpy as np
    import torch
    from PIL import Image

    import clg_layers as cl

    model = cl.build("clginet-tiny")
    torch.nn.init.zeros_(model.head.weight)  # every block of a fresh model is the identity; a zero head
    torch.nn.init.zeros_(model.head.bias)  # makes the whole network the identity
    ckpt = cl.save_checkpoint(model, tmp_path / "t.safetensors")
    src = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(src)
    _load("restore_image").main(
        [str(src), str(tmp_path / "out.png"), "--checkpoint", str(ckpt), "--tile", "32", "--overlap", "8"]
    )
    # the model is the identity, so the restored image equals the input
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")), np.asarray(Image.open(src)))


def test_pnp_deblur_example_runs_fast(tmp_path: Path) -> None:
    import math

    import pytest

    pytest.importorskip("deepinv")
    figure = tmp_path / "pnp.png"
    argv = ["--steps", "2", "--size", "48", "--out", str(tmp_path / "run"), "--figure", str(figure)]
    result = _load("pnp_deblur").main(argv)
    assert result.steps == 2 and figure.is_file()
    assert all(math.isfinite(p) for p in (result.psnr_blurred, result.psnr_restored, result.psnr_no_prior))
    assert 10 < result.psnr_blurred < 40  # a blurred photo, not a blank or a copy
