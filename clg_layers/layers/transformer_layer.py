"""Pre-norm Transformer layer built from DBPA and GNFF."""

from __future__ import annotations

from typing import Any

import torch
from timm.layers import DropPath, LayerNorm
from torch import nn

from ._checks import check_input, check_int
from ._shapes import band_rows, holds_result, restore_format, reusable_output, to_nchw, to_tokens
from .block_config import BlockConfig, resolve
from .dbpa import DBPA
from .gnff import GNFF
from .layer_scale import LayerScale

__all__ = ["TransformerLayer"]


class TransformerLayer(nn.Module):
    """Pre-norm Transformer layer: DBPA then GNFF, each as a residual branch.

    ``x ← x + DropPath(γ₁ ⊙ DBPA(LN(x)))``, then
    ``x ← x + DropPath(γ₂ ⊙ GNFF(LN(x)))``. ``LN`` normalises over channels at
    every pixel; ``γ₁, γ₂`` are per-channel scales (:class:`LayerScale`) that
    start at one. The last projection of each branch (DBPA's ``proj``, GNFF's
    ``fc2``) starts at zero, so a fresh layer is the identity while those
    projections get a gradient from the first step, and the rest of each
    branch from the second.

    The layer computes in channels-last token layout ``(B, H, W, C)``, where the
    channel LayerNorm is timm's ``LayerNorm`` over the last axis (as in timm's
    ConvNeXt block) and needs no permute copies. A ``channels_last`` input is
    used as it is and the output is ``channels_last`` too; a contiguous
    ``(B, C, H, W)`` input costs one layout copy in and one out (so whole
    networks are best run ``channels_last``, as :class:`~clg_layers.CLGINet`
    does). Every computation is a call of the module that owns its parameters.

    In inference (autograd off) on a large map, the feed-forward branch runs
    over bands of rows: each band, with the two rows of context the 5×5 kernel
    needs, goes through ``norm2``, :class:`~clg_layers.GNFF` and ``scale2``, and
    only the band's own rows are kept. No feed-forward temporary is then
    larger than a band of a few MiB, whatever the image size: that saves the
    page faults of fresh large allocations (glibc maps every allocation above
    32 MiB afresh) and bounds peak memory. :class:`~clg_layers.DBPA` bands
    itself the same way. The result is the same function; hooks on the
    feed-forward modules fire once per band. :attr:`band_bytes` sets the band
    size (``0`` turns banding off).

    Args:
        dim: Number of channels ``C``.
        config: The block options (:class:`~clg_layers.layers.BlockConfig`);
            this layer reads ``num_heads``, ``window_size``, ``kernel_size``,
            ``spatial``, ``channel``, ``attn_fusion`` (for DBPA), ``expansion``
            (for GNFF) and ``drop_path``. ``None`` means the defaults.
        **options: Fields of :class:`~clg_layers.layers.BlockConfig` that
            replace those of ``config``, e.g. ``num_heads=2``.

    Shape:
        - Input: ``(B, C, H, W)``
        - Output: ``(B, C, H, W)``
    """

    #: Target size in bytes of the feed-forward hidden map of one band in
    #: inference (see the class docstring); ``0`` disables banding.
    band_bytes: int = 8 * 2**20

    def __init__(self, dim: int, config: BlockConfig | None = None, **options: Any) -> None:
        super().__init__()
        cfg = resolve("TransformerLayer", config, options)
        self.dim = check_int("TransformerLayer", "dim", dim)
        cfg.check_width("TransformerLayer", dim)
        self.norm1 = LayerNorm(dim)
        self.attn = DBPA(
            dim,
            num_heads=cfg.num_heads,
            window_size=cfg.window_size,
            kernel_size=cfg.kernel_size,
            spatial=cfg.spatial,
            channel=cfg.channel,
            fusion=cfg.attn_fusion,
        )
        self.scale1 = LayerScale(dim, init_values=1.0)
        self.norm2 = LayerNorm(dim)
        self.ffn = GNFF(dim, expansion=cfg.expansion)
        self.scale2 = LayerScale(dim, init_values=1.0)
        # Each branch ends in a zero projection: the layer starts as the identity.
        for last in (self.attn.proj, self.ffn.fc2):
            nn.init.zeros_(last.weight)
            if last.bias is not None:
                nn.init.zeros_(last.bias)
        self.drop_path = DropPath(cfg.drop_path) if cfg.drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer.

        Args:
            x: Feature map of shape ``(B, C, H, W)``.

        Returns:
            Tensor of shape ``(B, C, H, W)``, in the input's memory format
            (``channels_last`` in, ``channels_last`` out; otherwise contiguous).
        """
        check_input("TransformerLayer", x, self.dim)
        t = to_tokens(x).contiguous()  # (B, H, W, C); free for a channels_last input
        t = self._residual(self.scale1, self._branch(self.norm1, self.attn, t), t, self.attn)
        h = t.shape[1]
        rows = h if self._drop_path_active() else band_rows(t, 2 * self.ffn.hidden, 1, self.band_bytes)
        if rows >= h:
            t = self._residual(self.scale2, self._branch(self.norm2, self.ffn, t), t, self.ffn)
        else:
            t = self._banded_ffn(t, rows)
        return restore_format(to_nchw(t), x)

    @staticmethod
    def _branch(norm: nn.Module, body: nn.Module, t: torch.Tensor) -> torch.Tensor:
        """``body(norm(t))`` on tokens ``(B, R, W, C)``; ``body`` takes and returns ``(B, C, R, W)`` maps."""
        return to_tokens(body(to_nchw(norm(t))))

    def _drop_path_active(self) -> bool:
        return self.training and not isinstance(self.drop_path, nn.Identity)

    def _residual(self, scale: LayerScale, y: torch.Tensor, t: torch.Tensor, producer: nn.Module) -> torch.Tensor:
        """``t + DropPath(γ ⊙ y)``; without drop path one fused pass, written into ``y`` when nothing else holds it."""
        if self._drop_path_active():
            return t + self.drop_path(scale(y))
        return scale(y, t, out=y if holds_result(y, t) and reusable_output(producer) else None)

    def _banded_ffn(self, t: torch.Tensor, rows: int) -> torch.Tensor:
        """``t + γ₂ ⊙ GNFF(LN(t))`` computed ``rows`` rows at a time (see the class docstring)."""
        h = t.shape[1]
        halo = self.ffn.halo
        out = torch.empty_like(t)  # each band is written into it: the output exists once
        for r0 in range(0, h, rows):
            r1 = min(r0 + rows, h)
            lo, hi = max(r0 - halo, 0), min(r1 + halo, h)
            # GNFF zero-pads the band like a whole map; the rows next to the band's
            # cut edges, whose kernels reach past the context, are cropped off.
            y = self._branch(self.norm2, self.ffn, t[:, lo:hi])[:, r0 - lo : r1 - lo]
            self.scale2(y, t[:, r0:r1], out=out[:, r0:r1])
        return out
