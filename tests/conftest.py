"""Shared test configuration: hypothesis profiles and helpers."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import pytest
import torch
from hypothesis import HealthCheck, settings
from torch import nn

# `ci`: derandomized and bounded, what CI runs. `dev`: many more examples for deep local runs:
#   HYPOTHESIS_PROFILE=dev python -m pytest
settings.register_profile(
    "ci",
    max_examples=20,
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev",
    max_examples=400,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def wake(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every zero-started parameter a random, realistically sized value.

    Residual branches start at zero through their zero-initialised last
    projection (a fresh block is the identity), which would make equivalence
    and gradient tests pass trivially; this turns the branches on so the tests
    exercise them. Zero weights get PyTorch's default conv initialisation,
    zero layer scales (none in a fresh model: they start at one) a value in
    [0.2, 0.6], other zero vectors one in [-0.1, 0.1].
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.any():
                continue
            if p.ndim > 1:
                bound = 1.0 / math.sqrt(p[0].numel())
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * bound)
            elif name.endswith("gamma"):
                p.copy_(torch.rand(p.shape, generator=g) * 0.4 + 0.2)
            else:
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * 0.1)
    return module


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread for a test module (restored after).

    The inputs of these modules are tiny; on a shared 2-core machine OpenMP
    threads otherwise spin at every barrier and make each pass many times
    slower. Use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
