"""DistributedDataParallel on the CPU: gradients match a single process, no parameter is unused.

What this file proves: two processes (``torch.multiprocessing`` spawn, ``gloo``
backend, rendezvous on ``127.0.0.1`` at a free port), each holding
``clginet-tiny`` built from the same seed and woken so every parameter matters,
wrapped in ``DistributedDataParallel`` with the default
``find_unused_parameters=False``, each training on its half of a fixed batch:

* after the first backward, every rank's gradients equal (to 1e-5) those of a
  single process on the whole batch, for every parameter;
* after three SGD (momentum) steps the parameters are bitwise identical on
  both ranks and equal (to 1e-5) those of the single-process run;
* the same holds for the ablation configurations ``clginet-tiny`` with
  ``coupling="none"`` and ``CouplingBlock`` with both DBPA branches, spatial
  only (``channel=False``), channel only (``spatial=False``) and without the
  coupling connection. DDP without ``find_unused_parameters`` raises in the next
  forward when a parameter took no part in the previous backward, so passing
  several steps proves that no configuration leaves a parameter unused; a
  negative control (a block with one extra, unused parameter) shows that DDP
  does raise in this setting.

Workers use one intra-op thread and report through ``torch.save`` files in a
temporary folder. The gloo transport is pinned to the loopback interface on Linux.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import wake
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

import clg_layers as cl

WORLD = 2
STEPS = 3
BATCH, HEIGHT, WIDTH = 4, 13, 15  # each rank gets 2 images; odd sizes so the padding path runs
TOL = dict(rtol=1e-5, atol=1e-5)

#: name -> builder (called after seeding; the result is woken)
CONFIGS: dict[str, Callable[[], nn.Module]] = {
    "clginet-tiny": lambda: cl.build("clginet-tiny"),
    "clginet-tiny coupling=none": lambda: cl.build("clginet-tiny", coupling="none"),
    "CouplingBlock": lambda: cl.CouplingBlock(8, num_heads=2, window_size=4),
    "CouplingBlock spatial only": lambda: cl.CouplingBlock(8, num_heads=2, window_size=4, channel=False),
    "CouplingBlock channel only": lambda: cl.CouplingBlock(8, num_heads=2, window_size=4, spatial=False),
    "CouplingBlock coupling=none": lambda: cl.CouplingBlock(8, num_heads=2, window_size=4, coupling="none"),
}


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return wake(CONFIGS[name](), seed=1).train()


def _batch(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    channels = model.in_chans if isinstance(model, cl.CLGINet) else model.dim
    g = torch.Generator().manual_seed(3)
    x = torch.rand(BATCH, channels, HEIGHT, WIDTH, generator=g)
    return x, torch.rand(x.shape, generator=g)


def _loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (out - target).square().mean()


def _optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


def _train(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> tuple[dict, dict]:
    """``STEPS`` SGD steps; returns the gradients of the first backward and the final parameters."""
    opt = _optimizer(model)
    net = model.module if isinstance(model, DDP) else model
    first: dict[str, torch.Tensor] = {}
    for step in range(STEPS):
        opt.zero_grad(set_to_none=True)
        _loss(model(x), target).backward()
        if step == 0:
            for name, p in net.named_parameters():
                if p.grad is None:
                    raise RuntimeError(f"parameter {name} got no gradient")
                first[name] = p.grad.detach().clone()
        opt.step()
    return first, {name: p.detach().clone() for name, p in net.named_parameters()}


def _worker(rank: int, world: int, init_method: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    if sys.platform.startswith("linux"):
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group(
        "gloo", init_method=init_method, rank=rank, world_size=world, timeout=timedelta(seconds=60)
    )
    try:
        results: dict[str, dict] = {}
        for name in CONFIGS:
            model = _model(name)
            x, target = _batch(model)
            half = BATCH // world
            part = slice(rank * half, (rank + 1) * half)
            grads, params = _train(DDP(model), x[part], target[part])
            results[name] = {"grads": grads, "params": params}

        # Negative control: one parameter outside the graph must make DDP raise in the next forward.
        block = _model("CouplingBlock")
        block.register_parameter("unused", nn.Parameter(torch.zeros(3)))
        x, target = _batch(block)
        control = "DDP accepted an unused parameter"
        try:
            _train(DDP(block), x[rank::world], target[rank::world])
        except RuntimeError as err:
            control = str(err)
        results["control"] = {"message": control}  # type: ignore[dict-item]
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(WORLD, f"tcp://127.0.0.1:{_free_port()}", str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_ddp_matches_single_process(ddp_results: list[dict], name: str) -> None:
    model = _model(name)
    x, target = _batch(model)
    ref_grads, ref_params = _train(model, x, target)
    # Not vacuous: almost every parameter has a non-zero gradient (a squeeze-excitation bottleneck
    # whose ReLUs are all off for this batch legitimately gets an all-zero one).
    live = sum(bool(g.any()) for g in ref_grads.values())
    assert live >= 0.9 * len(ref_grads), f"only {live} of {len(ref_grads)} gradients are non-zero"

    for rank, result in enumerate(ddp_results):
        grads, params = result[name]["grads"], result[name]["params"]
        assert grads.keys() == ref_grads.keys()
        for what, got, want in (("grad", grads, ref_grads), ("param", params, ref_params)):
            for key, ref in want.items():
                torch.testing.assert_close(
                    got[key], ref, **TOL, msg=lambda m, k=key, r=rank, w=what: f"rank {r} {w} {k}: {m}"
                )

    # In sync: every rank holds bitwise the same parameters after the steps.
    first, *others = (result[name]["params"] for result in ddp_results)
    for other in others:
        assert all(torch.equal(first[k], other[k]) for k in first)


def test_ddp_raises_on_an_unused_parameter(ddp_results: list[dict]) -> None:
    for result in ddp_results:
        message = result["control"]["message"]
        assert "did not receive grad" in message or "unused" in message.lower(), message
