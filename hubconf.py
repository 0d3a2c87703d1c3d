"""torch.hub entry points for CLG-INet.

::

    import torch
    model = torch.hub.load("clg-layers/clg-layers", "clginet_tiny")                 # from GitHub
    model = torch.hub.load("path/to/clg-layers", "clginet_tiny", source="local")   # from a clone
    model = torch.hub.load(..., "clginet_base", in_chans=1, checkpoint="gray.safetensors")

Each entry point takes the same keyword overrides as :func:`clg_layers.build`
and an optional ``checkpoint``: a local ``.safetensors``/``.pt``/``.pth`` file
or an ``http(s)://`` URL (downloaded once into ``torch.hub.get_dir()/checkpoints``).
Weights are read without running code from the file (see
:func:`clg_layers.load_checkpoint`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from clg_layers import CLGINet, build

dependencies = ["torch", "timm", "safetensors", "numpy"]

__all__ = ["clginet_base", "clginet_small", "clginet_tiny"]


def _local(checkpoint: str | Path) -> Path:
    """``checkpoint`` itself, or the cached download of a URL."""
    text = str(checkpoint)
    if urlparse(text).scheme not in ("http", "https"):
        return Path(checkpoint)
    target = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(text).path).name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(text, str(target), progress=True)
    return target


def _create(name: str, checkpoint: str | Path | None, overrides: dict[str, Any]) -> CLGINet:
    path = None if checkpoint is None else _local(checkpoint)
    model = build(name, checkpoint=path, **overrides)
    if not isinstance(model, CLGINet):  # a registry entry replaced by another module
        raise TypeError(f"hubconf: {name!r} built a {type(model).__name__}, not a CLGINet")
    return model


def clginet_tiny(*, checkpoint: str | Path | None = None, **overrides: Any) -> CLGINet:
    """``clginet-tiny`` (≈1.3 M parameters): CPU demos and quick experiments.

    Args:
        checkpoint: Weights to load: a local file or an ``http(s)://`` URL.
        **overrides: Constructor arguments of :class:`clg_layers.CLGINet`
            that replace the variant's (e.g. ``in_chans=1``).

    Returns:
        The model, in training mode, on the CPU.
    """
    return _create("clginet-tiny", checkpoint, overrides)


def clginet_small(*, checkpoint: str | Path | None = None, **overrides: Any) -> CLGINet:
    """``clginet-small`` (≈6.2 M parameters): base's shape at half its width.

    Args:
        checkpoint: Weights to load: a local file or an ``http(s)://`` URL.
        **overrides: Constructor arguments of :class:`clg_layers.CLGINet`
            that replace the variant's.

    Returns:
        The model, in training mode, on the CPU.
    """
    return _create("clginet-small", checkpoint, overrides)


def clginet_base(*, checkpoint: str | Path | None = None, **overrides: Any) -> CLGINet:
    """``clginet-base`` (24.3 M parameters): the paper's model.

    Args:
        checkpoint: Weights to load: a local file or an ``http(s)://`` URL.
        **overrides: Constructor arguments of :class:`clg_layers.CLGINet`
            that replace the variant's.

    Returns:
        The model, in training mode, on the CPU.
    """
    return _create("clginet-base", checkpoint, overrides)
