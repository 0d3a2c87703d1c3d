"""The CLG-INet building blocks, one concept per module."""

from .channel_attention import ChannelAttention
from .cnn_layer import CNNLayer
from .coupling_block import COUPLING_MODES, CouplingBlock
from .dbpa import DBPA, DBPA_FUSIONS
from .gnff import GNFF
from .hybrid_gated_unit import HybridGatedUnit
from .transformer_layer import TransformerLayer

__all__ = [
    "COUPLING_MODES",
    "CNNLayer",
    "ChannelAttention",
    "CouplingBlock",
    "DBPA",
    "DBPA_FUSIONS",
    "GNFF",
    "HybridGatedUnit",
    "TransformerLayer",
]
