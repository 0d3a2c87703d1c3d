"""torch.compile(fullgraph=True) traces the layers without graph breaks and matches eager.

Each first compile costs ~20-40 s on 2 cores, so this file keeps to one compile.
"""

from __future__ import annotations

import torch
from conftest import wake

import clg_layers as cl


def test_coupling_block_and_hgu_compile_fullgraph() -> None:
    block = wake(cl.CouplingBlock(16, num_heads=2, window_size=4)).eval()
    hgu = cl.HybridGatedUnit([16, 8], 16).eval()

    def f(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return hgu([block(x), y])

    x, y = torch.randn(1, 16, 13, 11), torch.randn(1, 8, 7, 6)  # 13×11: window padding is exercised
    compiled = torch.compile(f, fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, y), f(x, y), rtol=1e-4, atol=1e-5)
