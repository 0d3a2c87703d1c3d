"""The network learns: a short denoising run beats the noisy input by a clear margin.

A behaviour test, not a timing test: ~1 minute on 2 cores. A fresh model is the
identity (gain 0 dB), so an untrained or broken model cannot pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import clg_layers as cl


def _images(n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """Smooth colour fields with sharp-edged rectangles: edges the model must keep."""
    coarse = torch.rand(n, 3, size // 8, size // 8, generator=g)
    img = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    for i in range(n):
        y0, x0, hh, ww = torch.randint(0, size // 2, (4,), generator=g).tolist()
        img[i, :, y0 : y0 + hh + 4, x0 : x0 + ww + 4] = torch.rand(3, 1, 1, generator=g)
    return img.clamp(0, 1)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1.0 / F.mse_loss(a, b)))


def test_tiny_learns_to_denoise() -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    sigma = 25 / 255
    model = cl.build("clginet-tiny")
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for _ in range(120):
        clean = _images(8, 48, g)
        noisy = clean + sigma * torch.randn(clean.shape, generator=g)
        loss = F.l1_loss(model(noisy), clean)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    clean = _images(8, 64, torch.Generator().manual_seed(123))  # held out, and a size never trained on
    noisy = clean + sigma * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        restored = model(noisy).clamp(0, 1)
    gain = _psnr(restored, clean) - _psnr(noisy, clean)
    print(f"PSNR gain after 120 steps: {gain:.2f} dB")
    assert gain > 4.0
