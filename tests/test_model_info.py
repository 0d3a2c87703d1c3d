"""MAC counting counts attention, checked against hand-computed figures."""

from __future__ import annotations

import torch
from torch import nn

import clg_layers as cl


def test_dbpa_macs_by_hand() -> None:
    # DBPA(4 channels, 1 head, window 4, kernel 3) on a 4×8×8 input:
    qkv = 4 * 12 * 64  # 1×1 conv, 4 -> 12 channels, 64 pixels
    dw = 12 * 9 * 64  # 3×3 depthwise on 12 channels
    spatial = 4 * (16 * 16 * 4) * 2  # 4 windows of 16 tokens, d = 4: q·kᵀ and attn·v
    channel = (4 * 4 * 64) * 2  # one 4×4 map over 64 pixels: q·kᵀ and attn·v
    gate = 4 * 4 + 4 * 4  # MLP 4 -> 4 -> 4 on the pooled 1×1 map
    proj = 4 * 4 * 64
    expected = qkv + dw + spatial + channel + gate + proj
    assert expected == 21_280
    assert cl.count_macs(cl.DBPA(4, window_size=4, kernel_size=3), (4, 8, 8)) == expected


def test_attention_is_not_counted_as_zero() -> None:
    with_attn = cl.count_macs(cl.DBPA(8, window_size=8, channel=False), (8, 32, 32))
    # window attention alone: 16 windows × 2 × 64² tokens² × 8 dims
    assert with_attn >= 16 * 2 * 64 * 64 * 8


def _conv_macs(model: nn.Module, x: torch.Tensor) -> int:
    """MACs of every Conv2d and Linear, from its weight shape and output size, via forward hooks.

    Every projection is a module call (none reads another module's weights), so
    the hooks see every one of them.
    """
    total = 0

    def conv_hook(mod: nn.Conv2d, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        total += out.shape[0] * out.shape[2] * out.shape[3] * mod.weight.numel()

    def linear_hook(mod: nn.Linear, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() // mod.out_features * mod.weight.numel()

    handles = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    handles += [m.register_forward_hook(linear_hook) for m in model.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total


def test_network_macs_are_convs_plus_attention() -> None:
    model = cl.CLGINet(dim=8, depths=(1, 1, 1, 1), num_heads=1, window_size=4, refinement_depth=1).eval()
    x = torch.rand(1, 3, 32, 32)
    attention = 0
    for level, (h, c) in enumerate([(32, 8), (16, 16), (8, 32), (4, 64)]):
        blocks = 2 if level < 3 else 1  # encoder + decoder, or the bottleneck
        blocks += 1 if level == 0 else 0  # refinement
        pixels = h * h
        attention += blocks * (2 * pixels * 16 * c + 2 * pixels * c * c)  # windows of 16 tokens + channel map
    assert cl.count_macs(model, (3, 32, 32)) == _conv_macs(model, x) + attention


def test_model_info_on_instance_and_bad_input() -> None:
    model = cl.build("clginet-tiny")
    info = cl.model_info(model, input_size=(3, 64, 64))
    assert info.name == "clginet-tiny" and info.params == sum(p.numel() for p in model.parameters())
    assert info.macs == cl.model_info("clginet-tiny", input_size=(3, 64, 64)).macs
    assert info.supports_bf16 and info.supports_half
    import pytest

    with pytest.raises(TypeError, match=r"expected a model name or an nn\.Module"):
        cl.model_info(3.0)
    with pytest.raises(ValueError, match="`input_size` must be"):
        cl.model_info("clginet-tiny", input_size=(3, 64))
