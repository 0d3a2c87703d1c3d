"""Pre-norm Transformer layer built from DBPA and GNFF."""

from __future__ import annotations

import torch
from timm.layers import DropPath, LayerNorm2d, LayerScale2d
from torch import nn

from ._checks import check_input, check_positive_float
from .dbpa import DBPA
from .gnff import GNFF

__all__ = ["TransformerLayer"]


class TransformerLayer(nn.Module):
    """Pre-norm Transformer layer: DBPA then GNFF, each as a residual branch.

    ``x ← x + DropPath(γ₁ ⊙ DBPA(LN(x)))``, then
    ``x ← x + DropPath(γ₂ ⊙ GNFF(LN(x)))``. ``LN`` normalises over channels at
    every pixel (timm's ``LayerNorm2d``); ``γ₁, γ₂`` are per-channel scales
    that start at zero, so a fresh layer is the identity.

    Args:
        dim: Number of channels ``C``.
        num_heads: Attention heads of :class:`DBPA`; must divide ``dim``.
        window_size: Window side of :class:`DBPA`'s spatial projection.
        kernel_size: Depthwise kernel of :class:`DBPA`'s ``qkv``.
        expansion: Expansion ratio of :class:`GNFF`.
        drop_path: Stochastic-depth probability of both branches.
        spatial: Use DBPA's spatial (window) projection.
        channel: Use DBPA's channel (transposed) projection.

    Shape:
        - Input: ``(B, C, H, W)``
        - Output: ``(B, C, H, W)``
    """

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 1,
        window_size: int = 8,
        kernel_size: int = 7,
        expansion: float = 2.66,
        drop_path: float = 0.0,
        spatial: bool = True,
        channel: bool = True,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.attn = DBPA(
            dim,
            num_heads=num_heads,
            window_size=window_size,
            kernel_size=kernel_size,
            spatial=spatial,
            channel=channel,
        )
        drop_path = check_positive_float("TransformerLayer", "drop_path", drop_path, allow_zero=True)
        if drop_path >= 1.0:
            raise ValueError(f"TransformerLayer: `drop_path` must be in [0, 1), got {drop_path}")
        self.norm1 = LayerNorm2d(dim)
        self.scale1 = LayerScale2d(dim, init_values=0.0)
        self.norm2 = LayerNorm2d(dim)
        self.ffn = GNFF(dim, expansion=expansion)
        self.scale2 = LayerScale2d(dim, init_values=0.0)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer.

        Args:
            x: Feature map of shape ``(B, C, H, W)``.

        Returns:
            Tensor of shape ``(B, C, H, W)``.
        """
        check_input("TransformerLayer", x, self.dim)
        x = self._residual(x, self.attn(self.norm1(x)), self.scale1)
        return self._residual(x, self.ffn(self.norm2(x)), self.scale2)

    def _residual(self, x: torch.Tensor, y: torch.Tensor, scale: LayerScale2d) -> torch.Tensor:
        """``x + DropPath(γ ⊙ y)``; without drop path, one fused ``addcmul`` pass."""
        if isinstance(self.drop_path, nn.Identity):
            return torch.addcmul(x, y, scale.gamma.view(1, -1, 1, 1))
        return x + self.drop_path(scale(y))
