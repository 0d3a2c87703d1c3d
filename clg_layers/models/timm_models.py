"""timm entry points, so ``timm.create_model("clginet_base")`` builds the same networks.

timm names models with underscores; one entry per row of the variants table
(:data:`~clg_layers.models.clginet.VARIANTS`), each building through
:func:`clg_layers.build` inside timm's ``build_model_with_cfg``. So timm's
contracts hold:

* ``model.pretrained_cfg`` (and its alias ``default_cfg``), registered in
  :data:`default_cfgs`, describes restoration data: images in ``[0, 1]``
  without normalisation (mean 0, std 1 per channel), a nominal 256×256 input
  (any size works), no center crop, no classifier (``num_classes=0``). So
  ``timm.data.resolve_data_config(model=model)`` does not return ImageNet's
  statistics. With ``in_chans=1`` the input size, mean and std have one channel.
* ``features_only=True`` wraps the network in timm's ``FeatureGetterNet``
  (through :meth:`~clg_layers.CLGINet.forward_intermediates`, with the
  decoder pruned away): four levels, reductions 1, 2, 4, 8.
* Keyword arguments reach :func:`~clg_layers.build` unchanged, ``device=``
  and ``dtype=`` included.

No pretrained weights exist: the configs name no URL or Hub id, and
``pretrained=True`` is an error, never a download; pass ``checkpoint_path=``
to ``timm.create_model`` to load a file instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from timm.models import build_model_with_cfg, generate_default_cfgs
from timm.models import register_model as timm_register_model
from torch import nn

from .clginet import VARIANTS, CLGINet
from .config import LEVELS
from .registry import build

# timm's decorator appends the entry names.
__all__: list[str] = ["CODE_URL", "INPUT_SIZE", "PAPER_NAME", "PAPER_URL", "default_cfgs", "model_cfg"]

PAPER_NAME = "CLG-INet: Coupled Local-Global Interactive Network for Image Restoration (ACM MM 2023)"
PAPER_URL = "https://doi.org/10.1145/3581783.3612251"
#: The authors published no code; this implementation is clg-layers'.
CODE_URL = "https://github.com/clg-layers/clg-layers"
#: The nominal ``(H, W)`` of ``pretrained_cfg["input_size"]``: the model takes any size.
INPUT_SIZE: tuple[int, int] = (256, 256)

# The feature wrapper: timm's "getter" (forward_intermediates, which crops each level to the image's
# share). "list", "dict" and "hook" call the children one after another, which a U-Net is not; "fx"
# would return the padded maps, so sizes that are not a multiple of 8 would disagree with the getter.
_FEATURE_CLASSES = ("getter",)


def _timm_name(name: str) -> str:
    return name.replace("-", "_")


def _data_settings(in_chans: int) -> dict[str, Any]:
    """The input and normalisation fields of a ``pretrained_cfg`` for ``in_chans`` channels."""
    return {
        "input_size": (in_chans, *INPUT_SIZE),
        "mean": (0.0,) * in_chans,
        "std": (1.0,) * in_chans,
    }


def _pretrained_cfg(name: str, in_chans: int | None = None, description: str | None = None) -> dict[str, Any]:
    variant = VARIANTS[name]
    if description is None:
        description = f"CLG-INet {name}: {variant.description}. Randomly initialised: no weights published."
    return {
        **_data_settings(variant.config.in_chans if in_chans is None else in_chans),
        "fixed_input_size": False,
        "interpolation": "bicubic",
        "crop_pct": 1.0,  # restoration sees the whole image: no center crop
        "crop_mode": "center",
        "num_classes": 0,
        "pool_size": None,
        "first_conv": "embed",
        "classifier": None,
        "license": "mit",
        "description": description,
        "origin_url": CODE_URL,
        "paper_name": PAPER_NAME,
        "paper_ids": PAPER_URL,
        "notes": (
            "No pretrained weights exist; train your own and load them with checkpoint_path=.",
            "The authors released no official code; this is the clg-layers implementation.",
            "Inputs are images in [0, 1], not normalised; any H, W (the model pads internally).",
        ),
    }


def model_cfg(model: CLGINet) -> dict[str, Any]:
    """The ``pretrained_cfg`` of a model not made by ``timm.create_model`` (for its input channels)."""
    name = model.model_name if model.model_name in VARIANTS else "clginet-base"
    description = (
        f"CLG-INet {model.model_name}" if model.model_name else "CLG-INet (a custom configuration)"
    ) + ", built with clg_layers; no weights published."
    cfg = _pretrained_cfg(name, in_chans=model.in_chans, description=description)
    cfg["architecture"] = _timm_name(model.model_name or "clginet")
    return cfg


#: timm's pretrained configurations of the entries, one per variant (no weight source in any).
default_cfgs = generate_default_cfgs({_timm_name(name): _pretrained_cfg(name) for name in VARIANTS})


def _builder(name: str) -> Callable[..., CLGINet]:
    """What ``build_model_with_cfg`` instantiates: :func:`clg_layers.build` without timm's ``num_classes``."""

    def make(num_classes: int = 0, **kwargs: Any) -> CLGINet:
        if num_classes != 0:
            raise ValueError(
                f"timm.create_model: {_timm_name(name)!r} is an image-restoration network without a "
                f"classifier, so `num_classes` must be 0, got {num_classes!r}"
            )
        model = build(name, **kwargs)
        if not isinstance(model, CLGINet):  # pragma: no cover - the zoo entries build CLGINet
            raise TypeError(f"timm.create_model: {name!r} built {type(model).__name__}, not CLGINet")
        return model

    return make


def _timm_build(name: str, pretrained: bool, kwargs: dict[str, Any]) -> nn.Module:
    timm_name = _timm_name(name)
    if pretrained:
        raise ValueError(
            f"timm.create_model: no pretrained weights are published for {timm_name!r}; "
            "train your own, and pass checkpoint_path= to load them"
        )
    kwargs.pop("cache_dir", None)
    pretrained_cfg = kwargs.pop("pretrained_cfg", None)
    overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {})
    if isinstance(pretrained_cfg, str) and pretrained_cfg:
        raise ValueError(
            f"timm.create_model: {timm_name!r} has no pretrained tags (got {pretrained_cfg!r}); "
            f"use the plain name {timm_name!r}"
        )
    feature_cls = kwargs.get("feature_cls", "getter")
    if kwargs.get("features_only") and feature_cls not in _FEATURE_CLASSES:
        raise ValueError(
            f"timm.create_model: {timm_name!r} with features_only supports feature_cls in "
            f"{list(_FEATURE_CLASSES)} (a U-Net's stages do not run one after another), got {feature_cls!r}"
        )
    in_chans = kwargs.get("in_chans", VARIANTS[name].config.in_chans)
    if not pretrained_cfg and isinstance(in_chans, int) and in_chans != VARIANTS[name].config.in_chans:
        # The registered input size, mean and std are per channel: give them the model's channels.
        overlay = {**_data_settings(in_chans), **overlay}
    return build_model_with_cfg(
        _builder(name),
        timm_name,
        pretrained=False,
        pretrained_cfg=pretrained_cfg or None,
        pretrained_cfg_overlay=overlay,
        feature_cfg={"feature_cls": "getter", "out_indices": tuple(range(LEVELS))},
        **kwargs,
    )


def _timm_entry(name: str) -> Callable[..., nn.Module]:
    def entry(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        return _timm_build(name, pretrained, kwargs)

    # timm registers a function under its __name__, in the module named by __module__.
    entry.__name__ = entry.__qualname__ = _timm_name(name)
    entry.__module__ = __name__
    entry.__doc__ = (
        f"timm entry for ``{name}``: {VARIANTS[name].description}.\n\n"
        "Keyword arguments (``in_chans=``, ``device=``, ``dtype=``, ...) go to "
        f":func:`clg_layers.build`; ``features_only=True`` returns the multi-scale feature extractor."
    )
    globals()[entry.__name__] = entry
    return timm_register_model(entry)


for _name in VARIANTS:
    _timm_entry(_name)
del _name
