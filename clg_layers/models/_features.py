"""timm's feature-extraction contract for :class:`~clg_layers.CLGINet`: levels, indices, groups.

The helpers behind :meth:`CLGINet.forward_intermediates
<clg_layers.CLGINet.forward_intermediates>`, :meth:`~clg_layers.CLGINet.prune_intermediate_layers`,
:attr:`~clg_layers.CLGINet.feature_info` and :meth:`~clg_layers.CLGINet.group_matcher`.
The network has :data:`~clg_layers.models.LEVELS` feature levels, in the order
they run: the outputs of the three encoder levels (the skip connections; widths
``C, 2C, 4C`` at 1/1, 1/2, 1/4 of the input) and of the bottleneck (``8C`` at 1/8).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..layers._shapes import crop, known_zero, restore_format
from .config import LEVELS, CLGINetConfig

__all__ = [
    "OUTPUT_FORMATS",
    "PrunedHead",
    "check_output_fmt",
    "feature_levels",
    "format_feature",
    "group_matcher",
    "take_indices",
]

#: Layouts ``forward_intermediates(output_fmt=...)`` accepts (timm's ``Format`` names).
OUTPUT_FORMATS: tuple[str, ...] = ("NCHW", "NHWC")

# Last entries of group_matcher's ordinals: a big constant sorts a stage's downsample after its blocks.
_AFTER_BLOCKS = 9999


def feature_levels(config: CLGINetConfig) -> list[dict[str, Any]]:
    """timm's ``feature_info`` of a network built from ``config``: one dict per level, shallowest first.

    Each dict has ``num_chs`` (channels), ``reduction`` (input side / feature
    side: 1, 2, 4, 8), ``module`` (the name of the stage whose output it is)
    and ``index``.
    """
    modules = [f"encoders.{level}" for level in range(LEVELS - 1)] + ["bottleneck"]
    return [
        {"num_chs": width, "reduction": 2**level, "module": module, "index": level}
        for level, (width, module) in enumerate(zip(config.widths, modules))
    ]


def take_indices(owner: str, num_levels: int, indices: object) -> tuple[list[int], int]:
    """Absolute level indices selected by ``indices`` (timm's rules), and the largest of them.

    ``None`` selects every level; an int ``n`` the last ``n``; a sequence of
    ints the levels it names (negative ones count from the end). The result
    is sorted, without repeats: levels come out in the order they run.

    Raises:
        TypeError: If ``indices`` is not ``None``, an int or a sequence of ints.
        ValueError: If an index, or ``n``, is out of range.
    """
    if indices is None:
        taken = list(range(num_levels))
    elif isinstance(indices, numbers.Integral) and not isinstance(indices, bool):
        n = int(indices)
        if not 1 <= n <= num_levels:
            raise ValueError(
                f"{owner}: an int `indices` takes the last n of the {num_levels} feature levels, "
                f"so it must be in [1, {num_levels}], got {n}"
            )
        taken = list(range(num_levels - n, num_levels))
    elif isinstance(indices, Sequence) and not isinstance(indices, (str, bytes)):
        if not indices:
            raise ValueError(f"{owner}: `indices` must name at least one feature level, got {indices!r}")
        found = set()
        for i in indices:
            if isinstance(i, bool) or not isinstance(i, numbers.Integral):
                raise TypeError(
                    f"{owner}: `indices` must hold ints, got {type(i).__name__} ({i!r}) in {indices!r}"
                )
            if not -num_levels <= i < num_levels:
                raise ValueError(
                    f"{owner}: feature index {i} is out of range for {num_levels} feature levels "
                    f"(valid: {-num_levels} to {num_levels - 1})"
                )
            found.add(int(i) % num_levels)
        taken = sorted(found)
    else:
        raise TypeError(
            f"{owner}: `indices` must be None, an int or a sequence of ints, got {type(indices).__name__}"
        )
    return taken, taken[-1]


def check_output_fmt(owner: str, output_fmt: object) -> str:
    """``output_fmt`` as a plain string if it is one of :data:`OUTPUT_FORMATS` (or timm's ``Format``)."""
    value = getattr(output_fmt, "value", output_fmt)  # timm.layers.Format is a str enum
    if not isinstance(value, str) or value not in OUTPUT_FORMATS:
        raise ValueError(f"{owner}: `output_fmt` must be one of {list(OUTPUT_FORMATS)}, got {output_fmt!r}")
    return value


def format_feature(f: torch.Tensor, x: torch.Tensor, level: int, output_fmt: str) -> torch.Tensor:
    """A feature map of level ``level`` as returned to the caller.

    ``f`` is ``(B, C, H', W')`` on the network's padded grid; the result is
    its top-left ``ceil(H / 2^level) × ceil(W / 2^level)`` (``H, W`` those of
    the input ``x``), the part computed from the image rather than from the
    mirrored padding, in ``x``'s memory format for ``"NCHW"`` or as a
    ``(B, H', W', C)`` view for ``"NHWC"``.
    """
    r = 2**level
    h, w = (x.shape[-2] + r - 1) // r, (x.shape[-1] + r - 1) // r
    if not (known_zero(f.shape[-2] - h) and known_zero(f.shape[-1] - w)):
        f = crop(f, h, w, dims=(2, 3))
    if output_fmt == "NHWC":
        return f.permute(0, 2, 3, 1)
    return restore_format(f, x)


class PrunedHead(nn.Module):
    """Stands where the decoder's output convolution was, after ``prune_intermediate_layers``.

    Calling it raises: a pruned network computes features only.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raise ``RuntimeError``: there is no decoder to restore an image with."""
        raise RuntimeError(
            "CLGINet: this network was pruned to a feature extractor by prune_intermediate_layers() "
            "(its decoder is gone), so it cannot restore an image; "
            "call forward_intermediates(x, intermediates_only=True) for its features"
        )

    def extra_repr(self) -> str:
        return "removed by prune_intermediate_layers"


def group_matcher(config: CLGINetConfig, coarse: bool = False) -> dict[str, Any]:
    """timm's parameter-group matcher for a network built from ``config``, in run order.

    ``stem`` is the embedding convolution. ``blocks`` are ordered as the
    network runs them: encoder level 0, its downsample, level 1, ..., the
    bottleneck, then per decoder level its upsample, its fusion unit and its
    blocks, then the refinement blocks and the output convolution. With
    ``coarse`` one group per stage (an encoder level with its downsample, the
    bottleneck, a decoder level with its upsample and fusion, the refinement,
    the output convolution); otherwise one group per coupling block (and one
    per downsample, upsample and fusion unit). The patterns are literal, one
    per module, because timm orders groups by the numbers a pattern yields and
    the stages' own indices (``encoders.0``, ``decoders.0``) do not give the
    run order.
    """
    depths, blocks = config.depths, []
    decoder_levels = range(LEVELS - 2, -1, -1)  # deepest first: decoders.0 runs at level 2
    if coarse:
        blocks += [(rf"^(?:encoders|downs)\.{level}\.", (level,)) for level in range(LEVELS - 1)]
        blocks.append((r"^bottleneck\.", (LEVELS - 1,)))
        blocks += [(rf"^(?:ups|fusions|decoders)\.{i}\.", (LEVELS + i,)) for i in range(LEVELS - 1)]
    else:
        for level in range(LEVELS - 1):
            blocks += [(rf"^encoders\.{level}\.{b}\.", (level, b)) for b in range(depths[level])]
            blocks.append((rf"^downs\.{level}\.", (level, _AFTER_BLOCKS)))
        blocks += [(rf"^bottleneck\.{b}\.", (LEVELS - 1, b)) for b in range(depths[-1])]
        for i, level in enumerate(decoder_levels):
            stage = LEVELS + i
            blocks += [(rf"^ups\.{i}\.", (stage, 0)), (rf"^fusions\.{i}\.", (stage, 1))]
            blocks += [(rf"^decoders\.{i}\.{b}\.", (stage, 2 + b)) for b in range(depths[level])]
    refinement, head = 2 * LEVELS - 1, 2 * LEVELS
    if coarse:
        blocks.append((r"^refinement\.", (refinement,)))
    else:
        blocks += [(rf"^refinement\.{b}\.", (refinement, b)) for b in range(config.refinement_depth)]
    blocks.append((r"^head\.", (head,)))
    return {"stem": r"^embed\.", "blocks": blocks}
