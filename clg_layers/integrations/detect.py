"""Recognise a CLG-INet state dict and read its configuration back from key names and tensor shapes.

Nothing here needs spandrel: :mod:`clg_layers.integrations.spandrel` wraps it
for spandrel's registry, and anyone holding a bare ``state_dict()`` can call
:func:`model_from_state_dict` directly.

What the weights tell (every one of these is inferred):

* ``in_chans``, ``dim``: the embedding convolution, ``(dim, in_chans, 3, 3)``;
  ``out_chans``: the output convolution, ``(out_chans, dim, 3, 3)``;
* ``depths``, ``refinement_depth``: the block indices of every stage;
* ``num_heads``: DBPA's per-head ``temperature``, ``(heads, 1, 1)``, per level;
* ``kernel_size``: DBPA's depthwise ``q/k/v`` kernel;
* ``expansion``: GNFF's hidden width per level (the shortest decimal that
  reproduces all four widths, or the stored value when it does);
* ``cnn_groups``: the CNN layers' grouped convolutions (``1``: one dense
  convolution; ``g``: ``g`` groups then a pointwise convolution at every level;
  ``0``: depthwise at every level);
* ``coupling``: whether the blocks have the ``fuse`` convolution;
* ``noise_level_map``: whether the σ map's embedding ``embed_sigma``,
  ``(dim, 1, 3, 3)``, is there (it is separate from the image's ``embed``, so
  ``in_chans`` stays the image's channels and ``global_residual`` keeps its
  default);
* DBPA's ``spatial``/``channel`` branches: the ``temperature`` and ``gate``
  parameters exist only with the channel branch and with both branches.

One thing they cannot tell apart: a model with both branches mixed by
``attn_fusion="sum"`` (which has no gate) has exactly the parameters of a
channel-only model (``spatial=False``). Without a ``config`` saying
``attn_fusion="sum"`` such weights are read as channel-only; with it, as both
branches summed. Checkpoints written by :func:`~clg_layers.save_checkpoint`
carry that config.

What they cannot tell (no parameter depends on it): ``window_size``,
``global_residual`` and ``drop_path_rate``. Those come from ``config`` (for
example the ``clg_layers.config`` metadata that
:func:`~clg_layers.save_checkpoint` writes) or take :class:`~clg_layers.CLGINet`'s
defaults, except that ``global_residual`` is ``False`` when
``in_chans != out_chans`` (the only value that network allows).

Both key layouts load: the fused ``attn.qkv`` / ``attn.qkv_dw`` (and GNFF ``fc1``)
convolutions of clg-layers 0.2.0 and separate ``attn.q``/``k``/``v`` (and
``q_dw``/``k_dw``/``v_dw``) modules; the state dict is converted to the layout
the installed :class:`~clg_layers.CLGINet` uses.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import torch

from ..models import checkpoint as _checkpoint
from ..models.checkpoint import migrate_state_dict
from ..models.clginet import VARIANTS, CLGINet
from ..models.config import LEVELS, CLGINetConfig

__all__ = [
    "CONFIG_FROM_WEIGHTS",
    "CONFIG_NOT_IN_WEIGHTS",
    "infer_config",
    "is_clginet_state_dict",
    "load_strict",
    "model_from_state_dict",
    "prepare_state_dict",
]

#: Constructor arguments read from the weights' key names and shapes.
CONFIG_FROM_WEIGHTS: tuple[str, ...] = (
    "in_chans",
    "out_chans",
    "dim",
    "depths",
    "num_heads",
    "kernel_size",
    "expansion",
    "refinement_depth",
    "cnn_groups",
    "coupling",
    "fusion",
    "spatial",
    "channel",
    "noise_level_map",
)
#: Constructor arguments no parameter depends on: from ``config`` or the defaults.
CONFIG_NOT_IN_WEIGHTS: tuple[str, ...] = ("window_size", "global_residual", "drop_path_rate")

# Keys every CLG-INet has, whatever its configuration. Deliberately not every stage: a state dict that
# has these but lacks a stage is CLG-INet-like, and loading it says what is missing.
_SIGNATURE: tuple[str, ...] = (
    "embed.weight",
    "head.weight",
    "downs.0.0.weight",
    "ups.0.0.weight",
    "encoders.0.0.cnn1.scale.gamma",
    "encoders.0.0.transformer.norm1.weight",
    "encoders.0.0.transformer.scale1.gamma",
    "encoders.0.0.transformer.ffn.dw5.weight",
)
# DBPA's q/k/v in either layout: one fused 3C convolution, or three C-channel modules.
_FUSED, _SPLIT = "attn.qkv.weight", "attn.q.weight"
_NAME = "CLG-INet detection"


def _plain(state: Mapping[str, Any]) -> dict[str, Any]:
    """Unwrap ``params_ema``/``params``/... or a Lightning checkpoint and drop the wrappers' prefixes.

    ``module.``/``_orig_mod.`` go from every key; the Lightning module prefix
    ``model.`` goes when every key has it (a Lightning checkpoint's
    ``state_dict`` on its own, as spandrel's loader hands it over: no CLG-INet
    key starts with ``model.``).
    """
    if not isinstance(state, Mapping):
        raise TypeError(
            f"{_NAME}: expected a state dict (a mapping of names to tensors), got {type(state).__name__}"
        )
    state = _checkpoint.unwrap_weights(state)[0]  # ValueError: a Lightning checkpoint of several modules
    if not isinstance(state, Mapping):
        raise TypeError(
            f"{_NAME}: expected a state dict (a mapping of names to tensors), got {type(state).__name__}"
        )
    prefix = _checkpoint.LIGHTNING_MODULE_PREFIX
    keys = [str(k) for k in state]
    cut = len(prefix) if keys and all(k.startswith(prefix) for k in keys) else 0
    return {_checkpoint.strip_prefixes(k[cut:]): v for k, v in zip(keys, state.values())}


def is_clginet_state_dict(state: Mapping[str, Any]) -> bool:
    """Whether a state dict has CLG-INet's key structure (cheap: key names only).

    Wrappers (``params_ema``, ``params``, ``state_dict``, ..., a whole
    Lightning checkpoint) and ``module.`` / ``_orig_mod.`` prefixes are looked
    through, and so is the ``model.`` prefix of a Lightning ``state_dict``
    (every key having it). ``True`` does not promise the
    shapes fit a configuration: :func:`infer_config` checks those and says what
    is wrong.

    Args:
        state: A state dict, possibly wrapped.

    Returns:
        ``True`` if every key any CLG-INet has is present.
    """
    try:
        keys = _plain(state).keys()
    except (TypeError, ValueError):
        return False
    attn = "encoders.0.0.transformer."
    return all(k in keys for k in _SIGNATURE) and (attn + _FUSED in keys or attn + _SPLIT in keys)


def _shape(state: Mapping[str, torch.Tensor], key: str, why: str) -> tuple[int, ...]:
    if key not in state:
        raise ValueError(f"{_NAME}: the state dict has no {key!r}, which every CLG-INet has ({why})")
    value = state[key]
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{_NAME}: {key!r} must be a tensor, got {type(value).__name__}")
    return tuple(value.shape)


def _blocks(state: Mapping[str, Any], stage: str) -> int:
    """Number of blocks in ``stage`` (e.g. ``encoders.1``); they must be numbered 0, 1, ..., n-1."""
    pattern = re.compile(rf"^{re.escape(stage)}\.(\d+)\.")
    found = sorted({int(m.group(1)) for k in state if (m := pattern.match(k))})
    if found != list(range(len(found))):
        missing = sorted(set(range(found[-1] + 1)) - set(found))
        raise ValueError(
            f"{_NAME}: stage {stage!r} has blocks {found}: block(s) {missing} are missing "
            "(a truncated or hand-edited state dict?)"
        )
    return len(found)


def _levels(state: Mapping[str, Any], stage: str) -> list[int]:
    pattern = re.compile(rf"^{re.escape(stage)}\.(\d+)\.")
    return sorted({int(m.group(1)) for k in state if (m := pattern.match(k))})


def _branches(state: Mapping[str, Any], block: str) -> tuple[bool, bool]:
    """``(spatial, channel)`` of one block's DBPA: ``temperature`` means channel, ``gate`` means both."""
    attn = f"{block}.transformer.attn."
    channel = attn + "temperature" in state
    both = attn + "gate.0.weight" in state
    return (both or not channel), channel


def _expansion(hidden: list[int], widths: tuple[int, ...], stored: object) -> float:
    """An ``e`` with ``max(round(e · w), 1) == E`` at every level.

    ``stored`` if it fits, else the shortest decimal that does.
    """

    def fits(e: float) -> bool:
        return all(max(round(e * w), 1) == h for w, h in zip(widths, hidden))

    if (
        isinstance(stored, (int, float))
        and not isinstance(stored, bool)
        and stored > 0
        and fits(float(stored))
    ):
        return float(stored)
    # round() sends x.5 to the even neighbour, so the bounds are only a search window; fits() decides.
    lo = max((h - 0.5) / w if h > 1 else 0.0 for w, h in zip(widths, hidden))
    hi = min((h + 0.5) / w for w, h in zip(widths, hidden))
    for digits in range(9):
        step = 10**digits
        first, last = math.floor(lo * step), math.ceil(hi * step)
        for n in range(max(first, 1), min(last, first + 1000) + 1):
            e = float(Decimal(n) / step)
            if fits(e):
                return e
    raise ValueError(
        f"{_NAME}: the feed-forward hidden widths per level {hidden} (level widths {list(widths)}) "
        "fit no single `expansion` ratio (CLG-INet uses E = max(round(expansion · width), 1) at every level)"
    )


def _cnn_groups(state: Mapping[str, Any], widths: tuple[int, ...], blocks: list[str]) -> int:
    groups = []
    for width, block in zip(widths, blocks):
        conv = f"{block}.cnn1.conv_a"
        if conv + ".weight" in state:
            groups.append(1)
        else:
            shape = _shape(state, conv + ".0.weight", "the CNN layer's grouped convolution")
            if len(shape) != 4 or shape[1] < 1 or width % shape[1]:
                raise ValueError(
                    f"{_NAME}: {conv + '.0.weight'!r} has shape {shape}, not (width, width / groups, k, k)"
                )
            groups.append(width // shape[1])
    if len(set(groups)) == 1:  # widths double per level, so this is never "depthwise everywhere"
        return groups[0]
    if groups == list(widths):
        return 0
    raise ValueError(
        f"{_NAME}: the CNN layers' groups per level {groups} (level widths {list(widths)}) fit neither one "
        "`cnn_groups` for every level nor depthwise convolutions at every level (`cnn_groups=0`)"
    )


def _normalise(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


# --------------------------------------------------------------------------------------------------
# Readers: each reads one setting (or one group of settings) from the weights
# --------------------------------------------------------------------------------------------------


def _read_channels(state: Mapping[str, Any]) -> tuple[int, int, int]:
    """``(dim, in_chans, out_chans)`` from the embedding and output convolutions."""
    embed = _shape(state, "embed.weight", "the input embedding")
    head = _shape(state, "head.weight", "the output convolution")
    if len(embed) != 4 or len(head) != 4 or head[1] != embed[0]:
        raise ValueError(
            f"{_NAME}: 'embed.weight' {embed} and 'head.weight' {head} must be (dim, in_chans, 3, 3) and "
            "(out_chans, dim, 3, 3) with the same dim"
        )
    return embed[0], embed[1], head[0]


def _read_noise_level_map(state: Mapping[str, Any], dim: int) -> bool:
    """Whether the σ map has its embedding ``embed_sigma``, ``(dim, 1, 3, 3)`` like ``embed``'s kernel."""
    if "embed_sigma.weight" not in state:
        return False
    shape = _shape(state, "embed_sigma.weight", "the σ map's embedding")
    if shape != (dim, 1, 3, 3):
        raise ValueError(
            f"{_NAME}: 'embed_sigma.weight' has shape {shape}, but the σ map's embedding of a "
            f"noise-level-conditioned CLG-INet with dim={dim} (from 'embed.weight') is {(dim, 1, 3, 3)}"
        )
    return True


def _read_depths(state: Mapping[str, Any]) -> tuple[list[int], int]:
    """``(depths, refinement_depth)`` from the block indices of every stage."""
    encoder_levels = _levels(state, "encoders")
    decoder_levels = _levels(state, "decoders")
    if encoder_levels != list(range(LEVELS - 1)) or decoder_levels != list(range(LEVELS - 1)):
        raise ValueError(
            f"{_NAME}: CLG-INet has encoder and decoder levels [0, 1, 2]; the state dict has encoders "
            f"{encoder_levels} and decoders {decoder_levels}"
        )
    depths = [_blocks(state, f"encoders.{level}") for level in range(LEVELS - 1)]
    depths.append(_blocks(state, "bottleneck"))
    for j in range(LEVELS - 1):
        level = LEVELS - 2 - j  # decoders run deepest first
        n = _blocks(state, f"decoders.{j}")
        if n != depths[level]:
            raise ValueError(
                f"{_NAME}: decoder stage 'decoders.{j}' (level {level}) has {n} blocks but its encoder stage "
                f"'encoders.{level}' has {depths[level]}; CLG-INet repeats each encoder depth in the decoder"
            )
    if not depths[-1]:
        raise ValueError(f"{_NAME}: the state dict has no 'bottleneck' blocks; CLG-INet has at least one")
    return depths, _blocks(state, "refinement")


def _check_widths(state: Mapping[str, Any], firsts: list[str], widths: tuple[int, ...]) -> None:
    """Each level's first block must be as wide as ``dim · 2^level``."""
    for level, block in enumerate(firsts):
        width = _shape(state, f"{block}.cnn1.scale.gamma", "the CNN layer's scale")[0]
        if width != widths[level]:
            raise ValueError(
                f"{_NAME}: level {level} blocks ({block!r}) are {width} channels wide, but with "
                f"dim={widths[0]} (from 'embed.weight') level {level} of CLG-INet is {widths[level]} wide"
            )


def _read_attention(state: Mapping[str, Any], firsts: list[str], known: Mapping[str, Any]) -> dict[str, Any]:
    """``spatial``, ``channel`` and (when the weights tell) ``attn_fusion`` of every DBPA."""
    raw = _branches(state, firsts[0])
    for block in firsts[1:]:
        if _branches(state, block) != raw:
            raise ValueError(f"{_NAME}: DBPA's branches differ between 'encoders.0.0' and {block!r}")
    spatial, channel = raw
    if raw == (True, True):
        return {"spatial": True, "channel": True, "attn_fusion": "gate"}  # the gate's weights are there
    if known.get("attn_fusion") == "sum" and channel and known.get("spatial", True) is not False:
        # "sum" has no gate: its weights are those of a channel-only model, so the config decides.
        return {"spatial": True, "channel": True, "attn_fusion": "sum"}
    return {"spatial": spatial, "channel": channel}  # one branch: nothing is mixed


def _read_heads(state: Mapping[str, Any], firsts: list[str], channel: bool) -> list[int] | None:
    """Heads per level from the channel branch's ``temperature``; ``None`` without that branch."""
    if not channel:
        return None  # spatial-only: the heads leave no trace in the weights
    return [_shape(state, f"{b}.transformer.attn.temperature", "DBPA's channel branch")[0] for b in firsts]


def _read_kernel(state: Mapping[str, Any], firsts: list[str]) -> int:
    """DBPA's depthwise ``q/k/v`` kernel (one fused ``qkv_dw`` in the 0.2.0 layout)."""
    kernels = set()
    for block in firsts:
        attn = f"{block}.transformer.attn."
        dw = attn + ("qkv_dw.weight" if attn + "qkv_dw.weight" in state else "q_dw.weight")
        kernels.add(_shape(state, dw, "DBPA's depthwise q/k/v convolution")[-1])
    if len(kernels) != 1:
        raise ValueError(f"{_NAME}: DBPA's depthwise kernel differs between levels: {sorted(kernels)}")
    return kernels.pop()


def _read_hidden(state: Mapping[str, Any], firsts: list[str]) -> list[int]:
    """GNFF's hidden width at each level."""
    return [_shape(state, f"{b}.transformer.ffn.dw3.weight", "GNFF's 3×3 branch")[0] for b in firsts]


def _read_fusion(state: Mapping[str, Any]) -> str:
    """``"hgu"`` when the hybrid gated units are there (one per decoder level), ``"add"`` when none is."""
    if not any(k.startswith("fusions.") for k in state):
        return "add"  # the ablation has no fusion weights
    for j in range(LEVELS - 1):
        if f"fusions.{j}.spatial_gate.weight" not in state:
            raise ValueError(
                f"{_NAME}: the state dict has hybrid gated units but not 'fusions.{j}' "
                "(one per decoder level)"
            )
    return "hgu"


def _comparable(key: str, value: Any) -> Any:
    if key in ("depths", "num_heads") and isinstance(value, int) and not isinstance(value, bool):
        return [value] * LEVELS  # the int shorthand
    return _normalise(value)


def _check_agreement(known: Mapping[str, Any], inferred: Mapping[str, Any]) -> None:
    """Settings given in ``config`` that the weights also determine must say the same."""
    for key, value in known.items():
        if key in inferred and key != "expansion" and _comparable(key, value) != _normalise(inferred[key]):
            raise ValueError(
                f"{_NAME}: the given config says {key}={value!r} but the weights say {key}={inferred[key]!r}"
            )


def infer_config(state: Mapping[str, Any], *, config: Mapping[str, Any] | None = None) -> CLGINetConfig:
    """Read a :class:`~clg_layers.CLGINet` configuration from a state dict's keys and shapes.

    See the module docstring for what is inferred and what is not. The result
    is the inferred configuration plus, for ``window_size``,
    ``global_residual`` and ``drop_path_rate``, the values in ``config`` (or
    the network's defaults). Values in ``config`` that the weights also
    determine must agree with them.

    Args:
        state: A CLG-INet state dict (wrappers and ``module.`` prefixes allowed),
            in either DBPA key layout.
        config: Known settings, typically the ``clg_layers.config`` metadata of
            a checkpoint written by :func:`~clg_layers.save_checkpoint` (a dict
            or a :class:`~clg_layers.CLGINetConfig`).

    Returns:
        The :class:`~clg_layers.CLGINetConfig` (``CLGINet(cfg)`` builds the network).

    Raises:
        ValueError: If the state dict is not CLG-INet's (missing stages or
            keys, shapes that no configuration produces), disagrees with
            ``config``, or adds up to an invalid configuration; the message
            names the keys involved.
    """
    state = _plain(state)
    known = dict(config or {})
    dim, in_chans, out_chans = _read_channels(state)
    widths = tuple(dim * 2**level for level in range(LEVELS))
    depths, refinement_depth = _read_depths(state)
    firsts = [f"encoders.{level}.0" for level in range(LEVELS - 1)] + ["bottleneck.0"]
    _check_widths(state, firsts, widths)
    attention = _read_attention(state, firsts, known)
    inferred: dict[str, Any] = dict(
        in_chans=in_chans,
        out_chans=out_chans,
        dim=dim,
        depths=depths,
        kernel_size=_read_kernel(state, firsts),
        expansion=_expansion(_read_hidden(state, firsts), widths, known.get("expansion")),
        refinement_depth=refinement_depth,
        cnn_groups=_cnn_groups(state, widths, firsts),
        coupling="concat" if f"{firsts[0]}.fuse.weight" in state else "none",
        fusion=_read_fusion(state),
        noise_level_map=_read_noise_level_map(state, dim),
        **attention,
    )
    heads = _read_heads(state, firsts, attention["channel"])
    if heads is not None:
        inferred["num_heads"] = heads
    _check_agreement(known, inferred)
    merged = {**known, **inferred}
    if "global_residual" not in merged and in_chans != out_chans:
        merged["global_residual"] = False  # the only value such a network allows
    try:
        return CLGINetConfig.from_dict(merged)
    except (TypeError, ValueError) as err:
        shown = {k: _normalise(v) for k, v in merged.items()}
        raise ValueError(
            f"{_NAME}: the inferred configuration {shown} is not a valid CLGINet: {err}"
        ) from None


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def prepare_state_dict(state: Mapping[str, Any], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Unwrap, strip prefixes and migrate the 0.2.0 key layout to the one ``model`` uses.

    The migration is :func:`~clg_layers.migrate_state_dict`'s, checked against
    ``model``'s keys and shapes.

    Args:
        state: A CLG-INet state dict in either layout (wrappers and prefixes allowed).
        model: The :class:`~clg_layers.CLGINet` it is meant for.

    Returns:
        A new dict (the tensors are shared, or reshaped views and slices).
    """
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return migrate_state_dict(_plain(state), expected=own)[0]


def load_strict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], context: str) -> None:
    """Load ``state`` into ``model`` if keys and shapes match exactly, else raise listing every difference.

    Args:
        model: The module to load into.
        state: A state dict already in ``model``'s key layout (see :func:`prepare_state_dict`).
        context: The start of the error message (who is loading what).

    Raises:
        ValueError: ``context`` followed by the missing, unexpected and
            shape-mismatched keys.
    """
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(k for k in state if k not in own)
    mismatched = sorted(
        f"{k}: state dict {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    )
    if missing or unexpected or mismatched:
        msg = context
        for title, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mismatched),
        ):
            if items:
                msg += _checkpoint._listing(title, items)
        raise ValueError(msg)
    model.load_state_dict(dict(state))


def model_from_state_dict(
    state: Mapping[str, Any], *, config: Mapping[str, Any] | None = None
) -> tuple[CLGINet, dict[str, torch.Tensor]]:
    """Build the :class:`~clg_layers.CLGINet` a state dict belongs to and load it (strictly).

    Args:
        state: A CLG-INet state dict (see :func:`infer_config`).
        config: Settings the weights cannot tell (``window_size``,
            ``global_residual``, ``drop_path_rate``), e.g. a checkpoint's
            ``clg_layers.config`` metadata.

    Returns:
        ``(model, state)``: the model in eval mode with the weights loaded, and
        the state dict in the model's own key layout.

    Raises:
        ValueError: If no configuration fits the state dict exactly; the
            message lists the inferred configuration and every missing,
            unexpected or mismatched key.
    """
    cfg = infer_config(state, config=config)
    model = CLGINet(cfg)
    prepared = prepare_state_dict(state, model)
    load_strict(
        model,
        prepared,
        f"{_NAME}: the state dict looks like CLG-INet but fits no configuration; closest: {cfg}:",
    )
    model.model_name = _zoo_name(cfg)
    return model.eval(), prepared


def _zoo_name(cfg: CLGINetConfig) -> str | None:
    """The zoo variant ``cfg`` is, in every setting but the drop-path rate, if any."""
    for name, variant in VARIANTS.items():
        if variant.config.replace(drop_path_rate=cfg.drop_path_rate) == cfg:
            return name
    return None
