"""Train clginet-tiny for the paper's three tasks on bundled photos; write metrics, curves and
before/after images.

Trains on scikit-image's bundled ``TRAIN_IMAGES`` with synthesised
degradations (Gaussian noise σ=25, motion blur, rain streaks) and validates on
the held-out ``HELD_OUT_IMAGES`` (never trained on), through
``clg_layers.training.train`` (the same code as ``clg-layers train``).
Writes into ``--out`` (default ``docs/_static/training/``):

* ``metrics.csv``: task, steps, minutes, held-out PSNR/SSIM before and after;
* ``curves.png``: training loss and held-out PSNR against the step (needs matplotlib);
* ``TASK_before_after.png``: degraded | restored | clean, per task.

    python benchmarks/train_tasks.py --steps 150 --deblur-steps 300
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from clg_layers.data import SyntheticPairs, ValidationPairs
from clg_layers.demo import HELD_OUT_IMAGES, TRAIN_IMAGES, load_photo
from clg_layers.io import ImageData, write_image
from clg_layers.training import TrainConfig, evaluate, make_degradation, train

OPTIONS = {
    "denoise": {"sigma": 25.0},
    "deblur": {"length": [5.0, 11.0], "curvature": 0.5},
    "derain": {"density": [0.005, 0.02]},
}


def small(img: torch.Tensor, side: int) -> torch.Tensor:
    return F.interpolate(img[None], scale_factor=side / max(img.shape[-2:]), mode="area")[0]


def read_log(path: Path) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    loss, psnr = [], []
    with path.open() as f:
        for row in csv.DictReader(f):
            if row.get("train/loss"):
                loss.append((int(row["step"]), float(row["train/loss"])))
            if row.get("val/psnr"):
                psnr.append((int(row["step"]), float(row["val/psnr"])))
    return loss, psnr


def plot(logs: dict[str, tuple[list, list, float]], path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        print("matplotlib not installed: no curves.png", file=sys.stderr)
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for task, (loss, psnr, base) in logs.items():
        steps, values = zip(*loss)
        window = 10
        smooth = [
            sum(values[max(0, i - window + 1) : i + 1]) / len(values[max(0, i - window + 1) : i + 1])
            for i in range(len(values))
        ]
        axes[0].plot(steps, smooth, label=task)
        if psnr:
            s, p = zip(*psnr)
            line = axes[1].plot(s, [v - base for v in p], marker="o", label=task)[0]
            axes[1].axhline(0.0, color=line.get_color(), lw=0.5)
    axes[0].set(xlabel="step", ylabel="training L1 (moving mean)", yscale="log", title="training loss")
    axes[1].set(xlabel="step", ylabel="dB over the degraded input", title="held-out PSNR gain (EMA weights)")
    for ax in axes:
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=150, help="steps for denoise and derain (150)")
    parser.add_argument("--deblur-steps", type=int, default=300, help="steps for deblur (300)")
    parser.add_argument("--val-every", type=int, default=50)
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tasks", nargs="+", default=list(OPTIONS), choices=list(OPTIONS))
    parser.add_argument("--out", default="docs/_static/training")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_photos = [small(load_photo(n), 384) for n in TRAIN_IMAGES]
    held_photos = [small(load_photo(n), 192) for n in HELD_OUT_IMAGES]
    rows, logs = [], {}
    for task in args.tasks:
        deg = make_degradation(task, OPTIONS[task])
        held_out = ValidationPairs(SyntheticPairs(held_photos, deg), seed=7)
        steps = args.deblur_steps if task == "deblur" else args.steps
        with tempfile.TemporaryDirectory() as tmp:
            config = TrainConfig(
                task=task,
                max_steps=steps,
                patch=args.patch,
                batch=args.batch,
                lr=args.lr,
                ema_decay=0.99,
                val_every=args.val_every,
                checkpoint_every=0,
                log_every=1,
                log_images=0,
                out=tmp,
                accelerator="cpu",
                progress=False,
                degradation=OPTIONS[task],
            )
            result = train(config, train_data=SyntheticPairs(train_photos, deg), val_data=held_out)
            loss, psnr = read_log(Path(tmp) / "metrics.csv")
        strips: list[torch.Tensor] = []
        report = evaluate(
            result.model,
            held_out,
            on_image=lambda _n, x, y, t, strips=strips: strips.append(
                torch.cat([x.clamp(0, 1), y, t], dim=-1)
            ),
        )
        logs[task] = (loss, psnr, report.mean_psnr_input)
        width = max(s.shape[-1] for s in strips)
        canvas = torch.cat([F.pad(s, (0, width - s.shape[-1]), value=1.0) for s in strips], dim=-2)
        write_image(out / f"{task}_before_after.png", ImageData(tensor=canvas[None], alpha=None, bit_depth=8))
        rows.append(
            {
                "task": task,
                "steps": result.steps,
                "minutes": round(result.seconds / 60, 2),
                "psnr_input": round(report.mean_psnr_input, 2),
                "psnr_restored": round(report.mean_psnr, 2),
                "ssim_input": round(report.mean_ssim_input, 4),
                "ssim_restored": round(report.mean_ssim, 4),
            }
        )
        print(rows[-1], flush=True)
    with (out / "metrics.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(logs, out / "curves.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
