"""Every documented bad input raises ValueError/TypeError with a message naming the module."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

import clg_layers as cl

CONSTRUCTION: list[tuple[Callable[[], object], type[Exception], str]] = [
    (lambda: cl.ChannelAttention(0), ValueError, "ChannelAttention: `dim` must be >= 1"),
    (lambda: cl.ChannelAttention(8.0), TypeError, "ChannelAttention: `dim` must be an int"),
    (lambda: cl.ChannelAttention(8, reduction=0), ValueError, "`reduction`"),
    (lambda: cl.CNNLayer(8, kernel_size=4), ValueError, "CNNLayer: `kernel_size` must be odd"),
    (lambda: cl.CNNLayer(8, kernel_size=-3), ValueError, "CNNLayer: `kernel_size` must be >= 1"),
    (lambda: cl.CNNLayer(8, groups=3), ValueError, "CNNLayer: `dim` (8) must be divisible by `groups` (3)"),
    (lambda: cl.CNNLayer(True), TypeError, "CNNLayer: `dim` must be an int"),
    (lambda: cl.DBPA(10, num_heads=3), ValueError, "DBPA: `dim` (10) must be divisible by `num_heads` (3)"),
    (lambda: cl.DBPA(8, num_heads=0), ValueError, "DBPA: `num_heads` must be >= 1"),
    (lambda: cl.DBPA(8, window_size=0), ValueError, "DBPA: `window_size` must be >= 1"),
    (lambda: cl.DBPA(8, kernel_size=6), ValueError, "DBPA: `kernel_size` must be odd"),
    (lambda: cl.DBPA(8, spatial=False, channel=False), ValueError, "DBPA: at least one"),
    (lambda: cl.DBPA(8, bias=1), TypeError, "DBPA: `bias` must be a bool"),
    (lambda: cl.GNFF(8, expansion=0), ValueError, "GNFF: `expansion` must be a finite number > 0"),
    (lambda: cl.GNFF(8, expansion=float("nan")), ValueError, "GNFF: `expansion`"),
    (lambda: cl.GNFF(8, expansion="2"), TypeError, "GNFF: `expansion` must be a real number"),
    (lambda: cl.TransformerLayer(8, drop_path=1.0), ValueError, "TransformerLayer: `drop_path`"),
    (lambda: cl.TransformerLayer(8, drop_path=-0.1), ValueError, "TransformerLayer: `drop_path`"),
    (lambda: cl.CouplingBlock(8, coupling="add"), ValueError, "CouplingBlock: `coupling` must be one of"),
    (lambda: cl.CouplingBlock(9, num_heads=2), ValueError, "must be divisible by `num_heads`"),
    (lambda: cl.HybridGatedUnit([], 8), ValueError, "HybridGatedUnit: `in_dims` must list at least two"),
    (lambda: cl.HybridGatedUnit([8], 8), ValueError, "at least two"),
    (lambda: cl.HybridGatedUnit(8, 8), TypeError, "HybridGatedUnit: `in_dims` must be a sequence"),
    (lambda: cl.HybridGatedUnit([8, 0], 8), ValueError, "`in_dims[1]` must be >= 1"),
    (lambda: cl.HybridGatedUnit([8, 4], 0), ValueError, "`out_dim` must be >= 1"),
]


@pytest.mark.parametrize(("make", "exc", "msg"), CONSTRUCTION)
def test_bad_construction(make: Callable[[], object], exc: type[Exception], msg: str) -> None:
    with pytest.raises(exc) as info:
        make()
    assert msg in str(info.value)


MODULES = {
    "ChannelAttention": lambda: cl.ChannelAttention(8),
    "CNNLayer": lambda: cl.CNNLayer(8),
    "DBPA": lambda: cl.DBPA(8, num_heads=2),
    "GNFF": lambda: cl.GNFF(8),
    "TransformerLayer": lambda: cl.TransformerLayer(8),
    "CouplingBlock": lambda: cl.CouplingBlock(8),
}

BAD_INPUTS: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    ("3-D", lambda: torch.randn(8, 5, 5), ValueError, "must be 4-D (B, C, H, W), got 3-D"),
    ("5-D", lambda: torch.randn(1, 8, 5, 5, 1), ValueError, "got 5-D"),
    ("channels", lambda: torch.randn(1, 7, 5, 5), ValueError, "must have 8 channels"),
    ("int", lambda: torch.ones(1, 8, 5, 5, dtype=torch.int64), TypeError, "floating dtype, got torch.int64"),
    ("bool", lambda: torch.ones(1, 8, 5, 5, dtype=torch.bool), TypeError, "floating dtype"),
    ("complex", lambda: torch.ones(1, 8, 5, 5, dtype=torch.complex64), TypeError, "floating dtype"),
    ("empty H", lambda: torch.randn(1, 8, 0, 5), ValueError, "B, H, W >= 1"),
    ("empty B", lambda: torch.randn(0, 8, 5, 5), ValueError, "B, H, W >= 1"),
    ("numpy", lambda: torch.randn(1, 8, 5, 5).numpy(), TypeError, "must be a torch.Tensor"),
]


@pytest.mark.parametrize("module", sorted(MODULES))
@pytest.mark.parametrize(("case", "make_x", "exc", "msg"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input(
    module: str, case: str, make_x: Callable[[], object], exc: type[Exception], msg: str
) -> None:
    m = MODULES[module]()
    with pytest.raises(exc) as info:
        m(make_x())
    assert str(info.value).startswith(f"{module}:")
    assert msg in str(info.value)


def test_hgu_bad_features() -> None:
    m = cl.HybridGatedUnit([8, 4], 6)
    good = [torch.randn(2, 8, 6, 6), torch.randn(2, 4, 3, 3)]
    with pytest.raises(ValueError, match=r"HybridGatedUnit: expected 2 feature maps .* got 1"):
        m(good[:1])
    with pytest.raises(ValueError, match=r"expected 2 feature maps"):
        m([])
    with pytest.raises(ValueError, match=r"features\[1\] must have 4 channels"):
        m([good[0], torch.randn(2, 5, 3, 3)])
    with pytest.raises(ValueError, match=r"share the batch size; features\[0\] has 2, features\[1\] has 3"):
        m([good[0], torch.randn(3, 4, 3, 3)])
    with pytest.raises(TypeError, match=r"HybridGatedUnit: `features` must be a list or tuple"):
        m(good[0])
    with pytest.raises(TypeError, match=r"features\[0\] must have a floating dtype"):
        m([good[0].long(), good[1]])
    with pytest.raises(ValueError, match=r"features\[1\] must be 4-D"):
        m([good[0], good[1][0]])
