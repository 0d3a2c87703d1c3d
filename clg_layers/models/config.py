"""The configuration of a :class:`~clg_layers.CLGINet`, as one frozen, self-validating object."""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..layers import COUPLING_MODES, DBPA_FUSIONS, BlockConfig
from ..layers._checks import check_bool, check_choice, check_int, check_positive_float

__all__ = ["FUSION_MODES", "LEVELS", "CLGINetConfig"]

#: Accepted values of ``CLGINetConfig(fusion=...)``.
FUSION_MODES: tuple[str, ...] = ("hgu", "add")

#: Levels of the U-shape: three encoder (and decoder) levels and the bottleneck.
LEVELS = 4

_OWNER = "CLGINetConfig"


def _per_level(name: str, value: object) -> tuple[int, ...]:
    """Expand an int to one copy per level, or check that a sequence has one positive int per level."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,) * LEVELS
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{_OWNER}: `{name}` must be an int or a sequence of {LEVELS} ints, got {value!r}")
    if len(value) != LEVELS:
        raise ValueError(f"{_OWNER}: `{name}` must have {LEVELS} entries (one per level), got {len(value)}")
    return tuple(check_int(_OWNER, f"{name}[{i}]", v) for i, v in enumerate(value))


def _drop_rate(value: object) -> float:
    rate = check_positive_float(_OWNER, "drop_path_rate", value, allow_zero=True)
    if rate >= 1.0:
        raise ValueError(f"{_OWNER}: `drop_path_rate` must be in [0, 1), got {rate}")
    return rate


@dataclass(frozen=True)
class CLGINetConfig(Mapping[str, Any]):
    """Every constructor option of :class:`~clg_layers.CLGINet`, validated once.

    ``CLGINet(config)`` builds the network it describes; ``model.config`` is
    the one a network was built from. The object is frozen and holds plain
    Python values only: ``depths`` and ``num_heads`` become tuples of 4 ints
    (an int ``num_heads`` or ``depths`` applies to every level), numpy scalars
    and fractions become ``int``/``float``, and ``out_chans=None`` becomes
    ``in_chans``. :meth:`to_dict` is JSON (what checkpoints and the Hub
    ``config.json`` store) and :meth:`from_dict` reads it back, including the
    dicts written by clg-layers 0.2 and 0.3, whose keys are the same.

    For code written when ``model.config`` was a dict, the object is also a
    read-only mapping of the :meth:`to_dict` values: ``cfg["dim"]``,
    ``cfg.items()``, ``dict(cfg)`` and ``CLGINet(**cfg)`` work. It compares
    equal to another :class:`CLGINetConfig` only, not to a dict.

    Args:
        in_chans: Channels of the input image (1 for grayscale, 3 for RGB, ...).
        out_chans: Channels of the output; ``None`` means ``in_chans``.
        dim: Width ``C`` of the first level (even).
        depths: Coupling blocks per level, ``(level0, level1, level2, bottleneck)``;
            each decoder level repeats its encoder level's depth.
        num_heads: Attention heads per level (an int applies to all four); each
            must divide its level's width ``dim · 2^level``.
        window_size: Window side of the spatial attention.
        kernel_size: Odd depthwise kernel of DBPA's ``q``, ``k``, ``v``.
        expansion: GNFF expansion ratio.
        refinement_depth: Coupling blocks at full resolution after the decoder.
        drop_path_rate: Stochastic depth in ``[0, 1)``, rising linearly to this
            value over all blocks (encoder, bottleneck, decoder, refinement in order).
        global_residual: Add the input image to the output (needs ``in_chans == out_chans``;
            with ``noise_level_map`` the σ channel is not added).
        cnn_groups: Groups of the CNN layers' convolutions; ``0`` means
            depthwise-separable (``groups`` equal to each level's width).
        coupling: Coupling-connection mode of every block (:data:`~clg_layers.COUPLING_MODES`).
        fusion: How each decoder level merges the upsampled feature with the
            encoder features: ``"hgu"`` (the paper's hybrid gated unit) or ``"add"``
            (the same-level skip only, an ablation).
        spatial: Use DBPA's spatial (window) projection in every block.
        channel: Use DBPA's channel (transposed) projection in every block.
        attn_fusion: How every DBPA mixes its two projections (:data:`~clg_layers.DBPA_FUSIONS`).
        noise_level_map: Condition the network on the noise level, as DRUNet does: the
            input is the image followed by one σ-map channel, ``(B, in_chans + 1, H, W)``
            (:attr:`input_channels` channels), with σ in the ``[0, 1]`` image range
            (``25 / 255`` for σ = 25 on the 0–255 scale; :func:`~clg_layers.with_sigma_map`
            builds it). ``in_chans`` still counts the image channels only, so ``out_chans``
            defaults to them and the global residual adds the image channels to the output.
            The map has its own embedding convolution (``embed_sigma``, no bias) next to the
            image's, which makes such a model recognisable from its weights.

    Raises:
        TypeError, ValueError: For a value of the wrong type or out of range,
            naming the field (``CLGINet(...)`` raises the same errors, naming ``CLGINet``).
    """

    in_chans: int = 3
    out_chans: int | None = None
    dim: int = 48
    depths: tuple[int, ...] = (1, 2, 2, 3)
    num_heads: tuple[int, ...] = (1, 2, 4, 8)
    window_size: int = 8
    kernel_size: int = 7
    expansion: float = 2.66
    refinement_depth: int = 1
    drop_path_rate: float = 0.0
    global_residual: bool = True
    cnn_groups: int = 1
    coupling: str = "concat"
    fusion: str = "hgu"
    spatial: bool = True
    channel: bool = True
    attn_fusion: str = "gate"
    noise_level_map: bool = False

    def __post_init__(self) -> None:
        o = _OWNER
        in_chans = check_int(o, "in_chans", self.in_chans)
        out_chans = in_chans if self.out_chans is None else check_int(o, "out_chans", self.out_chans)
        checked: dict[str, Any] = {
            "in_chans": in_chans,
            "out_chans": out_chans,
            "dim": check_int(o, "dim", self.dim),
            "depths": _per_level("depths", self.depths),
            "num_heads": _per_level("num_heads", self.num_heads),
            "window_size": check_int(o, "window_size", self.window_size),
            "kernel_size": check_int(o, "kernel_size", self.kernel_size, odd=True),
            "expansion": check_positive_float(o, "expansion", self.expansion),
            "refinement_depth": check_int(o, "refinement_depth", self.refinement_depth, minimum=0),
            "drop_path_rate": _drop_rate(self.drop_path_rate),
            "global_residual": check_bool(o, "global_residual", self.global_residual),
            "cnn_groups": check_int(o, "cnn_groups", self.cnn_groups, minimum=0),
            "coupling": str(check_choice(o, "coupling", self.coupling, COUPLING_MODES)),
            "fusion": str(check_choice(o, "fusion", self.fusion, FUSION_MODES)),
            "spatial": check_bool(o, "spatial", self.spatial),
            "channel": check_bool(o, "channel", self.channel),
            "attn_fusion": str(check_choice(o, "attn_fusion", self.attn_fusion, DBPA_FUSIONS)),
            "noise_level_map": check_bool(o, "noise_level_map", self.noise_level_map),
        }
        # Normalised values are written back (frozen, hence object.__setattr__).
        for name, value in checked.items():
            object.__setattr__(self, name, value)
        self._check_consistency()

    def _check_consistency(self) -> None:
        """The checks that involve more than one field."""
        o = _OWNER
        if self.global_residual and self.in_chans != self.out_chans:
            raise ValueError(
                f"{o}: `global_residual=True` needs in_chans == out_chans, "
                f"got in_chans={self.in_chans}, out_chans={self.out_chans}"
            )
        if not (self.spatial or self.channel):
            raise ValueError(f"{o}: at least one of `spatial` and `channel` must be True, got both False")
        if self.dim % 2:
            raise ValueError(
                f"{o}: `dim` must be even (downsampling halves it before PixelUnshuffle), got {self.dim}"
            )
        widths = self.widths
        for level, (w, h) in enumerate(zip(widths, self.num_heads)):
            if w % h:
                raise ValueError(
                    f"{o}: level {level} has width {w}, which `num_heads[{level}]` ({h}) does not divide"
                )
            if self.cnn_groups and w % self.cnn_groups:
                raise ValueError(
                    f"{o}: `cnn_groups` ({self.cnn_groups}) must divide every level width {widths}"
                )

    # ---------------------------------------------------------------------------------------------
    # Derived values

    @property
    def input_channels(self) -> int:
        """Channels of the network's input: ``in_chans``, plus one σ map with ``noise_level_map``."""
        return self.in_chans + 1 if self.noise_level_map else self.in_chans

    @property
    def widths(self) -> tuple[int, ...]:
        """Channel width of each level: ``dim · 2^level``."""
        return tuple(self.dim * 2**level for level in range(LEVELS))

    @property
    def num_blocks(self) -> int:
        """Coupling blocks in the whole network (encoder, bottleneck, decoder, refinement)."""
        return 2 * sum(self.depths[:-1]) + self.depths[-1] + self.refinement_depth

    def drop_path_rates(self) -> list[float]:
        """Stochastic depth of every block, in the order they run, rising linearly to ``drop_path_rate``."""
        n = self.num_blocks
        return [self.drop_path_rate * i / max(n - 1, 1) for i in range(n)]

    def block_config(self, level: int, drop_path: float = 0.0) -> BlockConfig:
        """The :class:`~clg_layers.BlockConfig` of a block at ``level`` (0-3) with ``drop_path``."""
        level = check_int(_OWNER, "level", level, minimum=0)
        if level >= LEVELS:
            raise ValueError(f"{_OWNER}: `level` must be < {LEVELS}, got {level}")
        return BlockConfig(
            num_heads=self.num_heads[level],
            window_size=self.window_size,
            kernel_size=self.kernel_size,
            expansion=self.expansion,
            drop_path=drop_path,
            coupling=self.coupling,
            cnn_groups=self.cnn_groups,
            spatial=self.spatial,
            channel=self.channel,
            attn_fusion=self.attn_fusion,
        )

    # ---------------------------------------------------------------------------------------------
    # Copies and (de)serialisation

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The option names, in declaration order (the keys of :meth:`to_dict`)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self, **changes: Any) -> CLGINetConfig:
        """A validated copy with ``changes`` applied; unknown names raise ``TypeError``.

        ``out_chans`` follows a changed ``in_chans`` when it equalled the old
        one and is not changed itself (as ``out_chans=None`` does), so
        ``cfg.replace(in_chans=1)`` is a grayscale model of the same shape.
        """
        unknown = sorted(set(changes) - set(self.field_names()))
        if unknown:
            raise TypeError(f"{_OWNER}: unknown option(s) {unknown}; known: {list(self.field_names())}")
        if "in_chans" in changes and "out_chans" not in changes and self.out_chans == self.in_chans:
            changes["out_chans"] = None
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The options as a JSON-safe dict (lists for ``depths`` and ``num_heads``)."""
        return {name: self[name] for name in self.field_names()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> CLGINetConfig:
        """Build from a dict such as :meth:`to_dict`'s, a checkpoint's or a ``config.json``'s.

        Keys missing from ``values`` take the defaults (the dicts of
        clg-layers 0.2 have no ``fusion``, ``spatial``, ``channel`` or
        ``attn_fusion``, and those of 0.3 no ``noise_level_map``: they were
        always the defaults).

        Raises:
            TypeError: If ``values`` is not a mapping.
            ValueError: If it has keys that are not options (they are named).
            TypeError, ValueError: For a bad value, naming its key.
        """
        if not isinstance(values, Mapping):
            raise TypeError(f"{_OWNER}.from_dict: expected a mapping of options, got {type(values).__name__}")
        unknown = sorted(str(k) for k in values if k not in cls.field_names())
        if unknown:
            raise ValueError(
                f"{_OWNER}.from_dict: unknown option(s) {unknown}; known: {list(cls.field_names())}"
            )
        return cls(**values)

    # ---------------------------------------------------------------------------------------------
    # Read-only mapping view, for code written when ``model.config`` was a dict

    def __getitem__(self, key: str) -> Any:
        if not isinstance(key, str) or key not in self.field_names():
            raise KeyError(key)
        value = getattr(self, key)
        return list(value) if isinstance(value, tuple) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self.field_names())

    def __len__(self) -> int:
        return len(self.field_names())
