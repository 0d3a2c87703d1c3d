"""Per-channel layer scales of the residual branches, with the residual add fused in."""

from __future__ import annotations

import torch
from timm.layers import LayerScale as _TimmLayerScale
from timm.layers import LayerScale2d as _TimmLayerScale2d

from ._shapes import holds_result

__all__ = ["LayerScale", "LayerScale2d"]


def _scaled_residual(
    residual: torch.Tensor, x: torch.Tensor, gamma: torch.Tensor, out: torch.Tensor | None
) -> torch.Tensor:
    """``residual + γ ⊙ x`` in one pass, into ``out`` if its dtype can hold the sum."""
    if out is not None and not holds_result(out, residual, x, gamma):
        out = None  # a narrower buffer would round the sum (autocast): a new tensor instead
    return torch.addcmul(residual, x, gamma, out=out)


class LayerScale(_TimmLayerScale):
    """``γ ⊙ x`` over the last (channel) axis of tokens ``(B, H, W, C)``; timm's ``LayerScale``.

    One addition to timm's module: ``forward(x, residual)`` returns
    ``residual + γ ⊙ x`` in one pass over memory (``torch.addcmul``), so a
    residual branch ends in a call of the module that owns ``γ`` (hooks,
    ``torch.nn.utils.parametrize`` and pruning reach it) without paying for a
    separate scaled temporary.

    Args:
        dim: Number of channels ``C``.
        init_values: Initial value of every entry of ``γ``.
    """

    def __init__(self, dim: int, *, init_values: float = 1e-5) -> None:
        super().__init__(dim, init_values=init_values)

    def forward(
        self, x: torch.Tensor, residual: torch.Tensor | None = None, *, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Scale ``x``, and add it to ``residual`` if given.

        Args:
            x: Tokens ``(..., C)``.
            residual: Tokens of the same shape, or ``None``.
            out: Optional buffer for the result, used if its dtype holds the result.

        Returns:
            ``γ ⊙ x``, or ``residual + γ ⊙ x``; same shape as ``x``.
        """
        if residual is None:
            return super().forward(x)
        return _scaled_residual(residual, x, self.gamma, out)


class LayerScale2d(_TimmLayerScale2d):
    """``γ ⊙ x`` over the channels of a ``(B, C, H, W)`` map; timm's ``LayerScale2d``.

    Like :class:`LayerScale`, ``forward(x, residual)`` returns
    ``residual + γ ⊙ x`` in one fused pass.

    Args:
        dim: Number of channels ``C``.
        init_values: Initial value of every entry of ``γ``.
    """

    def __init__(self, dim: int, *, init_values: float = 1e-5) -> None:
        super().__init__(dim, init_values=init_values)

    def forward(
        self, x: torch.Tensor, residual: torch.Tensor | None = None, *, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Scale ``x``, and add it to ``residual`` if given.

        Args:
            x: Feature map ``(B, C, H, W)``.
            residual: Feature map of the same shape, or ``None``.
            out: Optional buffer for the result, used if its dtype holds the result.

        Returns:
            ``γ ⊙ x``, or ``residual + γ ⊙ x``; shape ``(B, C, H, W)``.
        """
        if residual is None:
            return super().forward(x)
        return _scaled_residual(residual, x, self.gamma.view(1, -1, 1, 1), out)
