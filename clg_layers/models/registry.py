"""The model zoo: a name → builder registry with wildcard listing and close-match suggestions."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, overload

import torch
from torch import nn

__all__ = ["build", "list_models", "register_model"]

Builder = Callable[..., nn.Module]
B = TypeVar("B", bound=Builder)

_REGISTRY: dict[str, Builder] = {}


def _name_of(fn: Builder) -> str:
    return fn.__name__.replace("_", "-")


@overload
def register_model(fn: B, /) -> B: ...
@overload
def register_model(name: str, /) -> Callable[[B], B]: ...
def register_model(arg: B | str, /) -> B | Callable[[B], B]:
    """Register a model builder in the zoo, as a decorator.

    The builder takes keyword overrides and returns an ``nn.Module``. Use it
    bare (the name is the function's, with ``_`` turned into ``-``) or with an
    explicit name::

        @clg_layers.register_model("clginet-wide")
        def _wide(**overrides):
            return clg_layers.CLGINet(**{"dim": 64, **overrides})

    Args:
        arg: The builder, or the name to register it under.

    Returns:
        The builder unchanged (or a decorator that registers and returns it).

    Raises:
        ValueError: If the name is already registered or empty.
        TypeError: If the builder is not callable.
    """

    def register(fn: B, name: str) -> B:
        if not callable(fn):
            raise TypeError(f"register_model: the builder must be callable, got {type(fn).__name__}")
        if not name:
            raise ValueError("register_model: the model name must be a non-empty string")
        if name in _REGISTRY:
            raise ValueError(
                f"register_model: a model named {name!r} is already registered "
                f"(by {_REGISTRY[name].__module__}.{_REGISTRY[name].__qualname__}); choose another name"
            )
        _REGISTRY[name] = fn
        return fn

    if isinstance(arg, str):
        return lambda fn: register(fn, arg)
    return register(arg, _name_of(arg))


def list_models(pattern: str = "*") -> list[str]:
    """Names of the registered models matching a shell-style wildcard, sorted.

    Args:
        pattern: An :mod:`fnmatch` pattern such as ``"clginet-*"``.

    Returns:
        The matching names.
    """
    return sorted(name for name in _REGISTRY if fnmatch.fnmatchcase(name, pattern))


def _builder(name: str) -> Builder:
    if not isinstance(name, str):
        raise TypeError(f"build: the model name must be a str, got {type(name).__name__}")
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"build: unknown model {name!r}{hint} Known models: {list_models()}")
    return _REGISTRY[name]


def build(
    name: str,
    *,
    checkpoint: str | Path | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build a registered model by name, optionally loading weights.

    Configuration comes, in increasing priority, from the registered variant,
    the configuration stored in a checkpoint written by
    :func:`~clg_layers.save_checkpoint`, and ``overrides``.

    Args:
        name: A name from :func:`list_models`, e.g. ``"clginet-base"``.
        checkpoint: Optional ``.safetensors``/``.pt``/``.pth`` file to load
            (see :func:`~clg_layers.load_checkpoint`); loading is strict.
        device: Device to build the parameters on (``"meta"``: without memory;
            see :meth:`CLGINet.reset_parameters <clg_layers.CLGINet.reset_parameters>`).
            With a checkpoint, the weights are loaded onto it.
        dtype: Floating-point dtype of the parameters.
        **overrides: Constructor arguments that replace the variant's.

    Returns:
        The model, in training mode, on ``device`` (the CPU by default).

    Raises:
        ValueError: For an unknown name (with close matches) or a checkpoint
            that does not fit.
    """
    from .checkpoint import load_checkpoint, read_checkpoint_config

    fn = _builder(name)
    if checkpoint is not None:
        saved_name, saved_config = read_checkpoint_config(checkpoint)
        if saved_name is not None and saved_name != name:
            raise ValueError(
                f"build: checkpoint {str(checkpoint)!r} was saved from model {saved_name!r}, not {name!r}; "
                f"use build({saved_name!r}, checkpoint=...)"
            )
        overrides = {**saved_config, **overrides}
    factory = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
    if checkpoint is not None and str(device).split(":")[0] == "meta":
        raise ValueError(
            f"build: cannot load checkpoint {str(checkpoint)!r} into a model on the meta device "
            "(it holds no memory); build on a real device, or build on meta and load with "
            "model.load_state_dict(state, assign=True)"
        )
    model = fn(**factory, **overrides)  # only passed when given: a registered builder may not take them
    model.model_name = name  # recorded so save_checkpoint can tell build which variant to restore
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, strict=True)
    return model
