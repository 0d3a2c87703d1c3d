"""Module factories shared by the layer tests: every public module, built small."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

import clg_layers as cl

# name -> (constructor taking dim, number of heads the dim must be divisible by)
SINGLE_INPUT: dict[str, Callable[[int], nn.Module]] = {
    "ChannelAttention": lambda d: cl.ChannelAttention(d, reduction=4),
    "CNNLayer": lambda d: cl.CNNLayer(d),
    "CNNLayer-separable": lambda d: cl.CNNLayer(d, groups=d),
    "DBPA": lambda d: cl.DBPA(d, num_heads=2, window_size=4, kernel_size=3),
    "DBPA-spatial": lambda d: cl.DBPA(d, num_heads=2, window_size=4, channel=False),
    "DBPA-channel": lambda d: cl.DBPA(d, num_heads=2, spatial=False),
    "GNFF": lambda d: cl.GNFF(d),
    "TransformerLayer": lambda d: cl.TransformerLayer(d, num_heads=2, window_size=4),
    "CouplingBlock": lambda d: cl.CouplingBlock(d, num_heads=2, window_size=4),
    "CouplingBlock-none": lambda d: cl.CouplingBlock(d, num_heads=2, window_size=4, coupling="none"),
}


def hgu_inputs(b: int, h: int, w: int, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    """Three maps for ``HybridGatedUnit([8, 4, 16], ...)``: same size, larger, smaller."""
    return [
        torch.randn(b, 8, h, w, dtype=dtype),
        torch.randn(b, 4, 2 * h, 2 * w, dtype=dtype),
        torch.randn(b, 16, max(h // 2, 1), max(w // 2, 1), dtype=dtype),
    ]
