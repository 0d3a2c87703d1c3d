"""Factory keyword arguments (``device=``, ``dtype=``) and ``reset_parameters()`` for the layers.

Every layer takes ``device`` and ``dtype`` as ``torch.nn`` layers do and hands
them to each parameter-owning child, so a network can be built directly on a
GPU, in float64, or on the ``meta`` device (no memory) and materialised later
with ``module.to_empty(device=...)`` + ``module.reset_parameters()``.

A layer's ``reset_parameters()`` re-initialises its whole subtree exactly as
its constructor did: each child's own ``reset_parameters()`` in the order the
children were built, then the layer's own rules (zero-started projections,
unit temperatures). The constructor's random draws happen in that same order,
so under the same seed a reset gives bit-identical parameters to a fresh build
(tested).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["factory_kwargs", "reset_children", "zero_"]


def factory_kwargs(owner: str, device: object, dtype: object) -> dict[str, Any]:
    """``{"device": ..., "dtype": ...}`` for child constructors, after checking both.

    Args:
        owner: The layer's name, for error messages.
        device: ``None``, a :class:`torch.device`, a device string or a CUDA index.
        dtype: ``None`` or a floating-point :class:`torch.dtype`.

    Raises:
        TypeError: ``device`` or ``dtype`` is of the wrong type.
        ValueError: ``dtype`` is not floating point, or ``device`` is not a device string.
    """
    if dtype is not None:
        if not isinstance(dtype, torch.dtype):
            raise TypeError(f"{owner}: `dtype` must be a torch.dtype or None, got {type(dtype).__name__}")
        if not dtype.is_floating_point:
            raise ValueError(f"{owner}: `dtype` must be a floating-point dtype, got {dtype}")
    if device is not None:
        if isinstance(device, bool) or not isinstance(device, (str, int, torch.device)):
            raise TypeError(
                f"{owner}: `device` must be a torch.device, a device string, an index or None, "
                f"got {type(device).__name__}"
            )
        try:
            device = torch.device(device)
        except RuntimeError as err:
            raise ValueError(f"{owner}: `device` is not a device: {device!r} ({err})") from None
    return {"device": device, "dtype": dtype}


def reset_children(module: nn.Module) -> None:
    """Call ``reset_parameters()`` on each child of ``module``, in registration order.

    A child without the method (a container such as ``nn.Sequential`` or
    ``nn.ModuleList``, or a module of yours) is descended into instead, so
    every stock leaf below is reached once.
    """
    for child in module.children():
        reset = getattr(child, "reset_parameters", None)
        if callable(reset):
            reset()
        else:
            reset_children(child)


def zero_(*modules: nn.Module | None) -> None:
    """Zero the ``weight`` and ``bias`` (when present) of each module; ``None`` entries are skipped."""
    with torch.no_grad():
        for m in modules:
            if m is None:
                continue
            for name in ("weight", "bias"):
                p = getattr(m, name, None)
                if isinstance(p, torch.Tensor):
                    p.zero_()
