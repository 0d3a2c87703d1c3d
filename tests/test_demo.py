"""The denoising demo runs end to end (a few steps) and writes what it promises."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

import clg_layers as cl
from clg_layers.demo import HELD_OUT_IMAGES, TRAIN_IMAGES, load_photo, run_demo


def test_bundled_photos_load_offline_and_are_disjoint() -> None:
    assert not set(TRAIN_IMAGES) & set(HELD_OUT_IMAGES)
    for name in TRAIN_IMAGES + HELD_OUT_IMAGES:
        img = load_photo(name)
        assert img.ndim == 3 and img.shape[0] == 3 and 0.0 <= float(img.min()) and float(img.max()) <= 1.0


def test_demo_runs_and_writes_outputs(tmp_path: Path) -> None:
    result = run_demo(steps=3, batch=2, crop=32, out_dir=tmp_path, eval_max_side=96, progress=False)
    assert result.steps == 3
    assert 15 < result.psnr_noisy < 25  # sigma = 25 on [0, 255] is about 20 dB
    assert np.isfinite([result.psnr_restored, result.ssim_noisy, result.ssim_restored]).all()
    fig = Image.open(result.figure)
    assert fig.size[0] >= 3 * 64  # noisy | restored | clean side by side
    model = cl.build("clginet-tiny", checkpoint=result.checkpoint)
    assert model.in_chans == 3
