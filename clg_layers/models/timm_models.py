"""Thin entry points so ``timm.create_model("clginet_base")`` builds the same networks.

timm names models with underscores; one entry per row of the variants table
(:data:`~clg_layers.models.clginet.VARIANTS`), each forwarding to
:func:`clg_layers.build`. No pretrained weights exist, so ``pretrained=True``
is an error; pass ``checkpoint_path=`` to ``timm.create_model`` to load a file instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from timm.models import register_model as timm_register_model

from .clginet import VARIANTS, CLGINet
from .registry import build

__all__: list[str] = []  # timm's decorator appends the entry names


def _timm_build(name: str, pretrained: bool, kwargs: dict[str, Any]) -> CLGINet:
    if pretrained:
        raise ValueError(
            f"timm.create_model: no pretrained weights are published for {name!r}; "
            "train your own, or pass checkpoint_path="
        )
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)
    return build(name, **kwargs)


def _timm_entry(name: str) -> Callable[..., CLGINet]:
    def entry(pretrained: bool = False, **kwargs: Any) -> CLGINet:
        return _timm_build(name, pretrained, kwargs)

    # timm registers a function under its __name__, in the module named by __module__.
    entry.__name__ = entry.__qualname__ = name.replace("-", "_")
    entry.__module__ = __name__
    entry.__doc__ = f"timm entry for ``{name}``: {VARIANTS[name].description}."
    globals()[entry.__name__] = entry
    return timm_register_model(entry)


for _name in VARIANTS:
    _timm_entry(_name)
del _name
