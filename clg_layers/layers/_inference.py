"""When a layer may take its separate inference path, and the switch that turns those paths off.

Every layer's ``forward`` is its equations, each child called as ``child(x)``:
the *plain path*, the reference, which training, ``torch.fx``, ``torch.func``,
``torch.compile`` and ``torch.export`` always run. Some layers also have one
``_forward_inference`` method that computes the same function with less
memory (bands of rows, buffers reused in place). :func:`use_inference_path`
decides, at every call, whether that method may run: only in plain eager
inference, only when no hook could observe a step it fuses or repeats, and
only when every child it relies on is the stock module it was written for.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.modules.module import _global_forward_hooks, _global_forward_pre_hooks

try:
    from torch._C._functorch import is_functorch_wrapped_tensor as _functorch_wrapped
except ImportError:  # pragma: no cover - a torch without functorch's C bindings

    def _functorch_wrapped(x: torch.Tensor) -> bool:
        return False


__all__ = [
    "eager_inference",
    "fast_inference_enabled",
    "observed",
    "set_fast_inference",
    "stock",
    "transformed",
    "use_inference_path",
]

# The process-wide switch (compare timm's ``set_fused_attn``). The environment variable sets its
# start value, so a whole run can be checked on the plain path without changing code.
_FAST_INFERENCE = os.environ.get("CLG_LAYERS_FAST_INFERENCE", "1").strip().lower() not in ("0", "false", "no")


def set_fast_inference(enabled: bool) -> None:
    """Turn the layers' separate inference paths on or off for the whole process.

    Off, every layer runs its plain ``forward`` (its equations) in inference
    too; outputs are the same function, at the plain path's memory use. Each
    layer instance also has a ``fast_inference`` attribute for a per-module
    choice. The start value comes from the environment variable
    ``CLG_LAYERS_FAST_INFERENCE`` (``0`` turns the paths off).

    Args:
        enabled: ``True`` (the default) allows the inference paths.
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"set_fast_inference: `enabled` must be a bool, got {type(enabled).__name__}")
    global _FAST_INFERENCE
    _FAST_INFERENCE = enabled


def fast_inference_enabled() -> bool:
    """Whether the process-wide switch allows the layers' inference paths (see :func:`set_fast_inference`)."""
    return _FAST_INFERENCE


def transformed(x: object) -> bool:
    """Whether ``x`` is not a plain tensor: an ``fx`` proxy, or a ``torch.func`` (vmap/grad/jvp) wrapper.

    Memory-layout questions and in-place tricks are meaningless (or refused)
    for such values, so layers answer them only for plain tensors. Under
    ``torch.compile`` the answer is ``False``: dynamo traces real tensors (and
    cannot trace the functorch query).
    """
    if not isinstance(x, torch.Tensor):
        return True
    return not torch.compiler.is_compiling() and _functorch_wrapped(x)


def eager_inference() -> bool:
    """Whether this is plain eager execution with autograd off.

    Autograd needs the plain ops; under ``torch.compile`` / ``torch.export`` /
    tracing the compiler plans buffers itself and needs no size-dependent
    Python loops.
    """
    is_exporting = getattr(torch.compiler, "is_exporting", lambda: False)
    return not (
        torch.is_grad_enabled() or torch.compiler.is_compiling() or is_exporting() or torch.jit.is_tracing()
    )


def observed(module: nn.Module) -> bool:
    """Whether a forward hook or pre-hook (global, or on a module inside ``module``) could see a step of it.

    ``module``'s own hooks are not counted: they see its input and final
    output, which both paths share.
    """
    if _global_forward_hooks or _global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in module.modules() if m is not module)


#: A child's expected class, or ``(nn.Conv2d, k)`` for a ``k×k`` "same" convolution (see :func:`stock`).
ChildSpec = type[nn.Module] | tuple[type[nn.Module], int]


def stock(module: nn.Module, children: Mapping[str, ChildSpec]) -> bool:
    """Whether each named child of ``module`` is exactly the stock type (and kernel size) a fast path assumes.

    Args:
        module: The layer.
        children: Dotted child name → its class, or ``(nn.Conv2d, k)`` for a
            convolution whose ``k×k`` kernel a banded path relies on. A
            subclass, a wrapper (LoRA, parametrizations, quantised modules) or
            another kernel size makes the answer ``False``.
    """
    for name, spec in children.items():
        try:
            child = module.get_submodule(name)
        except AttributeError:
            return False
        cls, k = spec if isinstance(spec, tuple) else (spec, None)
        if type(child) is not cls:
            return False
        if k is not None and (child.kernel_size, child.padding, child.dilation) != (
            (k, k),
            (k // 2, k // 2),
            (1, 1),
        ):
            return False
    return True


def use_inference_path(module: nn.Module, x: object, children: Mapping[str, ChildSpec]) -> bool:
    """Whether ``module`` may run its ``_forward_inference`` on input ``x``.

    All of: the process-wide switch and ``module.fast_inference`` are on;
    autograd is off in plain eager execution (not compiling, exporting or
    tracing); ``x`` is a plain tensor (not an ``fx`` proxy or a ``torch.func``
    wrapper) and not on the ``meta`` device (so MAC counts see the plain
    function); no hook could observe a skipped step (:func:`observed`); and the
    children the path relies on are stock (:func:`stock`).
    """
    return (
        _FAST_INFERENCE
        and getattr(module, "fast_inference", False)
        and eager_inference()
        and not transformed(x)
        and x.device.type != "meta"
        and not observed(module)
        and stock(module, children)
    )
