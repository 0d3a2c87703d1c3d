"""Thin entry points so ``timm.create_model("clginet_base")`` builds the same networks.

timm names models with underscores; each entry forwards to :func:`clg_layers.build`.
No pretrained weights exist, so ``pretrained=True`` is an error; pass
``checkpoint_path=`` to ``timm.create_model`` to load a file instead.
"""

from __future__ import annotations

from typing import Any

from timm.models import register_model as timm_register_model

from .clginet import CLGINet
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


@timm_register_model
def clginet_tiny(pretrained: bool = False, **kwargs: Any) -> CLGINet:
    """timm entry for ``clginet-tiny``."""
    return _timm_build("clginet-tiny", pretrained, kwargs)


@timm_register_model
def clginet_small(pretrained: bool = False, **kwargs: Any) -> CLGINet:
    """timm entry for ``clginet-small``."""
    return _timm_build("clginet-small", pretrained, kwargs)


@timm_register_model
def clginet_base(pretrained: bool = False, **kwargs: Any) -> CLGINet:
    """timm entry for ``clginet-base``."""
    return _timm_build("clginet-base", pretrained, kwargs)
