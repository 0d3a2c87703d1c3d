"""Squeeze-and-excitation channel attention, used inside :class:`~clg_layers.CNNLayer`."""

from __future__ import annotations

import torch
from timm.layers import SEModule
from torch import nn

from ._checks import check_input, check_int
from ._init import factory_kwargs, reset_children

__all__ = ["ChannelAttention"]


class ChannelAttention(SEModule):
    """Squeeze-and-excitation channel attention (Hu et al., 2018).

    ``y = x * sigmoid(W2 · relu(W1 · mean_hw(x)))``: global average pool, a 1×1
    reduction to ``dim / reduction`` channels (rounded by timm to a multiple of
    8, at least 8, so a narrow layer cannot lose every ReLU unit), ReLU, a 1×1
    expansion and a sigmoid that rescales every channel. It is timm's
    ``SEModule`` with input validation.

    The pooled statistic covers the whole input. A model trained on crops and
    run on a full image sees a different mean; this is the train/test gap that
    TLC (Chu et al., 2022) describes. Tiled inference
    (:func:`clg_layers.tiled_forward`) keeps the statistics close to training.

    Args:
        dim: Number of channels ``C``.
        reduction: Channel reduction ratio ``r`` of the bottleneck.
        device: Device of the parameters (``"meta"`` builds them without memory).
        dtype: Floating-point dtype of the parameters.

    Shape:
        - Input: ``(B, C, H, W)``
        - Output: ``(B, C, H, W)``
    """

    def __init__(
        self,
        dim: int,
        *,
        reduction: int = 16,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = factory_kwargs("ChannelAttention", device, dtype)
        dim = check_int("ChannelAttention", "dim", dim)
        reduction = check_int("ChannelAttention", "reduction", reduction)
        # int / int: exact for huge ``reduction`` (1.0 / 10**400 overflows converting it to float).
        super().__init__(dim, rd_ratio=1 / reduction, **dd)
        # timm's SEModule applies its ReLU in place, on fc1's output: a forward hook
        # that kept that output would find it changed. The map is (B, C/r, 1, 1), so
        # the out-of-place ReLU costs nothing measurable.
        self.act = nn.ReLU()
        self.dim = dim
        self.reduction = reduction

    def reset_parameters(self) -> None:
        """Re-initialise as the constructor does (PyTorch's defaults of every child)."""
        reset_children(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Rescale the channels of ``x``: ``y = x ⊙ w(x)`` with ``w`` from :meth:`weights`.

        Args:
            x: Feature map of shape ``(B, C, H, W)``.

        Returns:
            Tensor of shape ``(B, C, H, W)``.
        """
        check_input("ChannelAttention", x, self.dim)
        return x * self.weights(x)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The per-channel weights ``w = sigmoid(W2 · relu(W1 · mean_hw(x)))``, without applying them.

        Args:
            x: Feature map of shape ``(B, C, H, W)``.

        Returns:
            Tensor of shape ``(B, C, 1, 1)`` with values in ``(0, 1)``.
        """
        return self.gate(self.fc2(self.act(self.bn(self.fc1(x.mean((2, 3), keepdim=True))))))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, reduction={self.reduction}"
