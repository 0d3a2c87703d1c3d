"""Gradients: gradcheck in float64 and gradient flow to every parameter."""

from __future__ import annotations

import pytest
import torch
from _factories import SINGLE_INPUT, hgu_inputs
from conftest import wake
from torch import nn

import clg_layers as cl


@pytest.mark.parametrize("name", sorted(SINGLE_INPUT))
def test_gradcheck_single_input(name: str) -> None:
    m = wake(SINGLE_INPUT[name](4)).double().eval()
    x = torch.randn(1, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x,), eps=1e-6, atol=1e-5, rtol=1e-3)


def test_gradcheck_hgu() -> None:
    m = cl.HybridGatedUnit([8, 4, 16], 6).double()
    feats = [f.requires_grad_() for f in hgu_inputs(1, 5, 6, dtype=torch.float64)]
    assert torch.autograd.gradcheck(lambda *f: m(list(f)), tuple(feats), eps=1e-6, atol=1e-5, rtol=1e-3)


def _two_steps(m: nn.Module, run) -> None:
    """One SGD step from the fresh (zero-started) state, then a second backward."""
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        run().square().mean().backward()
        if _ == 0:
            opt.step()


@pytest.mark.parametrize("name", sorted(SINGLE_INPUT))
def test_every_parameter_gets_gradient(name: str) -> None:
    """A fresh module learns: after one step every parameter gets a finite, non-zero gradient."""
    m = SINGLE_INPUT[name](8)
    x = torch.randn(2, 8, 9, 11)
    target = torch.randn_like(x)
    _two_steps(m, lambda: m(x) - target)
    for pname, p in m.named_parameters():
        assert p.grad is not None, f"{name}.{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}.{pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name}.{pname} has an all-zero gradient"


def test_hgu_every_parameter_gets_gradient() -> None:
    m = cl.HybridGatedUnit([8, 4, 16], 6)
    feats = hgu_inputs(2, 6, 7)
    _two_steps(m, lambda: m(feats) - 1.0)
    for pname, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname
