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

import inspect
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import torch

from ..models import checkpoint as _checkpoint
from ..models.clginet import _LEVELS, _VARIANTS, CLGINet

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
_STAGES: tuple[str, ...] = ("encoders", "decoders", "bottleneck", "refinement")
_NAME = "CLG-INet detection"


def _plain(state: Mapping[str, Any]) -> dict[str, Any]:
    """Unwrap ``params_ema``/``params``/... and drop ``module.``/``_orig_mod.`` prefixes."""
    state = _checkpoint.descend_wrappers(state)
    if not isinstance(state, Mapping):
        raise TypeError(
            f"{_NAME}: expected a state dict (a mapping of names to tensors), got {type(state).__name__}"
        )
    return {_checkpoint.strip_prefixes(str(k)): v for k, v in state.items()}


def is_clginet_state_dict(state: Mapping[str, Any]) -> bool:
    """Whether a state dict has CLG-INet's key structure (cheap: key names only).

    Wrappers (``params_ema``, ``params``, ``state_dict``, ...) and ``module.`` /
    ``_orig_mod.`` prefixes are looked through. ``True`` does not promise the
    shapes fit a configuration: :func:`infer_config` checks those and says what
    is wrong.

    Args:
        state: A state dict, possibly wrapped.

    Returns:
        ``True`` if every key any CLG-INet has is present.
    """
    try:
        keys = _plain(state).keys()
    except TypeError:
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


def infer_config(state: Mapping[str, Any], *, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
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
            a checkpoint written by :func:`~clg_layers.save_checkpoint`.

    Returns:
        Keyword arguments for :class:`~clg_layers.CLGINet`.

    Raises:
        ValueError: If the state dict is not CLG-INet's (missing stages or
            keys, shapes that no configuration produces) or disagrees with
            ``config``; the message names the keys involved.
    """
    state = _plain(state)
    known = dict(config or {})
    embed = _shape(state, "embed.weight", "the input embedding")
    head = _shape(state, "head.weight", "the output convolution")
    if len(embed) != 4 or len(head) != 4 or head[1] != embed[0]:
        raise ValueError(
            f"{_NAME}: 'embed.weight' {embed} and 'head.weight' {head} must be (dim, in_chans, 3, 3) and "
            "(out_chans, dim, 3, 3) with the same dim"
        )
    dim, in_chans, out_chans = embed[0], embed[1], head[0]
    widths = tuple(dim * 2**level for level in range(_LEVELS))

    encoder_levels = _levels(state, "encoders")
    decoder_levels = _levels(state, "decoders")
    if encoder_levels != list(range(_LEVELS - 1)) or decoder_levels != list(range(_LEVELS - 1)):
        raise ValueError(
            f"{_NAME}: CLG-INet has encoder and decoder levels [0, 1, 2]; the state dict has encoders "
            f"{encoder_levels} and decoders {decoder_levels}"
        )
    depths = [_blocks(state, f"encoders.{level}") for level in range(_LEVELS - 1)]
    depths.append(_blocks(state, "bottleneck"))
    for j in range(_LEVELS - 1):
        level = _LEVELS - 2 - j  # decoders run deepest first
        n = _blocks(state, f"decoders.{j}")
        if n != depths[level]:
            raise ValueError(
                f"{_NAME}: decoder stage 'decoders.{j}' (level {level}) has {n} blocks but its encoder stage "
                f"'encoders.{level}' has {depths[level]}; CLG-INet repeats each encoder depth in the decoder"
            )
    if not depths[-1]:
        raise ValueError(f"{_NAME}: the state dict has no 'bottleneck' blocks; CLG-INet has at least one")
    refinement_depth = _blocks(state, "refinement")

    firsts = [f"encoders.{level}.0" for level in range(_LEVELS - 1)] + ["bottleneck.0"]
    heads, kernels, hidden = [], set(), []
    spatial, channel = _branches(state, firsts[0])
    raw_branches = (spatial, channel)
    if known.get("attn_fusion") == "sum" and channel and not spatial:
        spatial = True  # "sum" has no gate: its weights are those of a channel-only model
    for level, block in enumerate(firsts):
        width = _shape(state, f"{block}.cnn1.scale.gamma", "the CNN layer's scale")[0]
        if width != widths[level]:
            raise ValueError(
                f"{_NAME}: level {level} blocks ({block!r}) are {width} channels wide, but with dim={dim} "
                f"(from 'embed.weight') level {level} of CLG-INet is {widths[level]} wide"
            )
        if _branches(state, block) != raw_branches:
            raise ValueError(f"{_NAME}: DBPA's branches differ between 'encoders.0.0' and {block!r}")
        attn = f"{block}.transformer.attn."
        if channel:
            heads.append(_shape(state, attn + "temperature", "DBPA's channel branch")[0])
        dw = attn + ("qkv_dw.weight" if attn + "qkv_dw.weight" in state else "q_dw.weight")
        kernels.add(_shape(state, dw, "DBPA's depthwise q/k/v convolution")[-1])
        hidden.append(_shape(state, f"{block}.transformer.ffn.dw3.weight", "GNFF's 3×3 branch")[0])
    if len(kernels) != 1:
        raise ValueError(f"{_NAME}: DBPA's depthwise kernel differs between levels: {sorted(kernels)}")

    inferred: dict[str, Any] = dict(
        in_chans=in_chans,
        out_chans=out_chans,
        dim=dim,
        depths=depths,
        kernel_size=kernels.pop(),
        expansion=_expansion(hidden, widths, known.get("expansion")),
        refinement_depth=refinement_depth,
        cnn_groups=_cnn_groups(state, widths, firsts),
        coupling="concat" if f"{firsts[0]}.fuse.weight" in state else "none",
    )
    # The hybrid gated units exist only with fusion="hgu"; "add" (the ablation) has no fusion weights.
    if any(k.startswith("fusions.") for k in state):
        for j in range(_LEVELS - 1):
            if f"fusions.{j}.spatial_gate.weight" not in state:
                raise ValueError(
                    f"{_NAME}: the state dict has hybrid gated units but not 'fusions.{j}' (one per decoder level)"
                )
    else:
        inferred["fusion"] = "add"
    if channel:
        inferred["num_heads"] = heads
    elif "num_heads" in known:  # spatial-only: the heads leave no trace in the weights
        inferred["num_heads"] = _normalise(known["num_heads"])

    accepted = inspect.signature(CLGINet).parameters
    if raw_branches == (True, True):
        inferred["attn_fusion"] = "gate"  # the gate's weights are there
    elif spatial and channel:
        inferred["attn_fusion"] = "sum"
    if not (spatial and channel):
        which = "spatial" if spatial else "channel"
        if "spatial" not in accepted or "channel" not in accepted:
            raise ValueError(
                f"{_NAME}: the state dict's DBPA has only the {which} branch ('temperature'/'gate' "
                "parameters), but this version of CLGINet always builds both"
            )
        inferred.update(spatial=spatial, channel=channel)

    for key, value in known.items():
        if key in inferred and key != "expansion" and _normalise(value) != inferred[key]:
            raise ValueError(
                f"{_NAME}: the given config says {key}={value!r} but the weights say {key}={inferred[key]!r}"
            )
    result = {k: _normalise(v) for k, v in known.items() if k not in inferred}
    result.update(inferred)
    if "global_residual" not in result and in_chans != out_chans:
        result["global_residual"] = False
    return result


# --------------------------------------------------------------------------------------------------
# DBPA key layouts
# --------------------------------------------------------------------------------------------------


_LINEAR = (
    ".attn.proj.weight",
    ".ffn.fc1.weight",
    ".ffn.fc2.weight",
)  # 1×1 conv (out, in, 1, 1) ↔ linear (out, in)


def _split_layout(
    state: dict[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]] | None = None
) -> dict[str, torch.Tensor]:
    """Fused ``attn.qkv``/``attn.qkv_dw`` → separate ``q``/``k``/``v`` modules; 1×1 convs → linear.

    Uses the library's ``migrate_state_dict`` where this clg-layers has it.
    Otherwise GNFF's ``fc1`` becomes ``fc1_a``/``fc1_b`` if ``expected`` (the
    target model's keys and shapes) has those, and a linear ``fc1`` if not.
    """
    migrate = getattr(_checkpoint, "migrate_state_dict", None)
    if migrate is not None:
        if expected is not None and "expected" in inspect.signature(migrate).parameters:
            return dict(migrate(state, expected=expected)[0])
        return dict(migrate(state)[0])
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        head, sep, tail = key.rpartition(".attn.")
        ffn_head, ffn_sep, ffn_tail = key.rpartition(".ffn.")
        if sep and tail in ("qkv.weight", "qkv.bias", "qkv_dw.weight", "qkv_dw.bias"):
            name, kind = tail.split(".")
            suffix = "_dw" if name == "qkv_dw" else ""
            for part, piece in zip("qkv", value.chunk(3)):
                out[f"{head}.attn.{part}{suffix}.{kind}"] = (
                    piece.flatten(1) if kind == "weight" and not suffix else piece
                )
        elif (
            ffn_sep
            and ffn_tail in ("fc1.weight", "fc1.bias")
            and f"{ffn_head}.ffn.fc1_a.weight" in (expected or {})
        ):
            kind = ffn_tail.split(".")[1]
            for part, piece in zip(("fc1_a", "fc1_b"), value.chunk(2)):
                out[f"{ffn_head}.ffn.{part}.{kind}"] = piece.flatten(1) if kind == "weight" else piece
        elif key.endswith(_LINEAR) and value.ndim == 4:
            out[key] = value.flatten(1)
        else:
            out[key] = value
    return out


def _fuse(state: dict[str, torch.Tensor], key: str, companions: list[str]) -> torch.Tensor:
    parts = [state.get(k) for k in companions]
    if any(p is None for p in parts):
        missing = [k for k, p in zip(companions, parts) if p is None]
        raise ValueError(f"{_NAME}: {key!r} comes without {missing}")
    return torch.cat(parts)  # type: ignore[arg-type]


def _fused_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Split ``q``/``k``/``v``, ``fc1_a``/``fc1_b`` → fused ``qkv``, ``qkv_dw``, ``fc1``; linear → 1×1."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        head, sep, tail = key.rpartition(".attn.")
        name, _, kind = tail.partition(".")
        ffn_head, ffn_sep, ffn_tail = key.rpartition(".ffn.")
        ffn_name, _, ffn_kind = ffn_tail.partition(".")
        if sep and name in ("q", "k", "v", "q_dw", "k_dw", "v_dw") and kind in ("weight", "bias"):
            suffix = "_dw" if name.endswith("_dw") else ""
            if name[0] == "q":
                fused = _fuse(state, key, [f"{head}.attn.{p}{suffix}.{kind}" for p in "qkv"])
                out[f"{head}.attn.qkv{suffix}.{kind}"] = (
                    fused[:, :, None, None] if kind == "weight" and not suffix else fused
                )
        elif ffn_sep and ffn_name in ("fc1_a", "fc1_b") and ffn_kind in ("weight", "bias"):
            if ffn_name == "fc1_a":
                fused = _fuse(state, key, [f"{ffn_head}.ffn.{p}.{ffn_kind}" for p in ("fc1_a", "fc1_b")])
                out[f"{ffn_head}.ffn.fc1.{ffn_kind}"] = (
                    fused[:, :, None, None] if ffn_kind == "weight" else fused
                )
        elif key.endswith(_LINEAR) and value.ndim == 2:
            out[key] = value[:, :, None, None]
        else:
            out[key] = value
    return out


def prepare_state_dict(state: Mapping[str, Any], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Unwrap, strip prefixes and convert DBPA's (and GNFF's) key layout to the one ``model`` uses.

    Args:
        state: A CLG-INet state dict in either layout (wrappers and prefixes allowed).
        model: The :class:`~clg_layers.CLGINet` it is meant for.

    Returns:
        A new dict (the tensors are shared, reshaped views or concatenations).
    """
    plain = _plain(state)
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    wants_fused = any(k.endswith("." + _FUSED) for k in own)
    has_fused = any(k.endswith("." + _FUSED) for k in plain)
    has_split = any(k.endswith("." + _SPLIT) for k in plain)
    if has_fused and not wants_fused:
        return _split_layout(plain, own)
    if has_split and wants_fused:
        return _fused_layout(plain)
    return plain


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
    try:
        model = CLGINet(**cfg)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{_NAME}: the inferred configuration {cfg} is not a valid CLGINet: {err}") from None
    prepared = prepare_state_dict(state, model)
    load_strict(
        model,
        prepared,
        f"{_NAME}: the state dict looks like CLG-INet but fits no configuration; closest: {cfg}:",
    )
    model.model_name = _zoo_name(cfg)
    return model.eval(), prepared


def _zoo_name(cfg: Mapping[str, Any]) -> str | None:
    """The zoo variant whose defaults ``cfg`` matches in every inferable setting, if any."""
    defaults = inspect.signature(CLGINet).parameters
    for name, variant in _VARIANTS.items():
        full = {k: _normalise(variant.get(k, p.default)) for k, p in defaults.items()}
        full["out_chans"] = full["out_chans"] if full["out_chans"] is not None else full["in_chans"]
        heads = full["num_heads"]
        full["num_heads"] = heads if isinstance(heads, list) else [heads] * _LEVELS
        if all(_normalise(cfg.get(k, full[k])) == full[k] for k in full if k != "drop_path_rate"):
            return name
    return None
