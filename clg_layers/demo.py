"""Denoising demo: train ``clginet-tiny`` on photos bundled with scikit-image, evaluate on held-out ones.

Everything it needs ships inside installed packages: scikit-image's bundled
photos load offline. Run ``clg-layers demo`` or ``python examples/denoise_demo.py``.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .models import build, save_checkpoint

__all__ = ["DemoResult", "HELD_OUT_IMAGES", "TRAIN_IMAGES", "load_photo", "main", "run_demo"]

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


def _random_crops(images: Sequence[torch.Tensor], n: int, size: int, g: torch.Generator) -> torch.Tensor:
    crops = []
    for _ in range(n):
        img = images[int(torch.randint(len(images), (1,), generator=g))]
        _, h, w = img.shape
        y = int(torch.randint(h - size + 1, (1,), generator=g))
        x = int(torch.randint(w - size + 1, (1,), generator=g))
        crop = img[:, y : y + size, x : x + size]
        if torch.rand(1, generator=g) < 0.5:
            crop = crop.flip(-1)
        if torch.rand(1, generator=g) < 0.5:
            crop = crop.flip(-2)
        crops.append(crop)
    return torch.stack(crops)


def _metrics(restored: torch.Tensor, clean: torch.Tensor) -> tuple[float, float]:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    a = restored.clamp(0, 1).permute(1, 2, 0).numpy()
    b = clean.permute(1, 2, 0).numpy()
    return (
        float(peak_signal_noise_ratio(b, a, data_range=1.0)),
        float(structural_similarity(b, a, data_range=1.0, channel_axis=-1)),
    )


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
        A :class:`DemoResult` with the held-out PSNR/SSIM before and after.
    """
    if steps is None and not minutes > 0:
        raise ValueError(f"demo: `minutes` must be > 0, got {minutes}")
    if steps is not None and steps < 1:
        raise ValueError(f"demo: `steps` must be >= 1, got {steps}")
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    out_dir = Path(out_dir)
    train = [load_photo(n) for n in TRAIN_IMAGES]
    model = build("clginet-tiny")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    noise = sigma / 255.0
    budget = float(steps) if steps is not None else minutes * 60.0
    bar = tqdm(
        total=steps if steps is not None else round(budget),
        unit="step" if steps is not None else "s",
        desc="training clginet-tiny",
        disable=not progress,
    )
    start = time.perf_counter()
    done, loss_avg = 0, None
    while True:
        elapsed = time.perf_counter() - start
        frac = done / budget if steps is not None else elapsed / budget
        if frac >= 1.0:
            break
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * frac))
        clean = _random_crops(train, batch, crop, g)
        noisy = clean + noise * torch.randn(clean.shape, generator=g)
        loss = F.l1_loss(model(noisy), clean)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done += 1
        loss_avg = loss.item() if loss_avg is None else 0.95 * loss_avg + 0.05 * loss.item()
        bar.set_postfix(step=done, l1=f"{loss_avg:.4f}", refresh=False)
        bar.update(1 if steps is not None else round(time.perf_counter() - start) - bar.n)
    bar.close()
    train_seconds = time.perf_counter() - start

    model.eval()
    rows, scores = [], []
    eg = torch.Generator().manual_seed(seed + 1)
    for name in HELD_OUT_IMAGES:
        clean = load_photo(name)
        if eval_max_side is not None and max(clean.shape[-2:]) > eval_max_side:
            scale = eval_max_side / max(clean.shape[-2:])
            clean = F.interpolate(clean[None], scale_factor=scale, mode="area")[0]
        noisy = clean + noise * torch.randn(clean.shape, generator=eg)
        with torch.inference_mode():
            restored = model(noisy[None])[0]
        scores.append((*_metrics(noisy, clean), *_metrics(restored, clean)))
        rows.append((noisy, restored, clean))
    psnr_n, ssim_n, psnr_r, ssim_r = (float(np.mean(v)) for v in zip(*scores))
    checkpoint = save_checkpoint(model, out_dir / "clginet-tiny-denoise.safetensors")
    figure = out_dir / "denoise_demo.png"
    _save_figure(rows, figure, crop=256)
    return DemoResult(done, train_seconds, psnr_n, psnr_r, ssim_n, ssim_r, checkpoint, figure)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add the demo's options to ``parser`` (or a new one)."""
    parser = parser or argparse.ArgumentParser(prog="clg-layers demo", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="training time budget (default: 5)")
    parser.add_argument("--steps", type=int, default=None, help="exact number of steps (overrides --minutes)")
    parser.add_argument("--sigma", type=float, default=25.0, help="noise level on the 0-255 scale (default: 25)")
    parser.add_argument("--batch", type=int, default=8, help="crops per step (default: 8)")
    parser.add_argument("--crop", type=int, default=64, help="training crop size (default: 64)")
    parser.add_argument("--out", default="runs/denoise-demo", help="output folder (default: runs/denoise-demo)")
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
    print(f"held-out PSNR: noisy {result.psnr_noisy:.2f} dB -> restored {result.psnr_restored:.2f} dB "
          f"({result.psnr_gain:+.2f} dB)")
    print(f"held-out SSIM: noisy {result.ssim_noisy:.4f} -> restored {result.ssim_restored:.4f}")
    print(f"checkpoint: {result.checkpoint}")
    print(f"figure (noisy | restored | clean): {result.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
