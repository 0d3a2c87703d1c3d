"""Loading and saving weights: safetensors, ``.pt``/``.pth`` and Lightning ``.ckpt``, never running code.

``.pt``/``.pth``/``.ckpt`` files are read with ``torch.load(...,
weights_only=True)``, whose unpickler only rebuilds tensors and plain
containers: a pickle that would import or call anything is refused before it
can run. safetensors files hold no code at all. The format is recognised from
the file's first bytes, not its suffix.

A Lightning checkpoint (what ``clg-layers train`` writes as
``checkpoints/last.ckpt``) holds the LightningModule's ``state_dict``, whose
keys carry the network's attribute name (``model.`` for
:class:`~clg_layers.training.RestorationTask`). With the EMA callback
(Lightning's ``WeightAveraging``), ``state_dict`` holds the averaged weights
and ``current_model_state`` the training weights. The loaders here take the
network's weights from ``state_dict`` without the prefix, so the EMA weights
when the run had EMA, and say which set they took (:attr:`LoadReport.source`
and an ``INFO`` log record of the ``clg_layers.models.checkpoint`` logger).
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_model
from torch import nn

from .config import CLGINetConfig

__all__ = [
    "LIGHTNING_MODULE_PREFIX",
    "SOURCE_LOG_FIELD",
    "LoadReport",
    "load_checkpoint",
    "migrate_state_dict",
    "read_checkpoint_config",
    "save_checkpoint",
]

#: Keys under which training frameworks nest the weights, in order of preference
#: (BasicSR's EMA weights ``params_ema`` are the ones to evaluate).
WRAPPER_KEYS: tuple[str, ...] = ("params_ema", "params", "state_dict", "model_state_dict", "model")
#: Prefixes left by ``DataParallel``/``DistributedDataParallel`` and ``torch.compile``.
STRIP_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.")

#: The attribute :class:`~clg_layers.training.RestorationTask` holds the network under: the prefix of
#: every weight in the ``state_dict`` of a Lightning checkpoint written by ``clg-layers train``.
LIGHTNING_MODULE_PREFIX = "model."

_META_NAME = "clg_layers.model"
_META_CONFIG = "clg_layers.config"
# Keys Lightning writes into every checkpoint; the first one marks the file as Lightning's.
_LIGHTNING_VERSION = "pytorch-lightning_version"
_LIGHTNING_WEIGHTS = "state_dict"
_LIGHTNING_TRAINING_WEIGHTS = "current_model_state"  # WeightAveraging: the non-averaged weights
_LIGHTNING_HPARAMS = "hyper_parameters"

_LOG = logging.getLogger(__name__)
#: The attribute of this module's log records that holds :attr:`LoadReport.source`.
SOURCE_LOG_FIELD = "clg_layers_source"


class LoadReport(NamedTuple):
    """What :func:`load_checkpoint` could not match (all empty after a strict load), migrated and took.

    ``migrated`` lists, one line per kind of change, the older layouts that
    were mapped to the current one (see :func:`migrate_state_dict`); it is
    empty for a checkpoint written by this version. ``source`` says which
    weights of the file were loaded when it holds more than one set, e.g.
    ``"Lightning checkpoint: the EMA weights ..."``; it is empty for a plain
    state dict.
    """

    missing: list[str]
    unexpected: list[str]
    mismatched: list[str]
    migrated: list[str] = []  # noqa: RUF012 - a NamedTuple default, never mutated
    #: Which set of weights was loaded when the file holds more than the network's one set (a
    #: Lightning checkpoint, with or without EMA weights; a BasicSR file with ``params_ema``);
    #: empty for a plain state dict.
    source: str = ""


def _split(value: torch.Tensor, parts: int, flatten: bool) -> list[torch.Tensor]:
    chunks = value.chunk(parts, dim=0)
    return [c.flatten(1).contiguous() if flatten and c.ndim == 4 else c.contiguous() for c in chunks]


def migrate_state_dict(
    state: Mapping[str, torch.Tensor], *, expected: Mapping[str, Sequence[int]] | None = None
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map the weights of an older clg-layers layout to the current one.

    clg-layers 0.2.0 held DBPA's query, key and value as one ``qkv`` 1×1
    convolution (``3C`` outputs) and one ``qkv_dw`` depthwise convolution, and
    the 1×1 projections of DBPA, GNFF and the coupling connection (``fuse``)
    as ``nn.Conv2d`` weights ``(out, in, 1, 1)``. Since 0.3.0 they are
    separate modules (``q``, ``k``, ``v``, ``q_dw``, ``k_dw``, ``v_dw``,
    GNFF's ``fc1_a`` and ``fc1_b``) and the projections ``nn.Linear``
    weights ``(out, in)``. The values are the
    same numbers, split and reshaped; outputs are unchanged.

    Args:
        state: A state dict (names to tensors).
        expected: The keys and shapes of the model it will be loaded into
            (``{k: v.shape for k, v in model.state_dict().items()}``). When
            given, a tensor is only migrated if the model has every new key
            with the new shape (and not the old key as it was), so models of
            other libraries that happen to use these names are left alone.

    Returns:
        ``(state, notes)``: the migrated state dict (a new dict; tensors not
        migrated are shared) and one line per kind of change made (empty if
        none).
    """
    out: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def fits(old: str, new: list[str], parts: list[torch.Tensor]) -> bool:
        if expected is None:
            return True
        if old in expected and tuple(expected[old]) == tuple(state[old].shape):
            return False  # the model still has the old layout
        return all(n in expected and tuple(expected[n]) == tuple(p.shape) for n, p in zip(new, parts))

    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        parent, _, name = module.rpartition(".")
        base = f"{parent}." if parent else ""
        new: list[str] | None = None
        note = ""
        if parent.endswith("attn") and name == "qkv" and value.shape[0] % 3 == 0:
            new, parts, flat = [f"{base}{n}.{leaf}" for n in ("q", "k", "v")], 3, True
            note = "DBPA `attn.qkv` (one 3C-wide 1×1 convolution) -> `attn.q`, `attn.k`, `attn.v` (nn.Linear)"
        elif parent.endswith("attn") and name == "qkv_dw" and value.shape[0] % 3 == 0:
            new, parts, flat = [f"{base}{n}.{leaf}" for n in ("q_dw", "k_dw", "v_dw")], 3, False
            note = (
                "DBPA `attn.qkv_dw` (one 3C-wide depthwise convolution) "
                "-> `attn.q_dw`, `attn.k_dw`, `attn.v_dw`"
            )
        elif parent.endswith("ffn") and name == "fc1" and value.shape[0] % 2 == 0:
            new, parts, flat = [f"{base}{n}.{leaf}" for n in ("fc1_a", "fc1_b")], 2, True
            note = "GNFF `ffn.fc1` (one 2E-wide 1×1 convolution) -> `ffn.fc1_a`, `ffn.fc1_b` (nn.Linear)"
        elif (
            (
                (parent.endswith("attn") and name == "proj")
                or (parent.endswith("ffn") and name == "fc2")
                or name == "fuse"
            )
            and leaf == "weight"
            and value.ndim == 4
            and value.shape[2:] == (1, 1)
        ):
            new, parts, flat = [key], 1, True
            note = (
                "DBPA `attn.proj`, GNFF `ffn.fc2` and the coupling `fuse` 1×1 convolution weights "
                "(out, in, 1, 1) -> nn.Linear (out, in)"
            )
        split = _split(value, parts, flat) if new is not None else []
        if new is None or not fits(key, new, split):
            out[key] = value
            continue
        for new_key, part in zip(new, split):
            out[new_key] = part
        counts[note] = counts.get(note, 0) + 1
    notes = [f"{note} ({n} tensors; clg-layers 0.2.0 layout)" for note, n in counts.items()]
    return out, notes


def _fmt(path: str | Path) -> str:
    return repr(str(path))


def _sniff(path: Path) -> str:
    """Return ``"safetensors"`` or ``"torch"`` from the file's first bytes, or raise ``ValueError``."""
    if not path.exists():
        raise FileNotFoundError(f"load_checkpoint: no such file: {_fmt(path)}")
    if not path.is_file():
        raise ValueError(f"load_checkpoint: {_fmt(path)} is not a file")
    with path.open("rb") as f:
        head = f.read(9)
    if not head:
        raise ValueError(f"load_checkpoint: {_fmt(path)} is empty, not a checkpoint")
    # safetensors first: its first 8 bytes are a header length, whose low byte can be 0x80 (a pickle's
    # first byte), but a pickle or zip file never has "{" at offset 8 after a plausible length.
    if len(head) == 9 and head[8:9] == b"{":
        (header_len,) = struct.unpack("<Q", head[:8])
        if 0 < header_len <= path.stat().st_size - 8:
            return "safetensors"
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":  # torch's zip format, or a legacy pickle
        return "torch"
    raise ValueError(
        f"load_checkpoint: {_fmt(path)} is neither a safetensors file nor a torch checkpoint "
        "(.pt/.pth); was it truncated or is it another kind of file?"
    )


def _load_torch(path: Path, *, mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with errors that say what was refused.

    Args:
        path: A torch checkpoint (zip or legacy pickle format, as :func:`_sniff` tells).
        mmap: Map the tensors' storage instead of reading it (zip format only; for
            reading the metadata of a large file cheaply).

    Raises:
        ValueError: If the file is damaged, or is a pickle that is not plain tensors and
            containers (nothing in it is run; the message names the objects it refers to).
    """
    with path.open("rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and is_zip)
    except Exception as err:
        text = str(err).lower()
        if "weights_only" not in text and "unpickl" not in text:
            raise ValueError(
                f"load_checkpoint: cannot read {_fmt(path)} as torch: a damaged or truncated file. ({err})"
            ) from None
        refused = ""
        if is_zip:
            try:  # scans the pickle's opcodes; imports and runs nothing
                names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
            except Exception:  # only the list of names in the message is lost
                names = []
            if names:
                refused = f" It refers to {', '.join(names)}."
        raise ValueError(
            f"load_checkpoint: cannot read {_fmt(path)} as torch: a pickle that is not plain tensors and "
            f"containers (refused, nothing was run).{refused} If it is a Lightning checkpoint whose "
            "hyper_parameters hold such objects and you trust the file, re-save it without them: "
            "ckpt = torch.load(path, weights_only=False); del ckpt['hyper_parameters']; "
            f"torch.save(ckpt, new_path). ({err})"
        ) from None


def _read_weights(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict of a checkpoint file and which weights of the file it is (see :func:`unwrap_weights`).

    Logs the choice (``INFO``) when the file holds more than one set of weights.
    """
    kind = _sniff(path)
    if kind == "safetensors":
        try:
            obj: Any = load_file(path, device="cpu")
        except Exception as err:
            raise ValueError(
                f"load_checkpoint: cannot read {_fmt(path)} as safetensors: a damaged or truncated file. "
                f"({err})"
            ) from None
    else:
        obj = _load_torch(path)
    state, source = _unwrap(obj, path)
    if source:
        _LOG.info("load_checkpoint: %s: %s", path, source, extra={SOURCE_LOG_FIELD: source})
    return state, source


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    return _read_weights(path)[0]


def descend_wrappers(obj: Any) -> Any:
    """Follow the training frameworks' wrapper keys (:data:`WRAPPER_KEYS`) down to the weights."""
    while isinstance(obj, Mapping):
        nested = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if nested is None:
            break
        obj = obj[nested]
    return obj


def strip_prefixes(key: str) -> str:
    """``key`` without the :data:`STRIP_PREFIXES` that (Distributed)DataParallel and torch.compile add."""
    stripped = True
    while stripped:
        stripped = False
        for prefix in STRIP_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix) :], True
    return key


def is_lightning_checkpoint(obj: Any) -> bool:
    """Whether ``obj`` (a loaded file) is a Lightning checkpoint: its version key and a ``state_dict``."""
    return (
        isinstance(obj, Mapping)
        and _LIGHTNING_VERSION in obj
        and isinstance(obj.get(_LIGHTNING_WEIGHTS), Mapping)
    )


def _lightning_weights(ckpt: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The network's weights in a Lightning checkpoint, without the LightningModule's attribute prefix.

    ``state_dict`` is the LightningModule's: every key starts with the attribute
    that holds the network (``model.`` in :class:`~clg_layers.training.RestorationTask`).
    One prefix shared by every key is removed whatever its name; with several
    modules (a loss network, say), the ``model.`` ones are taken.
    """
    state = ckpt[_LIGHTNING_WEIGHTS]
    modules = sorted({str(key).split(".", 1)[0] for key in state})
    prefix = LIGHTNING_MODULE_PREFIX
    ignored = ""
    if len(modules) == 1 and any("." in str(key) for key in state):
        prefix = modules[0] + "."
    elif prefix[:-1] in modules:
        others = [m for m in modules if m != prefix[:-1]]
        ignored = f"; the weights of {others} (other modules of the LightningModule) were not loaded"
    else:
        raise ValueError(
            "load_checkpoint: the Lightning checkpoint's `state_dict` holds the modules "
            f"{modules[:10]}, none of them `{prefix[:-1]}` (where clg-layers' RestorationTask keeps the "
            "network), so it cannot tell which one is the network; save that module's "
            "state_dict() on its own"
        )
    weights = {str(key)[len(prefix) :]: value for key, value in state.items() if str(key).startswith(prefix)}
    where = f"`{_LIGHTNING_WEIGHTS}`, `{prefix}` prefix removed"
    if _LIGHTNING_TRAINING_WEIGHTS in ckpt:
        source = (
            f"Lightning checkpoint: the EMA weights ({where}); the training weights in "
            f"`{_LIGHTNING_TRAINING_WEIGHTS}` were not used"
        )
    else:
        source = f"Lightning checkpoint: the model's weights ({where}); the file has no EMA weights"
    return weights, source + ignored


def unwrap_weights(obj: Any) -> tuple[Any, str]:
    """The weights in a loaded checkpoint, and which set they are when it holds more than one.

    A Lightning checkpoint gives its ``state_dict`` without the LightningModule's
    prefix: the EMA weights when the run had EMA (``current_model_state`` then
    holds the training weights), else the model's. Other files follow
    :data:`WRAPPER_KEYS` (BasicSR's ``params_ema`` before ``params``). The
    ``module.``/``_orig_mod.`` prefixes are left to the caller.

    Args:
        obj: What ``torch.load``/``safetensors`` returned.

    Returns:
        ``(weights, source)``: the innermost mapping (or ``obj`` itself if it is
        not a mapping) and a sentence for :attr:`LoadReport.source` (empty when
        the file holds one set of weights).

    Raises:
        ValueError: For a Lightning checkpoint whose network cannot be told apart.
    """
    if is_lightning_checkpoint(obj):
        return _lightning_weights(obj)
    source = ""
    if isinstance(obj, Mapping) and isinstance(obj.get("params_ema"), Mapping):
        source = "the EMA weights (`params_ema`)"
        if isinstance(obj.get("params"), Mapping):
            source += "; the training weights in `params` were not used"
    return descend_wrappers(obj), source


def _unwrap(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], str]:
    obj, source = unwrap_weights(obj)
    if not isinstance(obj, Mapping):
        raise ValueError(
            f"load_checkpoint: {_fmt(path)} holds a {type(obj).__name__}, not a state dict "
            f"(a mapping of names to tensors, possibly under one of {list(WRAPPER_KEYS)})"
        )
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(
            f"load_checkpoint: {_fmt(path)} is not a state dict: entries {bad[:5]} are not tensors "
            f"(top-level keys: {list(obj)[:10]}; weights are looked for under {list(WRAPPER_KEYS)})"
        )
    return {strip_prefixes(key): value for key, value in obj.items()}, source


def _listing(title: str, items: list[str], limit: int = 10) -> str:
    shown = ", ".join(items[:limit]) + (f", ... and {len(items) - limit} more" if len(items) > limit else "")
    return f"\n  {title} ({len(items)}): {shown}"


def load_checkpoint(model: nn.Module, path: str | Path, *, strict: bool = True) -> LoadReport:
    """Load weights from a file into ``model``, without ever running code from it.

    Accepts safetensors and ``.pt``/``.pth`` files holding a plain state dict
    or one nested under ``params_ema``, ``params``, ``state_dict``,
    ``model_state_dict`` or ``model``, and Lightning ``.ckpt`` files (such as
    the ``checkpoints/last.ckpt`` of ``clg-layers train``: the network's
    weights from ``state_dict``, the EMA weights when the run had EMA, without
    the LightningModule's ``model.`` prefix); ``module.`` and ``_orig_mod.``
    key prefixes are removed. Checkpoints of older clg-layers layouts (0.2.0)
    are migrated to the current one (:func:`migrate_state_dict`); the report's
    ``migrated`` field says what was changed, and its ``source`` field which
    weights were taken from a file that holds more than one set (also logged
    at ``INFO``).

    Args:
        model: The module to load into (tensors are copied into its own
            parameters, keeping their dtype and device).
        path: The checkpoint file.
        strict: Require the keys and shapes to match exactly. With
            ``strict=False`` every matching tensor is loaded and the rest
            reported.

    Returns:
        A :class:`LoadReport` of missing, unexpected and shape-mismatched keys,
        of the layout migrations applied and of the weights chosen.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is not a readable checkpoint (empty, truncated,
            another format, a pickle that would run code, a Lightning
            checkpoint whose network cannot be told apart) or, with
            ``strict=True``, does not fit ``model``; the message lists the
            missing, unexpected and shape-mismatched keys.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"load_checkpoint: `model` must be an nn.Module, got {type(model).__name__}")
    path = Path(path)
    own = model.state_dict()
    weights, source = _read_weights(path)
    state, migrated = migrate_state_dict(weights, expected={k: v.shape for k, v in own.items()})
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(k for k in state if k not in own)
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    )
    report = LoadReport(missing, unexpected, mismatched, migrated, source)
    if strict and (missing or unexpected or mismatched):
        msg = f"load_checkpoint: {_fmt(path)} does not fit {type(model).__name__}:"
        if missing:
            msg += _listing("missing keys", missing)
        if unexpected:
            msg += _listing("unexpected keys", unexpected)
        if mismatched:
            msg += _listing("shape mismatches", mismatched)
        raise ValueError(msg)
    usable = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    model.load_state_dict(usable, strict=False)
    return report


def read_checkpoint_config(path: str | Path) -> tuple[str | None, dict[str, Any]]:
    """Return the zoo name and constructor config stored with a checkpoint's weights.

    safetensors files written by :func:`save_checkpoint` carry them as
    metadata; Lightning checkpoints written by ``clg-layers train`` (or any
    :class:`~clg_layers.training.RestorationTask`) carry them in their
    ``hyper_parameters`` (``model_name``, ``model_config``), read with
    ``torch.load(weights_only=True)``. A recorded name is returned only if it
    is a registered model (a task built around an unregistered model records
    its class name).

    Args:
        path: A checkpoint file.

    Returns:
        ``(name, config)``; ``(None, {})`` for files that carry no config
        (other ``.pt``/``.pth`` files, or safetensors written by other tools).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is unreadable (as :func:`load_checkpoint`) or
            its stored config is not a mapping.
    """
    path = Path(path)
    if _sniff(path) != "safetensors":
        return _lightning_config(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except SafetensorError as err:
        raise ValueError(f"load_checkpoint: cannot read {_fmt(path)} as safetensors: {err}") from None
    try:
        config = json.loads(meta.get(_META_CONFIG, "{}"))
    except json.JSONDecodeError as err:
        raise ValueError(f"load_checkpoint: {_fmt(path)} has an unreadable config: {err}") from None
    if not isinstance(config, dict):
        raise ValueError(f"load_checkpoint: {_fmt(path)} has a config that is not a mapping")
    return meta.get(_META_NAME), config


def _lightning_config(path: Path) -> tuple[str | None, dict[str, Any]]:
    """``(model_name, model_config)`` from a Lightning checkpoint's hyper-parameters; ``(None, {})`` else."""
    from .registry import list_models

    ckpt = _load_torch(path, mmap=True)  # the metadata only: tensors stay on disk
    if not is_lightning_checkpoint(ckpt):
        return None, {}
    hparams = ckpt.get(_LIGHTNING_HPARAMS)
    if not isinstance(hparams, Mapping):
        return None, {}
    config = hparams.get("model_config")
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise ValueError(
            f"load_checkpoint: {_fmt(path)} has a `hyper_parameters.model_config` that is not a mapping "
            f"(got {type(config).__name__})"
        )
    name = hparams.get("model_name")
    registered = isinstance(name, str) and name in list_models()
    return (name if registered else None), dict(config)


def model_config_dict(model: nn.Module) -> dict[str, Any] | None:
    """``model.config`` as a JSON-safe dict: a :class:`~clg_layers.CLGINetConfig`'s ``to_dict()``,
    a copy of a plain dict (a registered model of another kind), or ``None``."""
    config = getattr(model, "config", None)
    if isinstance(config, CLGINetConfig):
        return config.to_dict()
    if isinstance(config, dict):
        return dict(config)
    return None


def save_checkpoint(model: nn.Module, path: str | Path) -> Path:
    """Write ``model``'s weights as safetensors, with its zoo name and config as metadata.

    ``build(name, checkpoint=path)`` then restores the same architecture
    (including overrides such as ``in_chans=1``) and weights.

    Args:
        model: The module to save; a model from :func:`~clg_layers.build`
            carries its name and config (a :class:`~clg_layers.CLGINetConfig`,
            stored as its :meth:`~clg_layers.CLGINetConfig.to_dict` JSON).
        path: Destination; must end in ``.safetensors``.

    Returns:
        The path written.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"save_checkpoint: `model` must be an nn.Module, got {type(model).__name__}")
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"save_checkpoint: the file name must end in .safetensors, got {_fmt(path)}")
    metadata = {"format": "pt"}
    name = getattr(model, "model_name", None)
    if name:
        metadata[_META_NAME] = str(name)
    config = model_config_dict(model)
    if config is not None:
        metadata[_META_CONFIG] = json.dumps(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, str(path), metadata=metadata, force_contiguous=True)
    return path
