"""The Lightning pieces: the training task, the data module, EMA and atomic checkpoint writing."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Timer, WeightAveraging
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import nn
from torch.utils.data import DataLoader
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from ..data.datasets import (
    PairedImageFolder,
    PatchSchedule,
    RandomPatchBatches,
    StepSampler,
    SyntheticPairs,
    ValidationPairs,
)
from ..models.checkpoint import model_config_dict
from .metrics import CHANNELS, prepare_for_metrics

__all__ = [
    "EMA",
    "LOSSES",
    "AtomicCheckpointIO",
    "RestorationDataModule",
    "RestorationTask",
    "restoration_loss",
]

#: Training losses :class:`RestorationTask` accepts.
LOSSES: tuple[str, ...] = ("l1", "charbonnier", "psnr")


def restoration_loss(
    kind: str, restored: torch.Tensor, target: torch.Tensor, *, eps: float = 1e-3
) -> torch.Tensor:
    """L1, Charbonnier (``sqrt(d² + eps²)``, Restormer/MPRNet) or PSNR loss (``10·log10(MSE)`` per
    image, NAFNet).

    torchmetrics has metrics, not training losses, hence these few lines.

    Args:
        kind: One of :data:`LOSSES`.
        restored: ``(B, C, H, W)``.
        target: ``(B, C, H, W)``.
        eps: Charbonnier's smoothing constant.

    Returns:
        A scalar tensor.
    """
    if kind == "l1":
        return F.l1_loss(restored, target)
    if kind == "charbonnier":
        return torch.sqrt((restored - target).pow(2) + eps * eps).mean()
    if kind == "psnr":
        mse = (restored - target).pow(2).flatten(1).mean(dim=1)
        return 10.0 * torch.log10(mse + 1e-8).mean()
    raise ValueError(f"restoration_loss: unknown loss {kind!r}; choose from {LOSSES}")


class EMA(WeightAveraging):
    """Exponential moving average of the weights (Lightning's ``WeightAveraging``), with a warm-up.

    The decay after ``n`` updates is ``min(decay, (1 + n) / (10 + n))``, so
    short runs average over their recent steps instead of staying near the
    random initialisation. Lightning swaps the averaged weights in for
    validation, stores both sets in its checkpoints and leaves the averaged
    weights in the model when training ends (what gets exported).

    Args:
        decay: The long-run decay, e.g. 0.999.
    """

    def __init__(self, decay: float = 0.999) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA: `decay` must be in [0, 1), got {decay}")
        self.decay = float(decay)
        super().__init__(avg_fn=self._average)

    def _average(
        self, averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor
    ) -> torch.Tensor:
        n = float(num_averaged)
        d = min(self.decay, (1.0 + n) / (10.0 + n))
        return averaged + (current - averaged) * (1.0 - d)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint writer that writes to a temporary file in the same folder, then ``os.replace``.

    An interrupted save leaves the previous checkpoint intact, never a truncated one.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            torch.save(checkpoint, tmp)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()


class RestorationTask(L.LightningModule):
    """Train any image-to-image ``nn.Module`` (``(B, C, H, W)`` in, same shape out) for restoration.

    Batches are ``(degraded, clean)`` pairs for training and
    ``(degraded, clean, names)`` for validation. AdamW with a linear warm-up
    and a cosine decay over ``trainer.max_steps`` (or over ``max_time`` when
    no step limit is set). Validation (on the EMA weights when the
    :class:`EMA` callback is used) logs ``val/psnr``, ``val/ssim`` and the
    input's ``val/psnr_input``, and writes the first ``log_images`` restored
    images as ``input | restored | target`` PNGs into ``image_dir``.
    Gradient clipping and mixed precision are the Trainer's
    (``gradient_clip_val``, ``precision``).

    The input may carry conditioning channels after the image's: a
    noise-level-conditioned :class:`~clg_layers.CLGINet` gets the image
    and its σ map, ``(B, C + 1, H, W)`` (:class:`~clg_layers.data.WithSigmaMap`).
    The model sees the whole input; the input's metric and the written images
    use its first ``C`` channels, ``C`` being the target's.

    Args:
        model: The network; its ``model_name``/``config`` (set by
            :func:`~clg_layers.build`) are stored in the hyper-parameters so
            a resume can check them.
        loss: One of :data:`LOSSES`.
        lr: Peak learning rate.
        weight_decay: AdamW weight decay.
        betas: AdamW betas.
        warmup_steps: Linear warm-up steps.
        min_lr_ratio: Final learning rate as a fraction of ``lr``.
        metric_channel: ``"rgb"`` or ``"y"`` for the validation metrics.
        crop_border: Border pixels excluded from the validation metrics.
        log_images: Number of validation images written each validation.
        image_dir: Folder of those images (``None``: not written).
        task: A label stored with the hyper-parameters (e.g. ``"denoise"``).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        loss: str = "l1",
        lr: float = 3e-4,
        weight_decay: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.01,
        metric_channel: str = "rgb",
        crop_border: int = 0,
        log_images: int = 3,
        image_dir: str | Path | None = None,
        task: str = "",
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"RestorationTask: `model` must be an nn.Module, got {type(model).__name__}")
        if loss not in LOSSES:
            raise ValueError(f"RestorationTask: unknown loss {loss!r}; choose from {LOSSES}")
        if not lr > 0:
            raise ValueError(f"RestorationTask: `lr` must be > 0, got {lr}")
        if warmup_steps < 0 or not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError(
                f"RestorationTask: need warmup_steps >= 0 and 0 <= min_lr_ratio <= 1, "
                f"got {warmup_steps} and {min_lr_ratio}"
            )
        if metric_channel not in CHANNELS:
            raise ValueError(
                f"RestorationTask: `metric_channel` must be one of {CHANNELS}, got {metric_channel!r}"
            )
        self.model = model
        self.save_hyperparameters(ignore=["model", "image_dir"])
        self.hparams["model_name"] = getattr(model, "model_name", None) or type(model).__name__
        self.hparams["model_config"] = model_config_dict(model)
        self.image_dir = Path(image_dir) if image_dir is not None else None
        self.val_psnr = PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3))  # mean of per-image PSNR
        self.val_ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
        self.val_psnr_input = PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Restore ``(B, C, H, W)`` images."""
        return self.model(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        degraded, clean = batch
        loss = restoration_loss(self.hparams.loss, self.model(degraded), clean)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"RestorationTask: the loss became {loss.item()} at step {self.global_step}; "
                "lower the learning rate or use precision 32"
            )
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=clean.shape[0])
        self.log(
            "train/lr",
            self.optimizers().param_groups[0]["lr"],
            on_step=True,
            on_epoch=False,
            batch_size=clean.shape[0],
        )
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor, Any], batch_idx: int) -> None:
        degraded, clean, names = batch
        restored = self.model(degraded).clamp(0, 1)
        degraded = degraded[:, : clean.shape[1]]  # the image, without a σ map
        opts = dict(channel=self.hparams.metric_channel, crop_border=self.hparams.crop_border)
        a, b, c = (prepare_for_metrics(t, **opts) for t in (restored, clean, degraded))
        self.val_psnr(a, b)
        self.val_ssim(a, b)
        self.val_psnr_input(c, b)
        n = clean.shape[0]
        self.log("val/psnr", self.val_psnr, prog_bar=True, batch_size=n)
        self.log("val/ssim", self.val_ssim, batch_size=n)
        self.log("val/psnr_input", self.val_psnr_input, batch_size=n)
        if self.image_dir is not None and batch_idx < self.hparams.log_images and self.trainer.is_global_zero:
            self._write_image(degraded[0], restored[0], clean[0], str(names[0]))

    def _write_image(
        self, degraded: torch.Tensor, restored: torch.Tensor, clean: torch.Tensor, name: str
    ) -> None:
        from ..io import ImageData, write_image

        strip = torch.cat([t.float().clamp(0, 1).cpu() for t in (degraded, restored, clean)], dim=-1)
        path = self.image_dir / f"step{self.global_step:07d}_{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_image(path, ImageData(tensor=strip[None], alpha=None, bit_depth=8))

    def _progress(self, step: int) -> float:
        """Fraction of the run done after ``step`` optimiser steps (steps, or time when only
        ``max_time`` is set)."""
        trainer = self.trainer
        warm = self.hparams.warmup_steps
        if trainer.max_steps and trainer.max_steps > 0:
            return (step - warm) / max(1, trainer.max_steps - warm)
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        if timer is not None and timer.time_remaining("train") is not None:
            done = timer.time_elapsed("train")
            return done / max(1e-9, done + timer.time_remaining("train"))
        return 0.0

    def _lr_factor(self, step: int) -> float:
        warm = self.hparams.warmup_steps
        if step < warm:
            return (step + 1) / warm
        frac = min(1.0, max(0.0, self._progress(step)))
        low = self.hparams.min_lr_ratio
        return low + (1.0 - low) * 0.5 * (1.0 + math.cos(math.pi * frac))

    def configure_optimizers(self) -> dict[str, Any]:
        opt = torch.optim.AdamW(
            self.model.parameters(),
            lr=self.hparams.lr,
            betas=tuple(self.hparams.betas),
            weight_decay=self.hparams.weight_decay,
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, self._lr_factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class RestorationDataModule(L.LightningDataModule):
    """Training batches from a paired or synthetic source, and fixed validation pairs.

    Training draws :class:`~clg_layers.data.RandomPatchBatches` indexed by
    the global step, starting at the trainer's restored step on resume, with a
    different stream per rank. Validation uses whole images, one per batch.

    Args:
        train: A :class:`~clg_layers.data.PairedImageFolder` or :class:`~clg_layers.data.SyntheticPairs`.
        val: Validation pairs, or ``None``.
        schedule: Patch and batch sizes over the run.
        steps: Length of the run in steps (a large number for time-limited runs).
        seed: Base seed of the training crops and degradations.
        num_workers: DataLoader worker processes.
    """

    def __init__(
        self,
        train: PairedImageFolder | SyntheticPairs,
        val: ValidationPairs | None,
        *,
        schedule: PatchSchedule,
        steps: int,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.train_source, self.val_pairs = train, val
        self.schedule, self.steps, self.seed, self.num_workers = schedule, int(steps), seed, int(num_workers)

    def train_dataloader(self) -> DataLoader:
        """Whole batches ``(input, target)``, ``(B, C, P, P)``, for steps from the trainer's current
        step on."""
        trainer = getattr(self, "trainer", None)
        start = trainer.global_step if trainer is not None else 0
        rank = trainer.global_rank if trainer is not None else 0
        batches = RandomPatchBatches(
            self.train_source, self.schedule, steps=self.steps, seed=self.seed, rank=rank
        )
        return DataLoader(
            batches,
            batch_size=None,
            sampler=StepSampler(start, self.steps),
            num_workers=self.num_workers,
            persistent_workers=False,
        )

    def val_dataloader(self) -> DataLoader | list:
        """One whole image per batch: ``(input, target, name)``, images ``(1, C, H, W)``."""
        if self.val_pairs is None or len(self.val_pairs) == 0:
            return []
        return DataLoader(self.val_pairs, batch_size=1, shuffle=False, num_workers=0)
