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


def to_0_2_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A current CLGINet state dict in clg-layers 0.2.0's key layout (what a 0.2.0 checkpoint holds).

    The inverse of :func:`clg_layers.migrate_state_dict`: ``attn.q/k/v`` (linear) and
    ``attn.q_dw/k_dw/v_dw`` become one ``attn.qkv`` 1×1 convolution and one ``attn.qkv_dw``;
    GNFF's ``fc1_a/fc1_b`` one ``fc1`` 1×1 convolution; the linear ``attn.proj``, ``ffn.fc2``
    and ``fuse`` weights 1×1 convolution weights.
    """
    fused_names = {  # the first part's module -> (fused module, all parts in order)
        "attn.q": ("attn.qkv", ("attn.q", "attn.k", "attn.v")),
        "attn.q_dw": ("attn.qkv_dw", ("attn.q_dw", "attn.k_dw", "attn.v_dw")),
        "ffn.fc1_a": ("ffn.fc1", ("ffn.fc1_a", "ffn.fc1_b")),
    }
    later_parts = {p for _, parts in fused_names.values() for p in parts[1:]}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        block, _, name = module.rpartition(".")
        owner, _, child = block.rpartition(".")
        local = f"{child}.{name}"
        if local in later_parts:
            continue  # concatenated with the first part
        if local in fused_names:
            fused, parts = fused_names[local]
            value = torch.cat([state[f"{owner}.{p}.{leaf}"] for p in parts])
            key = f"{owner}.{fused}.{leaf}"
        if (
            value.ndim == 2
            and leaf == "weight"
            and (local in fused_names or local in ("attn.proj", "ffn.fc2") or name == "fuse")
        ):
            value = value[:, :, None, None]
        out[key] = value
    return out
