"""Denoising demo: train ``clginet-tiny`` on photos bundled with scikit-image, evaluate on held-out ones.

Everything it needs ships inside installed packages: scikit-image's bundled
photos load offline. Run ``clg-layers demo`` or ``python examples/denoise_demo.py``.
It trains with :func:`clg_layers.training.train`, the project's one training loop.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["HELD_OUT_IMAGES", "TRAIN_IMAGES", "DemoResult", "load_photo", "main", "run_demo"]

#: Bundled scikit-image photos the demo trains on (all load offline).
TRAIN_IMAGES: tuple[str, ...] = (
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "stereo_motorcycle",
    "retina",
)
#: Bundled photos the demo never trains on; PSNR/SSIM are reported on these.
HELD_OUT_IMAGES: tuple[str, ...] = ("astronaut", "chelsea")


def load_photo(name: str) -> torch.Tensor:
    """Load a photo bundled with scikit-image as a ``(3, H, W)`` float tensor in ``[0, 1]``.

    Args:
        name: A name from :data:`TRAIN_IMAGES` or :data:`HELD_OUT_IMAGES`.

    Returns:
        Tensor of shape ``(3, H, W)``.
    """
    try:
        from skimage import data
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ImportError("the demo needs scikit-image: pip install 'clg-layers[demo]'") from err
    if name not in TRAIN_IMAGES + HELD_OUT_IMAGES:
        raise ValueError(f"demo: unknown photo {name!r}; choose from {TRAIN_IMAGES + HELD_OUT_IMAGES}")
    img = getattr(data, name)()
    if name == "stereo_motorcycle":
        img = img[0]  # (left, right, disparity): the right view nearly repeats the left
    arr = np.asarray(img, dtype=np.float32)
    if arr.max() > 1.0:
        arr = arr / 255.0
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(arr[..., :3])).permute(2, 0, 1).contiguous()


@dataclass
class DemoResult:
    """What the demo measured."""

    steps: int
    train_seconds: float
    psnr_noisy: float
    psnr_restored: float
    ssim_noisy: float
    ssim_restored: float
    checkpoint: Path
    figure: Path

    @property
    def psnr_gain(self) -> float:
        """Restored minus noisy PSNR on the held-out photos, in dB."""
        return self.psnr_restored - self.psnr_noisy


def _save_figure(rows: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], path: Path, crop: int) -> None:
    """Write a PNG: one row per held-out photo, noisy | restored | clean (a centre crop of each)."""
    from PIL import Image, ImageDraw

    tiles = []
    for noisy, restored, clean in rows:
        _, h, w = clean.shape
        s = min(crop, h, w)
        y, x = (h - s) // 2, (w - s) // 2
        panel = torch.cat([t[:, y : y + s, x : x + s].clamp(0, 1) for t in (noisy, restored, clean)], dim=-1)
        tiles.append(panel)
    width = max(t.shape[-1] for t in tiles)
    canvas = torch.ones(3, sum(t.shape[-2] for t in tiles) + 24, width)
    y = 24
    for t in tiles:
        canvas[:, y : y + t.shape[-2], : t.shape[-1]] = t
        y += t.shape[-2]
    img = Image.fromarray((canvas.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    third = tiles[0].shape[-1] // 3
    for i, label in enumerate(("noisy", "restored (clginet-tiny)", "clean")):
        draw.text((i * third + 6, 6), label, fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def run_demo(
    *,
    minutes: float = 5.0,
    steps: int | None = None,
    sigma: float = 25.0,
    batch: int = 8,
    crop: int = 64,
    lr: float = 2e-3,
    out_dir: str | Path = "runs/denoise-demo",
    seed: int = 0,
    eval_max_side: int | None = None,
    progress: bool = True,
) -> DemoResult:
    """Train ``clginet-tiny`` to remove Gaussian noise and evaluate it on held-out photos.

    Args:
        minutes: Training time budget (ignored when ``steps`` is given).
        steps: Exact number of training steps (reproducible runs, tests).
        sigma: Noise standard deviation on the 0–255 scale.
        batch: Crops per training step.
        crop: Side of the square training crops.
        lr: Peak AdamW learning rate (cosine decay to zero over the budget).
        out_dir: Where the checkpoint and the figure are written.
        seed: Seed for the crops, the noise and the initialisation.
        eval_max_side: Downscale held-out photos so their longer side is at
            most this (faster evaluation); ``None`` keeps them whole.
        progress: Show a progress bar (tqdm).

    Returns:
        A :class:`DemoResult` with the held-out PSNR/SSIM before and after
        (torchmetrics; the EMA weights are evaluated and saved).

    Training is :func:`clg_layers.training.train` (PyTorch Lightning), the same
    code as ``clg-layers train --task denoise``.
    """
    if steps is None and not minutes > 0:
        raise ValueError(f"demo: `minutes` must be > 0, got {minutes}")
    if steps is not None and steps < 1:
        raise ValueError(f"demo: `steps` must be >= 1, got {steps}")
    try:
        from .training import TrainConfig, evaluate, train
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            f"the demo trains with the training extra: pip install 'clg-layers[demo]' ({err})"
        ) from err
    from .data import GaussianNoise, SyntheticPairs, ValidationPairs

    out_dir = Path(out_dir)
    noise = GaussianNoise(sigma)
    train_data = SyntheticPairs([load_photo(n) for n in TRAIN_IMAGES], noise)
    held_out = ValidationPairs(
        SyntheticPairs([load_photo(n) for n in HELD_OUT_IMAGES], noise), max_side=eval_max_side, seed=seed + 1
    )
    config = TrainConfig(
        model="clginet-tiny",
        task="denoise",
        max_steps=steps,
        max_minutes=None if steps is not None else minutes,
        accelerator="cpu",
        out=str(out_dir),
        patch=crop,
        batch=batch,
        lr=lr,
        weight_decay=1e-4,
        min_lr_ratio=0.0,
        checkpoint_every=0,
        val_every=0,
        seed=seed,
        progress=progress,
        export_name="clginet-tiny-denoise.safetensors",
    )
    result = train(config, train_data=train_data)
    rows: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    report = evaluate(result.model, held_out, on_image=lambda _n, x, y, t: rows.append((x, y, t)))
    figure = out_dir / "denoise_demo.png"
    _save_figure(rows, figure, crop=256)
    return DemoResult(
        result.steps,
        result.seconds,
        report.mean_psnr_input,
        report.mean_psnr,
        report.mean_ssim_input,
        report.mean_ssim,
        result.weights,
        figure,
    )


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add the demo's options to ``parser`` (or a new one)."""
    parser = parser or argparse.ArgumentParser(prog="clg-layers demo", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="training time budget (default: 5)")
    parser.add_argument("--steps", type=int, default=None, help="exact number of steps (overrides --minutes)")
    parser.add_argument(
        "--sigma", type=float, default=25.0, help="noise level on the 0-255 scale (default: 25)"
    )
    parser.add_argument("--batch", type=int, default=8, help="crops per step (default: 8)")
    parser.add_argument("--crop", type=int, default=64, help="training crop size (default: 64)")
    parser.add_argument(
        "--out", default="runs/denoise-demo", help="output folder (default: runs/denoise-demo)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-max-side", type=int, default=None, help="downscale held-out photos for speed")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None, args: argparse.Namespace | None = None) -> int:
    """Run the demo from the command line; returns the exit code."""
    if args is None:
        args = build_parser().parse_args(argv)
    threads = torch.get_num_threads()
    print(
        f"Training clginet-tiny to remove Gaussian noise (sigma={args.sigma:g}) on {len(TRAIN_IMAGES)} "
        f"bundled photos; held out: {', '.join(HELD_OUT_IMAGES)}. torch threads: {threads}."
    )
    try:
        result = run_demo(
            minutes=args.minutes,
            steps=args.steps,
            sigma=args.sigma,
            batch=args.batch,
            crop=args.crop,
            out_dir=args.out,
            seed=args.seed,
            eval_max_side=args.eval_max_side,
            progress=not args.no_progress,
        )
    except ValueError as err:
        print(f"error: {err}")
        return 2
    print(f"trained {result.steps} steps in {result.train_seconds:.0f} s")
    print(
        f"held-out PSNR: noisy {result.psnr_noisy:.2f} dB -> restored {result.psnr_restored:.2f} dB "
        f"({result.psnr_gain:+.2f} dB)"
    )
    print(f"held-out SSIM: noisy {result.ssim_noisy:.4f} -> restored {result.ssim_restored:.4f}")
    print(f"checkpoint: {result.checkpoint}")
    print(f"figure (noisy | restored | clean): {result.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
