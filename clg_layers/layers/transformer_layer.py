"""Pre-norm Transformer layer built from DBPA and GNFF."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.fx
from timm.layers import DropPath, LayerNorm, LayerScale
from torch import nn

from ._checks import check_divisible, check_input, check_int
from ._inference import ChildSpec, use_inference_path
from ._init import factory_kwargs, reset_children, zero_
from ._shapes import band_rows, holds_result, restore_format, to_nchw, to_tokens
from .block_config import BlockConfig, resolve
from .dbpa import DBPA
from .gnff import GNFF

torch.fx.wrap("restore_format")

__all__ = ["TransformerLayer"]


class TransformerLayer(nn.Module):
    """Pre-norm Transformer layer: DBPA then GNFF, each as a residual branch.

    ``x ← x + DropPath(γ₁ ⊙ DBPA(LN(x)))``, then
    ``x ← x + DropPath(γ₂ ⊙ GNFF(LN(x)))``. ``LN`` normalises over channels at
    every pixel; ``γ₁, γ₂`` are per-channel scales (timm's ``LayerScale``) that
    start at one. The last projection of each branch (DBPA's ``proj``, GNFF's
    ``fc2``) starts at zero, so a fresh layer is the identity while those
    projections get a gradient from the first step, and the rest of each
    branch from the second.

    The layer computes in channels-last token layout ``(B, H, W, C)``, where the
    channel LayerNorm is timm's ``LayerNorm`` over the last axis (as in timm's
    ConvNeXt block) and the layer scales are timm's ``LayerScale``. A
    ``channels_last`` input is used as it is and the output is
    ``channels_last`` too (so whole networks are best run ``channels_last``,
    as :class:`~clg_layers.CLGINet` does).

    In eager inference a separate path (:meth:`_forward_inference`) computes
    the same function with less memory: each residual sum is one fused
    ``addcmul`` into the branch's fresh output, and on a large map the
    feed-forward branch runs over bands of rows (each band, with the two rows
    of context the 5×5 kernel needs, goes through ``norm2``, GNFF and
    ``γ₂``; only its own rows are kept), so no feed-forward temporary is
    larger than a band of a few MiB whatever the image size.
    :attr:`band_bytes` sets the band size (``0`` turns banding off).

    Args:
        dim: Number of channels ``C``.
        config: The block options (:class:`~clg_layers.layers.BlockConfig`);
            this layer reads ``num_heads``, ``window_size``, ``kernel_size``,
            ``spatial``, ``channel``, ``attn_fusion`` (for DBPA), ``expansion``
            (for GNFF) and ``drop_path``. ``None`` means the defaults.
        **options: Fields of :class:`~clg_layers.layers.BlockConfig` that
            replace those of ``config``, e.g. ``num_heads=2``.
        device: Device of the parameters (``"meta"`` builds them without memory).
        dtype: Floating-point dtype of the parameters.

    Shape:
        - Input: ``(B, C, H, W)``
        - Output: ``(B, C, H, W)``
    """

    #: Whether eager inference may take :meth:`_forward_inference`
    #: (see :func:`clg_layers.layers.set_fast_inference`).
    fast_inference: bool = True
    #: Target size in bytes of the feed-forward hidden map of one band in the
    #: inference path (see the class docstring); ``0`` disables banding.
    band_bytes: int = 8 * 2**20
    #: What the inference path assumes: it applies γ₁ and γ₂ itself, writes into
    #: the branches' outputs and cuts the feed-forward branch into bands.
    _inference_children: ClassVar[dict[str, ChildSpec]] = {
        "attn": DBPA,
        "scale1": LayerScale,
        "scale2": LayerScale,
        "norm2": LayerNorm,
        "ffn": GNFF,
        "ffn.fc1_a": nn.Linear,
        "ffn.fc1_b": nn.Linear,
        "ffn.dw3": (nn.Conv2d, 3),
        "ffn.dw5": (nn.Conv2d, 5),
        "ffn.act": nn.GELU,
        "ffn.fc2": nn.Linear,
    }

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
        dd = factory_kwargs("TransformerLayer", device, dtype)
        cfg = resolve("TransformerLayer", config, options)
        self.dim = check_int("TransformerLayer", "dim", dim)
        check_divisible("TransformerLayer", "dim", dim, "num_heads", cfg.num_heads)
        self.attn = DBPA(
            dim,
            num_heads=cfg.num_heads,
            window_size=cfg.window_size,
            kernel_size=cfg.kernel_size,
            spatial=cfg.spatial,
            channel=cfg.channel,
            fusion=cfg.attn_fusion,
            **dd,
        )
        self.norm1 = LayerNorm(dim, **dd)
        self.scale1 = LayerScale(dim, init_values=1.0, **dd)
        self.norm2 = LayerNorm(dim, **dd)
        self.ffn = GNFF(dim, expansion=cfg.expansion, **dd)
        self.scale2 = LayerScale(dim, init_values=1.0, **dd)
        self._zero_init()
        self.drop_path = DropPath(cfg.drop_path) if cfg.drop_path > 0 else nn.Identity()
        # The inference path skips drop_path (it only runs when drop path is inactive).
        self._inference_children = {**self._inference_children, "drop_path": type(self.drop_path)}

    def _zero_init(self) -> None:
        # Each branch ends in a zero projection: the layer starts as the identity.
        zero_(getattr(self.attn, "proj", None), getattr(self.ffn, "fc2", None))

    def reset_parameters(self) -> None:
        """Re-initialise as the constructor does: PyTorch's defaults, both branches' last projections zero.

        The norms are ``(1, 0)``, the layer scales one, DBPA's temperatures one.
        """
        reset_children(self)
        self._zero_init()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer: both pre-norm residual branches, in order.

        Args:
            x: Feature map of shape ``(B, C, H, W)``.

        Returns:
            Tensor of shape ``(B, C, H, W)``, in the input's memory format
            (``channels_last`` in, ``channels_last`` out; otherwise contiguous).
        """
        check_input("TransformerLayer", x, self.dim)
        if not self._drop_path_active() and use_inference_path(self, x, self._inference_children):
            return self._forward_inference(x)
        t = to_tokens(x)  # (B, H, W, C)
        t = t + self.drop_path(self.scale1(to_tokens(self.attn(to_nchw(self.norm1(t))))))
        t = t + self.drop_path(self.scale2(to_tokens(self.ffn(to_nchw(self.norm2(t))))))
        return restore_format(to_nchw(t), x)

    def _drop_path_active(self) -> bool:
        return self.training and not isinstance(self.drop_path, nn.Identity)

    def _forward_inference(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` in eager inference: fused residual sums and a banded feed-forward branch."""
        t = to_tokens(x).contiguous()  # (B, H, W, C); free for a channels_last input
        y = to_tokens(self.attn(to_nchw(self.norm1(t))))
        t = self._add_scaled(t, y, self.scale1.gamma, out=y)
        h = t.shape[1]
        rows = band_rows(t, 2 * self.ffn.hidden, 1, self.band_bytes)
        if rows >= h:
            y = to_tokens(self.ffn(to_nchw(self.norm2(t))))
            return restore_format(to_nchw(self._add_scaled(t, y, self.scale2.gamma, out=y)), x)
        out = torch.empty_like(t)  # each band is written into it: the output exists once
        halo = self.ffn.halo
        for r0 in range(0, h, rows):
            r1 = min(r0 + rows, h)
            lo, hi = max(r0 - halo, 0), min(r1 + halo, h)
            # GNFF zero-pads the band like a whole map; the rows next to the band's
            # cut edges, whose kernels reach past the context, are cropped off.
            y = to_tokens(self.ffn(to_nchw(self.norm2(t[:, lo:hi]))))[:, r0 - lo : r1 - lo]
            torch.addcmul(t[:, r0:r1], y, self.scale2.gamma, out=out[:, r0:r1])
        return restore_format(to_nchw(out), x)

    @staticmethod
    def _add_scaled(
        t: torch.Tensor, y: torch.Tensor, gamma: torch.Tensor, *, out: torch.Tensor
    ) -> torch.Tensor:
        """``t + γ ⊙ y`` in one pass, into ``out`` unless its dtype is too narrow for the sum (autocast)."""
        return torch.addcmul(t, y, gamma, out=out if holds_result(out, t, gamma) else None)
