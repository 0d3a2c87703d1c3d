"""The CLG-INet building blocks, one concept per module."""

from ._inference import fast_inference_enabled, set_fast_inference, use_inference_path
from .block_config import COUPLING_MODES, DBPA_FUSIONS, BlockConfig
from .channel_attention import ChannelAttention
from .cnn_layer import CNNLayer
from .coupling_block import CouplingBlock
from .dbpa import DBPA, fused_attention_enabled, set_fused_attention
from .gnff import GNFF
from .hybrid_gated_unit import HybridGatedUnit
from .transformer_layer import TransformerLayer

__all__ = [
    "COUPLING_MODES",
    "DBPA",
    "DBPA_FUSIONS",
    "GNFF",
    "BlockConfig",
    "CNNLayer",
    "ChannelAttention",
    "CouplingBlock",
    "HybridGatedUnit",
    "TransformerLayer",
    "fast_inference_enabled",
    "fused_attention_enabled",
    "set_fast_inference",
    "set_fused_attention",
    "use_inference_path",
]
