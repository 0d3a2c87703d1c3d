"""Gated Non-linear Feed-Forward Network (GNFF)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_bool, check_input, check_int, check_positive_float

__all__ = ["GNFF"]


class GNFF(nn.Module):
    """Gated Non-linear Feed-Forward Network.

    ``h = Conv1×1(x)`` to ``2E`` channels (``E = round(expansion · C)``), split
    into ``a, b``; ``a ← DWConv3×3(a)``, ``b ← DWConv5×5(b)`` (two receptive
    fields: the "mixed" information); ``y = Conv1×1(GELU(a) ⊙ b)`` back to ``C``.

    Args:
        dim: Number of channels ``C``.
        expansion: Hidden expansion ratio ``γ``; ``E = max(round(γ·C), 1)``.
        bias: Whether the convolutions carry a bias.

    Shape:
        - Input: ``(B, C, H, W)``
        - Output: ``(B, C, H, W)``
    """

    def __init__(self, dim: int, *, expansion: float = 2.66, bias: bool = False) -> None:
        super().__init__()
        self.dim = check_int("GNFF", "dim", dim)
        self.expansion = check_positive_float("GNFF", "expansion", expansion)
        check_bool("GNFF", "bias", bias)
        self.hidden = hidden = max(round(self.expansion * dim), 1)
        self.fc1 = nn.Conv2d(dim, 2 * hidden, 1, bias=bias)
        self.dw3 = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=bias)
        self.dw5 = nn.Conv2d(hidden, hidden, 5, padding=2, groups=hidden, bias=bias)
        self.fc2 = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the feed-forward network.

        Args:
            x: Feature map of shape ``(B, C, H, W)``.

        Returns:
            Tensor of shape ``(B, C, H, W)``.
        """
        check_input("GNFF", x, self.dim)
        a, b = self.fc1(x).chunk(2, dim=1)
        return self.fc2(F.gelu(self.dw3(a)) * self.dw5(b))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, expansion={self.expansion}, hidden={self.hidden}"
