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
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import torch

from clg_layers import CLGINet, build
from clg_layers.models import VARIANTS

if TYPE_CHECKING:
    from collections.abc import Callable

dependencies = ["torch", "timm", "safetensors", "numpy"]

__all__ = [name.replace("-", "_") for name in VARIANTS]


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


def _entry(name: str) -> Callable[..., CLGINet]:
    description = VARIANTS[name].description

    def entry(*, checkpoint: str | Path | None = None, **overrides: Any) -> CLGINet:
        return _create(name, checkpoint, overrides)

    entry.__name__ = entry.__qualname__ = name.replace("-", "_")
    entry.__doc__ = f"""``{name}``: {description}.

    Args:
        checkpoint: Weights to load: a local file or an ``http(s)://`` URL.
        **overrides: Options of :class:`clg_layers.CLGINetConfig` that replace
            the variant's (e.g. ``in_chans=1``).

    Returns:
        The model, in training mode, on the CPU.
    """
    return entry


# One entry point per row of the variants table; torch.hub lists the module's public callables.
for _name in VARIANTS:
    globals()[_name.replace("-", "_")] = _entry(_name)
del _name
