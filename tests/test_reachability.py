"""Every parameterised sub-layer is called as a module, on every execution path.

Hooks, LoRA wrappers, ``torch.nn.utils.prune`` and ``parametrize`` only work
when the layer's own ``forward`` runs. These tests check that for every public
module and for ``CLGINet``, in training and in inference, on small maps and on
maps large enough for the banded / memory-lean inference paths.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import torch
from _factories import SINGLE_INPUT, hgu_inputs
from conftest import wake
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import clg_layers as cl

pytestmark = pytest.mark.usefixtures("one_thread")

MODULES: dict[str, Callable[[], tuple[nn.Module, Callable[[int, int], tuple]]]] = {
    **{
        name: (lambda make=make: (make(8), lambda h, w: (torch.randn(1, 8, h, w),)))
        for name, make in SINGLE_INPUT.items()
    },
    "HybridGatedUnit": lambda: (cl.HybridGatedUnit([8, 4, 16], 8), lambda h, w: (hgu_inputs(1, h, w),)),
    "CLGINet": lambda: (
        cl.build("clginet-tiny", dim=8, depths=(1, 1, 1, 1), num_heads=1, window_size=4),
        lambda h, w: (torch.rand(1, 3, h, w),),
    ),
}

SMALL, LARGE = (11, 13), (72, 40)


def parameterised_submodules(root: nn.Module) -> dict[str, nn.Module]:
    """Every sub-module that holds parameters (its own or its children's) and is called itself.

    ``ModuleList`` containers are skipped: they have no ``forward``, their
    elements are called one by one (and are listed here themselves).
    """
    return {
        name: m
        for name, m in root.named_modules()
        if name and not isinstance(m, nn.ModuleList) and any(True for _ in m.parameters())
    }


@contextmanager
def lean_paths(root: nn.Module) -> Iterator[None]:
    """Lower the thresholds of the banded and memory-lean inference paths so a small map takes them."""
    saved = []
    for m in root.modules():
        for attr in ("band_bytes", "lean_bytes"):
            if hasattr(m, attr):
                saved.append((m, attr, m.__dict__.get(attr)))
                setattr(m, attr, 1 if attr == "band_bytes" else 0)
    try:
        yield
    finally:
        for m, attr, value in saved:
            if value is None:
                delattr(m, attr)
            else:
                setattr(m, attr, value)


def run(module: nn.Module, args: tuple, *, train: bool, lean: bool) -> torch.Tensor:
    module.train(train)
    if train:
        out = module(*args)
        out.square().mean().backward()
        return out.detach()
    with torch.inference_mode():
        if lean:
            with lean_paths(module):
                return module(*args)
        return module(*args)


@pytest.mark.parametrize("name", sorted(MODULES))
@pytest.mark.parametrize("mode", ["train", "eval", "eval-banded"])
def test_every_forward_hook_and_pre_hook_fires(name: str, mode: str) -> None:
    module, inputs = MODULES[name]()
    module = wake(module)
    subs = parameterised_submodules(module)
    fired: dict[str, set[str]] = {"pre": set(), "post": set()}
    handles = []
    for sub_name, sub in subs.items():
        handles.append(sub.register_forward_pre_hook(lambda m, a, n=sub_name: fired["pre"].add(n)))
        handles.append(sub.register_forward_hook(lambda m, a, o, n=sub_name: fired["post"].add(n)))
    size = LARGE if mode == "eval-banded" else SMALL
    run(module, inputs(*size), train=mode == "train", lean=mode == "eval-banded")
    for h in handles:
        h.remove()
    assert subs, name
    assert fired["pre"] == set(subs), f"pre-hooks never fired: {sorted(set(subs) - fired['pre'])}"
    assert fired["post"] == set(subs), f"hooks never fired: {sorted(set(subs) - fired['post'])}"


class Perturbed(nn.Module):
    """Wraps a layer the way LoRA does: the wrapped layer's output plus a fixed offset.

    The offset is random, not constant: a constant added to a key projection, or
    to the logits of a softmax over inputs, is invisible by the softmax's shift
    invariance, which would make the check fail for a reason that says nothing
    about bypassing.
    """

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.inner(x)
        g = torch.Generator().manual_seed(y.numel())
        return y + 0.5 * torch.randn(y.shape, generator=g, dtype=y.dtype)


def replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, new)


@given(
    name=st.sampled_from(sorted(MODULES)),
    pick=st.integers(0, 10_000),
    mode=st.sampled_from(["train", "eval", "eval-banded"]),
)
def test_wrapping_any_linear_or_conv_changes_the_output(name: str, pick: int, mode: str) -> None:
    """No computation bypasses a sub-layer: a wrapper around any one of them changes the output."""
    torch.manual_seed(0)
    module, inputs = MODULES[name]()
    module = wake(module)
    layers = [n for n, m in module.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    target = layers[pick % len(layers)]
    size = LARGE if mode == "eval-banded" else SMALL
    args = inputs(*size)
    ref = run(module, args, train=mode == "train", lean=mode == "eval-banded")
    replace(module, target, Perturbed(module.get_submodule(target)))
    out = run(module, args, train=mode == "train", lean=mode == "eval-banded")
    # Bit-for-bit: a bypassed layer leaves the (deterministic) output exactly unchanged,
    # while a gate deep in the U-Net may move it by less than any useful tolerance.
    assert not torch.equal(out, ref), f"{name}: wrapping {target} changed nothing ({mode})"


@pytest.mark.parametrize("mode", ["eval", "eval-banded", "train"])
def test_iterative_pruning_follows_the_mask(mode: str) -> None:
    """torch.nn.utils.prune recomputes `weight` in a pre-hook; changing the mask must move the output."""
    from torch.nn.utils import prune

    module, inputs = MODULES["CLGINet"]()
    module = wake(module)
    args = inputs(*(LARGE if mode == "eval-banded" else SMALL))
    layer = module.encoders[0][0].transformer.attn.q
    prune.l1_unstructured(layer, "weight", amount=0.5)
    first = run(module, args, train=mode == "train", lean=mode == "eval-banded")
    with torch.no_grad():
        layer.weight_mask.zero_()  # prune everything
    second = run(module, args, train=mode == "train", lean=mode == "eval-banded")
    assert (first - second).abs().max() > 1e-4


def test_parametrization_changes_what_the_layer_computes() -> None:
    from torch.nn.utils import parametrize

    class Doubled(nn.Module):
        def forward(self, w: torch.Tensor) -> torch.Tensor:
            return 2 * w

    module, inputs = MODULES["TransformerLayer"]()
    module = wake(module).eval()
    args = inputs(*SMALL)
    with torch.no_grad():
        ref = module(*args)
        parametrize.register_parametrization(module.ffn.fc2, "weight", Doubled())
        out = module(*args)
    assert (out - ref).abs().max() > 1e-4


def test_hooks_that_keep_outputs_see_them_unchanged() -> None:
    """The in-place inference paths never overwrite a tensor a hook has seen."""
    module, inputs = MODULES["CLGINet"]()
    module = wake(module).eval()
    kept: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def keep(name: str) -> Callable:
        def hook(m: nn.Module, a: tuple, out: torch.Tensor) -> None:
            if isinstance(out, torch.Tensor):
                kept[name] = (out, out.clone())

        return hook

    for name, sub in module.named_modules():
        if name and not isinstance(sub, nn.ModuleList):
            sub.register_forward_hook(keep(name))
    with torch.inference_mode():
        module(*inputs(*SMALL))
    changed = [name for name, (live, copy) in kept.items() if not torch.equal(live, copy)]
    assert not changed, f"outputs overwritten after their hooks ran: {changed}"
