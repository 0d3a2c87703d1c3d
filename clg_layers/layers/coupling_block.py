"""The coupling block: the CNN → Transformer → CNN "sandwich" with its coupling connection."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._checks import check_input, check_int
from ._init import factory_kwargs, reset_children, zero_
from ._shapes import to_nchw, to_tokens
from .block_config import COUPLING_MODES, BlockConfig, resolve
from .cnn_layer import CNNLayer
from .transformer_layer import TransformerLayer

__all__ = ["COUPLING_MODES", "CouplingBlock"]


class CouplingBlock(nn.Module):
    """CNN → Transformer → CNN "sandwich" with the intra-block coupling connection.

    ``c₁ = CNN₁(x)``, ``t = Transformer(c₁)``, ``u = t + Conv1×1([c₁, t])``,
    ``out = CNN₂(u)``. The coupling connection hands the first CNN layer's
    local features straight to the second, beside the global ones; its 1×1
    convolution starts at zero, so a fresh block is the identity.
    ``coupling="none"`` drops the connection (``u = t``) for ablations.

    Args:
        dim: Number of channels ``C``.
        config: The block options (:class:`~clg_layers.layers.BlockConfig`),
            handed as one object to both CNN layers and the Transformer layer.
            ``None`` means the defaults.
        **options: Fields of :class:`~clg_layers.layers.BlockConfig` that
            replace those of ``config``, e.g. ``CouplingBlock(32, num_heads=2)``.
        device: Device of the parameters (``"meta"`` builds them without memory).
        dtype: Floating-point dtype of the parameters.

    Shape:
        - Input: ``(B, C, H, W)``
        - Output: ``(B, C, H, W)``
    """

    def __init__(
        self,
        dim: int,
        config: BlockConfig | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        dd = factory_kwargs("CouplingBlock", device, dtype)
        cfg = resolve("CouplingBlock", config, options)
        self.dim = check_int("CouplingBlock", "dim", dim)
        cfg.check_width("CouplingBlock", dim)
        self.coupling = cfg.coupling
        cnn = dict(kernel_size=cfg.cnn_kernel_size, reduction=cfg.reduction, groups=cfg.groups_for(dim))
        self.cnn1 = CNNLayer(dim, **cnn, **dd)
        self.transformer = TransformerLayer(dim, config=cfg, **dd)
        # The 1×1 convolution over [c₁, t], as an nn.Linear over the channels of the
        # token layout: a matrix product, whose backward is a plain GEMM too (oneDNN's
        # 1×1 convolution backward took about 5 % of a training step more).
        self.fuse: nn.Linear | None = None
        if cfg.coupling == "concat":
            self.fuse = nn.Linear(2 * dim, dim, **dd)
        self.cnn2 = CNNLayer(dim, **cnn, **dd)
        zero_(self.fuse)

    def reset_parameters(self) -> None:
        """Re-initialise as the constructor does: every child's own rules, then the zero coupling ``fuse``."""
        reset_children(self)
        zero_(self.fuse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block: ``c₁ = CNN₁(x)``, ``t = Transformer(c₁)``, ``u = t + Conv1×1([c₁, t])``,
        ``CNN₂(u)``.

        Args:
            x: Feature map of shape ``(B, C, H, W)``.

        Returns:
            Tensor of shape ``(B, C, H, W)``.
        """
        check_input("CouplingBlock", x, self.dim)
        c1 = self.cnn1(x)
        t = self.transformer(c1)
        if self.fuse is not None:
            # The 1×1 convolution over [c₁, t], on tokens: (B, H, W, 2C) -> (B, H, W, C).
            t = t + to_nchw(self.fuse(torch.cat((to_tokens(c1), to_tokens(t)), dim=-1)))
        return self.cnn2(t)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, coupling={self.coupling!r}"
