"""The options of one coupling block, as one frozen object passed down the layer tree."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ._checks import check_bool, check_choice, check_divisible, check_int, check_positive_float

__all__ = ["COUPLING_MODES", "DBPA_FUSIONS", "BlockConfig"]

#: How :class:`~clg_layers.DBPA` mixes its two projections (see its docstring).
DBPA_FUSIONS: tuple[str, ...] = ("gate", "sum")

#: Accepted values of ``BlockConfig(coupling=...)``.
COUPLING_MODES: tuple[str, ...] = ("concat", "none")


@dataclass(frozen=True)
class BlockConfig:
    """Every option of a :class:`~clg_layers.CouplingBlock` except its width.

    One object is handed down :class:`~clg_layers.CLGINet` →
    :class:`~clg_layers.CouplingBlock` → :class:`~clg_layers.TransformerLayer`,
    so no option is re-declared level by level; those layers read the fields
    they need and pass them to the leaf layers (:class:`~clg_layers.DBPA`,
    :class:`~clg_layers.GNFF`, :class:`~clg_layers.CNNLayer`) as their own
    keyword options. A layer ignores the fields it has no use for. It validates itself on
    construction; :meth:`replace` returns a validated copy with some fields
    changed (how :class:`~clg_layers.CLGINet` sets the heads and drop-path
    rate of each block).

    Args:
        num_heads: Attention heads of DBPA; must divide the block's width.
        window_size: Side ``w`` of DBPA's spatial attention windows.
        kernel_size: Odd size of DBPA's depthwise ``q, k, v`` convolutions.
        expansion: Hidden expansion ratio of GNFF.
        drop_path: Stochastic-depth probability of the Transformer branches, in ``[0, 1)``.
        coupling: ``"concat"`` (the paper's coupling connection) or ``"none"``
            (:data:`COUPLING_MODES`).
        cnn_kernel_size: Odd kernel size of both CNN layers' convolutions.
        cnn_groups: Groups of the CNN layers' convolutions; ``0`` means
            depthwise-separable (groups equal to the block's width).
        reduction: Channel-attention reduction ratio of the CNN layers.
        spatial: Use DBPA's spatial (window) projection.
        channel: Use DBPA's channel (transposed) projection.
        attn_fusion: How DBPA mixes its two projections, one of :data:`DBPA_FUSIONS`.

    Raises:
        TypeError, ValueError: For a field of the wrong type or out of range,
            naming the field.
    """

    num_heads: int = 1
    window_size: int = 8
    kernel_size: int = 7
    expansion: float = 2.66
    drop_path: float = 0.0
    coupling: str = "concat"
    cnn_kernel_size: int = 3
    cnn_groups: int = 1
    reduction: int = 16
    spatial: bool = True
    channel: bool = True
    attn_fusion: str = "gate"

    def __post_init__(self) -> None:
        owner = "BlockConfig"
        # Normalised values are written back (a numpy int becomes an int), so the
        # object stays JSON-safe; object.__setattr__ because the dataclass is frozen.
        checked: dict[str, Any] = {
            "num_heads": check_int(owner, "num_heads", self.num_heads),
            "window_size": check_int(owner, "window_size", self.window_size),
            "kernel_size": check_int(owner, "kernel_size", self.kernel_size, odd=True),
            "expansion": check_positive_float(owner, "expansion", self.expansion),
            "drop_path": check_positive_float(owner, "drop_path", self.drop_path, allow_zero=True),
            "coupling": str(check_choice(owner, "coupling", self.coupling, COUPLING_MODES)),
            "cnn_kernel_size": check_int(owner, "cnn_kernel_size", self.cnn_kernel_size, odd=True),
            "cnn_groups": check_int(owner, "cnn_groups", self.cnn_groups, minimum=0),
            "reduction": check_int(owner, "reduction", self.reduction),
            "spatial": check_bool(owner, "spatial", self.spatial),
            "channel": check_bool(owner, "channel", self.channel),
            "attn_fusion": str(check_choice(owner, "attn_fusion", self.attn_fusion, DBPA_FUSIONS)),
        }
        if checked["drop_path"] >= 1.0:
            raise ValueError(f"{owner}: `drop_path` must be in [0, 1), got {checked['drop_path']}")
        if not (checked["spatial"] or checked["channel"]):
            raise ValueError(f"{owner}: at least one of `spatial` and `channel` must be True, got both False")
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def replace(self, **changes: Any) -> BlockConfig:
        """A validated copy with ``changes`` applied (unknown names raise ``TypeError``)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(
                f"BlockConfig: unknown option(s) {unknown}; "
                f"known: {[f.name for f in dataclasses.fields(self)]}"
            )
        return dataclasses.replace(self, **changes)

    def check_width(self, owner: str, dim: int) -> None:
        """Raise ``ValueError`` naming ``owner`` unless a block of width ``dim`` can use these options."""
        check_divisible(owner, "dim", dim, "num_heads", self.num_heads)
        if self.cnn_groups:
            check_divisible(owner, "dim", dim, "cnn_groups", self.cnn_groups)

    def groups_for(self, dim: int) -> int:
        """The CNN layers' groups for a block of width ``dim`` (``cnn_groups=0`` means ``dim``)."""
        return self.cnn_groups or dim

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-safe dict."""
        return dataclasses.asdict(self)


def resolve(owner: str, config: BlockConfig | None, options: dict[str, Any]) -> BlockConfig:
    """``config`` (or the defaults) with keyword ``options`` applied; errors name ``owner``."""
    if config is not None and not isinstance(config, BlockConfig):
        raise TypeError(f"{owner}: `config` must be a BlockConfig or None, got {type(config).__name__}")
    base = config if config is not None else BlockConfig()
    if not options:
        return base
    try:
        return base.replace(**options)
    except (TypeError, ValueError) as err:
        # The message names the layer the user called, not the config class behind it.
        raise type(err)(str(err).replace("BlockConfig:", f"{owner}:", 1)) from None
