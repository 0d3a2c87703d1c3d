"""The CLG-INet building blocks, one concept per module."""

from .block_config import COUPLING_MODES, DBPA_FUSIONS, BlockConfig
from .channel_attention import ChannelAttention
from ._inference import fast_inference_enabled, set_fast_inference, use_inference_path
from .cnn_layer import CNNLayer
from .coupling_block import CouplingBlock
from .dbpa import DBPA
from .gnff import GNFF
from .hybrid_gated_unit import HybridGatedUnit
from .transformer_layer import TransformerLayer

__all__ = [
    "BlockConfig",
    "COUPLING_MODES",
    "CNNLayer",
    "ChannelAttention",
    "CouplingBlock",
    "DBPA",
    "DBPA_FUSIONS",
    "GNFF",
    "HybridGatedUnit",
    "TransformerLayer",
    "fast_inference_enabled",
    "set_fast_inference",
    "use_inference_path",
]
