"""PSNR/SSIM as restoration papers report them (torchmetrics), and a whole-image evaluation loop."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["EvalReport", "evaluate", "image_scores", "prepare_for_metrics", "rgb_to_y"]

CHANNELS = ("rgb", "y")


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 luma with the studio offset, as MATLAB's ``rgb2ycbcr`` (the papers' "Y channel").

    Written here rather than taken from kornia: ``kornia.color.rgb_to_ycbcr``
    gives full-range Y (no 16/255 offset, no 219/255 scale), which shifts PSNR
    by about 1.3 dB from the published numbers.

    Args:
        x: ``(B, 3, H, W)`` in ``[0, 1]``.

    Returns:
        ``(B, 1, H, W)`` in ``[16/255, 235/255]``.
    """
    w = torch.tensor([65.481, 128.553, 24.966], dtype=x.dtype, device=x.device).view(1, 3, 1, 1) / 255.0
    return (x * w).sum(dim=1, keepdim=True) + 16.0 / 255.0


def prepare_for_metrics(x: torch.Tensor, *, channel: str = "rgb", crop_border: int = 0) -> torch.Tensor:
    """Clamp to ``[0, 1]``, optionally take the Y channel and crop ``crop_border`` pixels from each side.

    Args:
        x: ``(B, C, H, W)``.
        channel: ``"rgb"`` (all channels) or ``"y"`` (luma of RGB; grey images are used as they are).
        crop_border: Pixels removed at each border before measuring.
    """
    if channel not in CHANNELS:
        raise ValueError(f"metrics: `channel` must be one of {CHANNELS}, got {channel!r}")
    if crop_border < 0:
        raise ValueError(f"metrics: `crop_border` must be >= 0, got {crop_border}")
    x = x.float().clamp(0, 1)
    if channel == "y" and x.shape[1] == 3:
        x = rgb_to_y(x)
    if crop_border:
        if min(x.shape[-2:]) <= 2 * crop_border:
            raise ValueError(f"metrics: image {tuple(x.shape[-2:])} too small for crop_border={crop_border}")
        x = x[..., crop_border:-crop_border, crop_border:-crop_border]
    return x


def image_scores(
    restored: torch.Tensor, target: torch.Tensor, *, channel: str = "rgb", crop_border: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image PSNR (dB) and SSIM of ``restored`` against ``target``, both ``(B, C, H, W)`` in ``[0, 1]``.

    Returns:
        Two ``(B,)`` tensors.
    """
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    if restored.shape != target.shape:
        raise ValueError(
            f"metrics: restored {tuple(restored.shape)} and target {tuple(target.shape)} differ in shape"
        )
    a = prepare_for_metrics(restored, channel=channel, crop_border=crop_border)
    b = prepare_for_metrics(target, channel=channel, crop_border=crop_border)
    psnr = peak_signal_noise_ratio(a, b, data_range=1.0, reduction="none", dim=(1, 2, 3))
    ssim = structural_similarity_index_measure(a, b, data_range=1.0, reduction="none")
    return psnr, ssim


@dataclass
class EvalReport:
    """Per-image and mean PSNR/SSIM of the degraded inputs and of the restored images.

    Attributes:
        names: Image names.
        psnr_input, ssim_input: Scores of the inputs against the targets.
        psnr, ssim: Scores of the restored images.
    """

    names: list[str]
    psnr_input: list[float]
    ssim_input: list[float]
    psnr: list[float]
    ssim: list[float]

    @staticmethod
    def _mean(values: list[float]) -> float:
        return float(sum(values) / len(values)) if values else float("nan")

    @property
    def mean_psnr(self) -> float:
        """Mean restored PSNR in dB."""
        return self._mean(self.psnr)

    @property
    def mean_ssim(self) -> float:
        """Mean restored SSIM."""
        return self._mean(self.ssim)

    @property
    def mean_psnr_input(self) -> float:
        """Mean PSNR of the degraded inputs in dB."""
        return self._mean(self.psnr_input)

    @property
    def mean_ssim_input(self) -> float:
        """Mean SSIM of the degraded inputs."""
        return self._mean(self.ssim_input)

    def table(self) -> str:
        """A plain-text table: one row per image and the mean."""
        width = max([len("mean"), *(len(n) for n in self.names)])
        lines = [f"{'image':<{width}}  {'PSNR in':>8}  {'PSNR out':>8}  {'SSIM in':>7}  {'SSIM out':>8}"]
        rows = zip(self.names, self.psnr_input, self.psnr, self.ssim_input, self.ssim)
        for name, pi, po, si, so in rows:
            lines.append(f"{name:<{width}}  {pi:8.2f}  {po:8.2f}  {si:7.4f}  {so:8.4f}")
        lines.append(
            f"{'mean':<{width}}  {self.mean_psnr_input:8.2f}  {self.mean_psnr:8.2f}  "
            f"{self.mean_ssim_input:7.4f}  {self.mean_ssim:8.4f}"
        )
        return "\n".join(lines)


def evaluate(
    model: nn.Module,
    pairs: Iterable[tuple[torch.Tensor, torch.Tensor, str]],
    *,
    channel: str = "rgb",
    crop_border: int = 0,
    device: torch.device | str = "cpu",
    tile: int = 0,
    overlap: int = 32,
    on_image: object = None,
) -> EvalReport:
    """Restore whole images and score them.

    Args:
        model: Image-to-image module on ``(B, C, H, W)`` tensors.
        pairs: ``(input, target, name)`` with ``(C, H, W)`` images, e.g. a
            :class:`~clg_layers.data.ValidationPairs`; an input may have more
            channels than its target (a σ map after the image, for a
            noise-level-conditioned model): the model gets them all, the input's
            scores and ``on_image`` its first ``C``.
        channel: ``"rgb"`` or ``"y"``.
        crop_border: Border pixels excluded from the scores.
        device: Where the model runs.
        tile: Tile side for :func:`~clg_layers.tiled_forward` (0: whole images).
        overlap: Tile overlap in pixels.
        on_image: Optional ``callable(name, input, restored, target)`` called per image
            (``(C, H, W)`` tensors).

    Returns:
        An :class:`EvalReport`.
    """
    from ..tools.tiled import tiled_forward

    was_training = model.training
    model = model.to(device).eval()
    report = EvalReport([], [], [], [], [])
    try:
        with torch.inference_mode():
            for inp, target, name in pairs:
                x = inp[None].to(device)
                if tile and max(x.shape[-2:]) > tile:
                    y = tiled_forward(model, x, tile=tile, overlap=overlap, progress=False)
                else:
                    y = model(x)
                y = y.float().clamp(0, 1).cpu()
                t = target[None].float()
                inp = inp[: target.shape[0]]  # the image, without a σ map (a conditioned model's input)
                pi, si = image_scores(inp[None].float(), t, channel=channel, crop_border=crop_border)
                po, so = image_scores(y, t, channel=channel, crop_border=crop_border)
                report.names.append(str(name))
                report.psnr_input.append(float(pi[0]))
                report.ssim_input.append(float(si[0]))
                report.psnr.append(float(po[0]))
                report.ssim.append(float(so[0]))
                if callable(on_image):
                    on_image(str(name), inp, y[0], target)
    finally:
        model.train(was_training)
    return report
