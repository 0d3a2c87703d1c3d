"""DBPA's fusions of its two projections (``gate``, ``sum``): what each computes, checked against
the one-branch layers."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import clg_layers as cl
from clg_layers import DBPA_FUSIONS


def _trio(fusion: str, dim: int = 8, seed: int = 0) -> tuple[cl.DBPA, cl.DBPA, cl.DBPA]:
    """A two-branch DBPA with ``fusion`` and its spatial-only and channel-only twins with the same
    q/k/v weights.

    The twins share the two-branch layer's output projection too. No biases,
    so outputs add.
    """
    torch.manual_seed(seed)
    both = cl.DBPA(dim, num_heads=2, window_size=4, kernel_size=3, fusion=fusion).double().eval()
    spatial = cl.DBPA(dim, num_heads=2, window_size=4, kernel_size=3, channel=False).double().eval()
    channel = cl.DBPA(dim, num_heads=2, window_size=4, kernel_size=3, spatial=False).double().eval()
    with torch.no_grad():
        torch.nn.init.uniform_(both.temperature, 0.5, 3.0)
        for twin in (spatial, channel):
            for name in ("q", "k", "v", "q_dw", "k_dw", "v_dw"):
                getattr(twin, name).load_state_dict(getattr(both, name).state_dict())
        channel.temperature.copy_(both.temperature)
        spatial.proj.weight.copy_(both.proj.weight)
        channel.proj.weight.copy_(both.proj.weight)
    return both, spatial, channel


@given(h=st.integers(1, 13), w=st.integers(1, 13))
def test_sum_adds_the_two_projections(h: int, w: int) -> None:
    """``sum``: proj(S + C) = proj(S) + proj(C), for any map size (window padding included)."""
    both, spatial, channel = _trio("sum")
    x = torch.randn(2, 8, h, w, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(both(x), spatial(x) + channel(x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("open_to", ["spatial", "channel"])
def test_gate_selects_a_branch_when_saturated(open_to: str) -> None:
    """A gate driven to 1 (or 0) passes only the window (or only the channel) projection."""
    both, spatial, channel = _trio("gate")
    sign = 1.0 if open_to == "spatial" else -1.0
    with torch.no_grad():
        both.gate[-1].weight.zero_()
        both.gate[-1].bias.fill_(50.0 * sign)
    x = torch.randn(2, 8, 11, 9, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(
            both(x), (spatial if open_to == "spatial" else channel)(x), rtol=1e-9, atol=1e-9
        )


def test_half_open_gate_is_half_the_sum() -> None:
    """With the gate at exactly 0.5, ``gate`` computes half of what ``sum`` does (same weights)."""
    gate, _, _ = _trio("gate")
    summed, _, _ = _trio("sum")
    report = gate.load_state_dict(summed.state_dict(), strict=False)
    assert not report.unexpected_keys and all(k.startswith("gate.") for k in report.missing_keys)
    with torch.no_grad():
        gate.gate[-1].weight.zero_()
        gate.gate[-1].bias.zero_()
    x = torch.randn(2, 8, 9, 10, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(gate(x), 0.5 * summed(x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("fusion", DBPA_FUSIONS)
def test_every_parameter_learns(fusion: str) -> None:
    """Each fusion's parameters (the gate's included) get a finite, non-zero gradient."""
    torch.manual_seed(0)
    m = cl.DBPA(8, num_heads=2, window_size=4, fusion=fusion)
    x = torch.randn(2, 8, 10, 7)
    m(x).square().mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("fusion", DBPA_FUSIONS)
def test_banded_inference_is_the_same_function(fusion: str) -> None:
    torch.manual_seed(0)
    m = cl.DBPA(8, num_heads=2, window_size=4, fusion=fusion).eval()
    x = torch.randn(1, 8, 30, 21)
    with torch.no_grad():
        whole = m(x)
        m.band_bytes = 1  # bands of one row of windows
        banded = m(x)
    torch.testing.assert_close(banded, whole, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fusion", DBPA_FUSIONS)
def test_network_option_reaches_every_dbpa_and_round_trips(fusion: str, tmp_path) -> None:
    model = cl.build("clginet-tiny", attn_fusion=fusion)
    fusions = {m.fusion for m in model.modules() if isinstance(m, cl.DBPA)}
    assert fusions == {fusion}
    assert model.config["attn_fusion"] == fusion
    path = tmp_path / "m.safetensors"
    cl.save_checkpoint(model, path)
    again = cl.build("clginet-tiny", checkpoint=path)
    assert again.config["attn_fusion"] == fusion
    x = torch.rand(1, 3, 20, 20)
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), model.eval()(x))


def test_unknown_fusion_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"DBPA: `fusion` must be one of .*got 'pixel'"):
        cl.DBPA(8, fusion="pixel")
    with pytest.raises(ValueError, match=r"CLGINet: `attn_fusion`"):
        cl.CLGINet(dim=8, attn_fusion="both")
