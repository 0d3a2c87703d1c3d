"""CLG-INet: the U-shaped Coupled Local-Global Interactive Network (Jiang et al., ACM MM 2023)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

import torch
import torch.fx
import torch.nn.functional as F
from timm.models import checkpoint_seq
from torch import nn

from ..layers import CouplingBlock, HybridGatedUnit
from ..layers._checks import check_bool, check_input
from ..layers._init import factory_kwargs, reset_children
from ..layers._shapes import crop, known_zero, restore_format, to_channels_last
from . import _features
from .config import FUSION_MODES, LEVELS, CLGINetConfig
from .registry import register_model

__all__ = ["FUSION_MODES", "VARIANTS", "CLGINet", "Variant", "clginet_base", "clginet_small", "clginet_tiny"]

_SIZE_MULTIPLE = 2 ** (LEVELS - 1)  # what three 2× downsamplings need
_MIN_BOTTLENECK = 2  # the smallest bottleneck side, in pixels (inputs are padded up to 16×16)


def _resolve_config(config: CLGINetConfig | None, overrides: dict[str, Any]) -> CLGINetConfig:
    """``config`` (or the defaults) with ``overrides`` applied; errors name CLGINet."""
    if config is not None and not isinstance(config, CLGINetConfig):
        hint = " (for a dict: CLGINetConfig.from_dict(d))" if isinstance(config, Mapping) else ""
        raise TypeError(
            f"CLGINet: `config` must be a CLGINetConfig or None, got {type(config).__name__}{hint}"
        )
    try:
        if config is None:
            unknown = sorted(set(overrides) - set(CLGINetConfig.field_names()))
            if unknown:
                raise TypeError(
                    f"CLGINetConfig: unknown option(s) {unknown}; known: {list(CLGINetConfig.field_names())}"
                )
            return CLGINetConfig(**overrides)
        return config.replace(**overrides) if overrides else config
    except (TypeError, ValueError) as err:
        # The message names the class the user called, not the config behind it.
        raise type(err)(str(err).replace("CLGINetConfig:", "CLGINet:", 1)) from None


def _mirror_index(n: int | torch.SymInt, pad: int | torch.SymInt, device: torch.device) -> torch.Tensor:
    """Indices that extend an axis of size ``n`` by ``pad`` entries by mirroring it (reflect padding).

    ``0, 1, …, n−1, n−2, …, 1, 0, 1, …``: for ``pad < n`` this is exactly
    ``F.pad(mode="reflect")``; longer pads keep mirroring (a 1-pixel axis
    repeats its pixel). Pure integer arithmetic, with no branch on the size,
    so one exported graph serves every size.
    """
    i = torch.arange(n + pad, device=device)
    # The size as a 0-d tensor: exporters translate tensor arithmetic, not
    # arithmetic between a tensor and a symbolic Python int.
    size = i.new_full((), n)
    period = (2 * size - 2).clamp_min(1)
    r = torch.remainder(i, period)
    return torch.where(r < size, r, period - r)


def _reflect_pad(x: torch.Tensor, pad_h: int | torch.SymInt, pad_w: int | torch.SymInt) -> torch.Tensor:
    """Pad ``(B, C, H, W)`` at the bottom and right by mirroring, for any pad size."""
    h, w = x.shape[-2:]
    if all(isinstance(n, int) for n in (h, w, pad_h, pad_w)) and pad_h < h and pad_w < w:
        return F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")  # the same values, one fused op
    x = x.index_select(2, _mirror_index(h, pad_h, x.device))
    return x.index_select(3, _mirror_index(w, pad_w, x.device))


def pad_input(x: torch.Tensor) -> torch.Tensor:
    """Mirror-pad images ``(B, C, H, W)`` at the bottom and right to ``8 · max(ceil(H / 8), 2)`` (and W).

    A multiple of 8 for the three 2× downsamplings, and at least 16 so the
    bottleneck is at least 2×2. Written as ``8 · n`` so symbolic shapes stay
    simple for ``torch.export``: every level is provably a whole
    ``n · 8 / 2^l``, and no level is ever 1 pixel wide (a size-1 map is a
    special case for convolutions, which an exported graph would otherwise be
    specialised against). ``torch.fx`` traces this function as one leaf call.
    """
    h, w = x.shape[-2:]
    m = _SIZE_MULTIPLE
    pad_h = torch.sym_max((h + m - 1) // m, _MIN_BOTTLENECK) * m - h
    pad_w = torch.sym_max((w + m - 1) // m, _MIN_BOTTLENECK) * m - w
    # Symbolic sizes (torch.export, dynamic torch.compile, ONNX) take the padding
    # path whatever the size (a zero-width pad is a no-op), so the graph is not
    # specialised to "multiple of 8 or not"; see window_attention.
    if known_zero(pad_h) and known_zero(pad_w):
        return x
    # Mirror padding for every size: no "is the image larger than the pad?"
    # branch, which would specialise an exported graph to the example's size.
    return _reflect_pad(x, pad_h, pad_w)


def crop_like(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The top-left ``H×W`` of ``out``, with ``H, W`` those of ``x`` (undoes :func:`pad_input`)."""
    h, w = x.shape[-2:]
    if known_zero(out.shape[-2] - h) and known_zero(out.shape[-1] - w):
        return out
    return crop(out, h, w, dims=(2, 3))


torch.fx.wrap("pad_input")
torch.fx.wrap("crop_like")
torch.fx.wrap("to_channels_last")
torch.fx.wrap("restore_format")


class _Downsample(nn.Sequential):
    """``Conv3×3(C → C/2)`` then ``PixelUnshuffle(2)``: half the resolution, twice the channels."""

    def __init__(self, dim: int, dd: dict[str, Any]) -> None:
        super().__init__(nn.Conv2d(dim, dim // 2, 3, padding=1, bias=False, **dd), nn.PixelUnshuffle(2))


class _Upsample(nn.Sequential):
    """``Conv3×3(C → 2C)`` then ``PixelShuffle(2)``: twice the resolution, half the channels."""

    def __init__(self, dim: int, dd: dict[str, Any]) -> None:
        super().__init__(nn.Conv2d(dim, dim * 2, 3, padding=1, bias=False, **dd), nn.PixelShuffle(2))


class CLGINet(nn.Module):
    """The CLG-INet image-restoration network.

    A four-level U-shape of :class:`~clg_layers.CouplingBlock` stages (widths
    ``C, 2C, 4C, 8C``): a 3×3 embedding, three encoder levels each followed by
    a downsample (``Conv3×3`` + ``PixelUnshuffle(2)``), the bottleneck, three
    decoder levels each preceded by an upsample (``Conv3×3`` + ``PixelShuffle(2)``)
    and a :class:`~clg_layers.HybridGatedUnit` that fuses the upsampled decoder
    feature with the encoder features of all three encoder levels, then
    refinement blocks at full resolution, a 3×3 output convolution and a
    global residual. Any input size works: the input is padded internally
    (mirrored, as reflect padding, also when the image is smaller than the
    pad) to a multiple of 8 and the output cropped back.

    Every residual branch inside the blocks starts at zero (its last
    projection is zero-initialised, its layer scale is one), so every block of
    a fresh network is the identity. The output convolution keeps PyTorch's
    default initialisation, so that the layers before it get a gradient from
    the first step: a fresh network with a global residual is therefore *not*
    the identity but returns its input plus a small perturbation, a
    convolution of the (otherwise linear-and-gated) features of the embedding
    (on natural images about 10⁻² in mean absolute value; see "How branches
    start" in the design notes).

    Build it from a :class:`~clg_layers.CLGINetConfig` (``CLGINet(cfg)``), from
    keyword options (``CLGINet(dim=16)``), or both (``CLGINet(cfg, in_chans=1)``:
    the keywords replace the config's fields). The options are validated by
    :class:`~clg_layers.CLGINetConfig`; the errors name ``CLGINet``.
    ``model.config`` is the resulting :class:`~clg_layers.CLGINetConfig`.

    Args:
        config: The configuration; ``None`` for the defaults.
        **overrides: Options that replace ``config``'s, listed below.
        in_chans: Channels of the input image (1 for grayscale, 3 for RGB, ...).
        out_chans: Channels of the output; ``None`` means ``in_chans``.
        dim: Width ``C`` of the first level.
        depths: Coupling blocks per level, ``(level0, level1, level2, bottleneck)``;
            each decoder level repeats its encoder level's depth.
        num_heads: Attention heads per level (an int applies to all four).
        window_size: Window side of the spatial attention.
        kernel_size: Depthwise kernel of DBPA's ``qkv``.
        expansion: GNFF expansion ratio.
        refinement_depth: Coupling blocks at full resolution after the decoder.
        drop_path_rate: Stochastic depth, rising linearly to this value over
            all blocks (encoder, bottleneck, decoder, refinement in order).
        global_residual: Add the input image to the output (needs ``in_chans == out_chans``).
        cnn_groups: Groups of the CNN layers' convolutions; ``0`` means
            depthwise-separable (``groups`` equal to each level's width).
        coupling: Coupling-connection mode of every block (``"concat"`` or ``"none"``).
        fusion: How each decoder level merges the upsampled decoder feature with
            the encoder features: ``"hgu"`` (a :class:`~clg_layers.HybridGatedUnit`
            over all three encoder levels, the paper's) or ``"add"`` (the
            upsampled feature plus the same-level skip, no fusion modules: an
            ablation).
        spatial: Use DBPA's spatial (window) projection in every block.
        channel: Use DBPA's channel (transposed) projection in every block.
        attn_fusion: How every DBPA mixes its two projections: ``"gate"`` (the
            default) or ``"sum"`` (:data:`~clg_layers.DBPA_FUSIONS`).
        noise_level_map: Condition on the noise level (DRUNet's recipe): the
            input carries one more channel, a σ map in the ``[0, 1]`` image range
            (:func:`~clg_layers.with_sigma_map`), embedded by its own
            convolution ``embed_sigma``; the global residual adds the image
            channels only. ``model.in_chans`` is then ``in_chans + 1`` (what
            ``forward`` takes), ``model.config.in_chans`` the image's channels.
        device: Device of the parameters, as for ``torch.nn`` layers
            (``"meta"`` builds them without memory; materialise with
            ``model.to_empty(device=...)`` then :meth:`reset_parameters`).
            Not a configuration field: it does not change what the model computes.
        dtype: Floating-point dtype of the parameters (not a configuration field either).

    Shape:
        - Input: ``(B, in_chans, H, W)`` (``(B, in_chans + 1, H, W)`` with
          ``noise_level_map``), any ``H, W >= 1``
        - Output: ``(B, out_chans, H, W)``
    """

    #: The model pads internally, so callers need not round sizes.
    size_multiple: int = 1
    #: float16 (``model.half()`` or autocast) is tested against float32.
    supports_half: bool = True
    #: bfloat16 (``model.bfloat16()`` or autocast) is tested against float32.
    supports_bf16: bool = True
    #: The zoo name this model was built under (set by :func:`~clg_layers.build`).
    model_name: str | None = None

    def __init__(
        self,
        config: CLGINetConfig | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__()
        dd = factory_kwargs("CLGINet", device, dtype)
        self.config: CLGINetConfig = _resolve_config(config, overrides)
        cfg = self.config
        self.in_chans, self.out_chans, self.global_residual = cfg.in_chans, cfg.out_chans, cfg.global_residual
        self.in_chans = cfg.input_channels  # what forward takes: the image, and the σ map if conditioned
        self.grad_checkpointing = False

        widths, rates = cfg.widths, iter(cfg.drop_path_rates())

        def stage(level: int, depth: int) -> nn.Sequential:
            return nn.Sequential(
                *(
                    CouplingBlock(widths[level], cfg.block_config(level, next(rates)), **dd)
                    for _ in range(depth)
                )
            )

        self.embed = nn.Conv2d(cfg.in_chans, cfg.dim, 3, padding=1, **dd)
        self.embed_sigma = (
            nn.Conv2d(1, cfg.dim, 3, padding=1, bias=False, **dd) if cfg.noise_level_map else None
        )
        self.encoders = nn.ModuleList(stage(level, cfg.depths[level]) for level in range(LEVELS - 1))
        self.downs = nn.ModuleList(_Downsample(widths[level], dd) for level in range(LEVELS - 1))
        self.bottleneck = stage(LEVELS - 1, cfg.depths[-1])
        # Decoder modules are listed deepest first, in the order they run.
        decoder_levels = range(LEVELS - 2, -1, -1)
        self.ups = nn.ModuleList(_Upsample(widths[level + 1], dd) for level in decoder_levels)
        # fusion="add" builds no fusion modules at all (no parameter without a gradient).
        self.fusions: nn.ModuleList | None = None
        if cfg.fusion == "hgu":
            self.fusions = nn.ModuleList(
                HybridGatedUnit([widths[level], *widths[: LEVELS - 1]], widths[level], **dd)
                for level in decoder_levels
            )
        self.decoders = nn.ModuleList(stage(level, cfg.depths[level]) for level in decoder_levels)
        self.refinement = stage(0, cfg.refinement_depth)
        # Default init, not zero: a zero head would block every gradient at the first step.
        self.head = nn.Conv2d(cfg.dim, cfg.out_chans, 3, padding=1, **dd)

    def reset_parameters(self) -> None:
        """Re-initialise every parameter as a fresh build does, in the order the constructor draws them.

        PyTorch's default initialisation for the embedding, resamplers, fusion
        units and head; every block's own rules (zero-started last projections
        and coupling, unit layer scales and temperatures). Under the same
        random seed the parameters are bit-identical to a fresh build's, so a
        model built with ``device="meta"`` and materialised with
        ``model.to_empty(device=...)`` then ``model.reset_parameters()`` is the
        model a fresh build gives.
        """
        reset_children(self)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each coupling block's activations in the backward pass instead of storing them.

        Outputs and gradients are unchanged; activation memory in training drops
        to about one block's worth per stage, for roughly a third more compute.
        """
        self.grad_checkpointing = check_bool("CLGINet", "enable", enable)

    # ----------------------------------------------------------------------------------------------
    # timm's model contract: feature levels, intermediates, pruning to an encoder, parameter groups.
    # The feature levels are the outputs of the three encoder levels and of the bottleneck.

    #: Classes of the classifier: none, a restoration network has no classifier (timm's convention).
    num_classes: int = 0
    #: Feature levels this network still computes (lowered by :meth:`prune_intermediate_layers`).
    _feature_levels: int = LEVELS

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """timm's description of the feature levels, shallowest first (a new list on each access).

        One dict per level: ``num_chs`` (channels: ``C, 2C, 4C, 8C``),
        ``reduction`` (input side over feature side: 1, 2, 4, 8), ``module``
        (``"encoders.0"``, ``"encoders.1"``, ``"encoders.2"``, ``"bottleneck"``:
        the stage whose output it is) and ``index`` (0-3). The encoder levels'
        outputs are the skip connections the decoder fuses. Pruning
        (:meth:`prune_intermediate_layers`) leaves it unchanged, as in timm.
        """
        return _features.feature_levels(self.config)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Restore ``x`` and return the multi-scale features of the levels in ``indices`` (timm's API).

        The features are the outputs of the levels listed in
        :attr:`feature_info` (encoder levels 0-2, bottleneck), in the order
        they run whatever the order of ``indices``. Each is cropped to the
        part computed from the image: level ``l`` of an ``H×W`` input is
        ``ceil(H / 2^l) × ceil(W / 2^l)`` (the network pads to a multiple of 8
        and at least 16 internally; the padding's share is cut off). The final
        output is what :meth:`forward` returns, the restored image: it needs
        the whole network, so with ``intermediates_only=False`` every stage
        runs and ``stop_early`` changes nothing.

        Args:
            x: Images of shape ``(B, in_chans, H, W)``.
            indices: Which levels: ``None`` for all four, an int ``n`` for the
                last ``n``, or a sequence of level indices (negative ones count
                from the end).
            norm: Accepted for timm's API; the network has no final norm, so
                it changes nothing.
            stop_early: With ``intermediates_only``, stop after the deepest
                requested level (the rest of the encoder, the decoder and the
                head do not run).
            output_fmt: ``"NCHW"``: features ``(B, C_l, H_l, W_l)`` in ``x``'s
                memory format; ``"NHWC"``: ``(B, H_l, W_l, C_l)`` views of the
                network's channels-last maps (no copy when nothing is cropped).
            intermediates_only: Return the features only.

        Returns:
            The list of features if ``intermediates_only``, else the tuple
            ``(restored, features)`` with ``restored`` of shape
            ``(B, out_chans, H, W)``, equal to ``forward(x)``.

        Raises:
            TypeError: For a wrong type of ``x``, ``indices`` or a flag.
            ValueError: For a wrong input shape, an index out of range or an
                unknown ``output_fmt``.
            RuntimeError: For ``intermediates_only=False`` on a network whose
                decoder :meth:`prune_intermediate_layers` removed.
        """
        owner = "CLGINet.forward_intermediates"
        check_input(owner, x, self.in_chans)
        check_bool(owner, "norm", norm)
        check_bool(owner, "stop_early", stop_early)
        check_bool(owner, "intermediates_only", intermediates_only)
        fmt = _features.check_output_fmt(owner, output_fmt)
        pruned = isinstance(self.head, _features.PrunedHead)
        if pruned and not intermediates_only:
            raise RuntimeError(
                f"{owner}: the decoder was removed by prune_intermediate_layers(), so there is no "
                "restored image to return; pass intermediates_only=True"
            )
        take, deepest = _features.take_indices(owner, self._feature_levels, indices)
        run = deepest + 1 if intermediates_only and (stop_early or pruned) else LEVELS

        f, image = self._embed(x)
        skips, features = [], []
        for level in range(run):
            if level:
                f = self.downs[level - 1](f)
            f = self._run(self.encoders[level] if level < LEVELS - 1 else self.bottleneck, f)
            if level < LEVELS - 1:
                skips.append(f)
            if level in take:
                features.append(_features.format_feature(f, x, level, fmt))
        if intermediates_only:
            return features
        return self._decode(f, skips, x, image), features

    def prune_intermediate_layers(
        self,
        indices: int | Sequence[int] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> list[int]:
        """Remove the modules the features in ``indices`` do not need (timm's API), in place.

        The decoder (upsamplings, fusion units, decoder and refinement blocks,
        output convolution) needs every encoder level and the bottleneck, so
        it is removed when ``prune_head`` is set or a level is cut; the
        encoder levels (and downsamplings) beyond the deepest requested level
        are removed. Afterwards :meth:`forward_intermediates` with
        ``intermediates_only=True`` returns the same features as before, and
        :meth:`forward` raises ``RuntimeError``. ``model.config`` still
        describes the whole network. ``timm.create_model(...,
        features_only=True)`` calls this.

        Args:
            indices: The levels to keep, as in :meth:`forward_intermediates`.
            prune_norm: Accepted for timm's API; there is no final norm.
            prune_head: Remove the decoder even when every level is kept.

        Returns:
            The absolute indices of the kept levels, sorted.
        """
        owner = "CLGINet.prune_intermediate_layers"
        check_bool(owner, "prune_norm", prune_norm)
        check_bool(owner, "prune_head", prune_head)
        take, deepest = _features.take_indices(owner, self._feature_levels, indices)
        if prune_head or deepest < LEVELS - 1:
            self.ups, self.decoders, self.fusions = nn.ModuleList(), nn.ModuleList(), None
            self.refinement = nn.Sequential()
            self.head = _features.PrunedHead()
        if deepest < LEVELS - 1:
            self.encoders = nn.ModuleList(self.encoders[: deepest + 1])
            self.downs = nn.ModuleList(self.downs[:deepest])
            self.bottleneck = nn.Sequential()
        self._feature_levels = deepest + 1
        return take

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm's parameter groups, in the order the network runs (for layer-wise LR decay).

        ``stem`` is the embedding; ``blocks`` lists the encoder levels (each
        followed by its downsample), the bottleneck, the decoder levels (each
        its upsample, fusion unit and blocks), the refinement blocks and the
        output convolution. ``timm.optim.create_optimizer_v2(model,
        layer_decay=...)`` then scales the learning rate of group ``i`` of
        ``n`` by ``layer_decay ** (n - 1 - i)``: the embedding learns slowest,
        the output convolution at the full rate.

        Args:
            coarse: One group per stage instead of one per coupling block.

        Returns:
            ``{"stem": regex, "blocks": [(regex, ordinal), ...]}``.
        """
        return _features.group_matcher(self.config, check_bool("CLGINet.group_matcher", "coarse", coarse))

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        """timm's ``pretrained_cfg``: restoration data settings, images in ``[0, 1]`` without normalisation.

        ``timm.create_model`` sets it. A model built otherwise
        (:func:`~clg_layers.build`, ``CLGINet(...)``) derives it from its own
        input channels, so ``timm.data.resolve_data_config(model=m)`` gives
        mean 0 and std 1 per channel either way, not ImageNet's settings. It
        names no weights. ``default_cfg`` is the same dict (timm's old name).
        """
        cfg = self.__dict__.get("_pretrained_cfg")
        if cfg is None:
            from .timm_models import model_cfg

            cfg = model_cfg(self)
        return cfg

    @pretrained_cfg.setter
    def pretrained_cfg(self, value: dict[str, Any]) -> None:
        self.__dict__["_pretrained_cfg"] = value

    default_cfg = pretrained_cfg

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """The constructor options as a new dict, ``config.to_dict()`` (spandrel's ``hyperparameters``).

        spandrel's architectures expose the keyword arguments they were built
        with under this name; ``CLGINet(**model.hyperparameters)`` builds the
        same network. Read-only: change options with ``config.replace(...)``.
        """
        return self.config.to_dict()

    def _run(self, stage: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled() and len(stage):
            return checkpoint_seq(stage, x, use_reentrant=False)
        return stage(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Restore an image batch.

        Args:
            x: Images of shape ``(B, in_chans, H, W)``; with ``noise_level_map``,
                ``(B, in_chans + 1, H, W)``: the image, then the σ map in the
                ``[0, 1]`` image range (:func:`~clg_layers.with_sigma_map`).

        Returns:
            Tensor of shape ``(B, out_chans, H, W)``.
        """
        check_input("CLGINet", x, self.in_chans)
        f, image = self._embed(x)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            f = self._run(encoder, f)
            skips.append(f)
            f = down(f)
        f = self._run(self.bottleneck, f)
        return self._decode(f, skips, x, image)

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The padded input's embedding ``(B, C, H', W')`` and the image part of ``x`` (for the residual)."""
        # The network runs in channels_last memory: the Transformer layers work
        # in (B, H, W, C) token layout, which is then a free view instead of two
        # layout copies per layer, and oneDNN's convolutions take it natively.
        padded = to_channels_last(pad_input(x))
        if self.embed_sigma is None:
            return self.embed(padded), x
        # Image and σ map: the two convolutions are one over their concatenation (DRUNet's
        # head), kept as two modules so the weights say which channel is the map.
        c = self.config.in_chans
        return self.embed(padded[:, :c]) + self.embed_sigma(padded[:, c:]), x[:, :c]

    def _decode(
        self, f: torch.Tensor, skips: list[torch.Tensor], x: torch.Tensor, image: torch.Tensor
    ) -> torch.Tensor:
        """Decoder, refinement, head and global residual: the bottleneck's ``f`` to the restored image."""
        for i, (up, decoder) in enumerate(zip(self.ups, self.decoders)):
            u = up(f)
            # Decoder i runs at encoder level LEVELS - 2 - i (deepest first).
            f = self.fusions[i]([u, *skips]) if self.fusions is not None else u + skips[LEVELS - 2 - i]
            f = self._run(decoder, f)
        f = self._run(self.refinement, f)
        out = crop_like(self.head(f), x)
        if self.global_residual:
            out = image + out
        return restore_format(out, x)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config.to_dict().items())


# --------------------------------------------------------------------------------------------------
# Variants: the one table the zoo (build), timm's and torch.hub's entry points are generated from.
# Parameter and MAC counts (at 1×3×256×256) are pinned in tests/test_zoo.py and listed in the docs.
# --------------------------------------------------------------------------------------------------


class Variant(NamedTuple):
    """A zoo variant: its configuration and a one-line description for docstrings and listings."""

    config: CLGINetConfig
    description: str


_VARIANTS: dict[str, Variant] = {
    # 5.9 G MACs: depthwise-separable CNN layers and a lighter GNFF so it trains fast on a CPU.
    "clginet-tiny": Variant(
        CLGINetConfig(dim=16, depths=(1, 1, 1, 2), num_heads=(1, 1, 2, 4), expansion=2.0, cnn_groups=0),
        "CPU demos, tests and quick experiments (≈1.3 M params)",
    ),
    # 23 G MACs.
    "clginet-small": Variant(
        CLGINetConfig(dim=24, depths=(1, 1, 1, 2), num_heads=(1, 2, 4, 8)),
        "a lighter research model, base's shape at half its width (≈6.2 M params)",
    ),
    # 86.7 G MACs (0.62× Restormer's 140.99 G).
    "clginet-base": Variant(
        CLGINetConfig(dim=48, depths=(1, 1, 1, 2), num_heads=(1, 2, 4, 8)),
        "the paper's model (24.3 M params; Table 3 reports 24.7 M)",
    ),
}

#: The zoo variants, name → :class:`Variant` (read-only).
VARIANTS: Mapping[str, Variant] = MappingProxyType(_VARIANTS)


def _entry(name: str) -> Any:
    """The zoo builder of variant ``name``: ``CLGINet(variant config, **overrides)``, registered."""
    variant = _VARIANTS[name]

    def builder(**overrides: Any) -> CLGINet:
        return CLGINet(variant.config, **overrides)

    builder.__name__ = builder.__qualname__ = name.replace("-", "_")
    builder.__doc__ = f"``{name}``: {variant.description}; keyword overrides replace its options."
    return register_model(name)(builder)


clginet_tiny = _entry("clginet-tiny")
clginet_small = _entry("clginet-small")
clginet_base = _entry("clginet-base")
