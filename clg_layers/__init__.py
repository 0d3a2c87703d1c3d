"""clg-layers: the building blocks of CLG-INet (Jiang et al., ACM MM 2023) for PyTorch."""

from .layers import (
    COUPLING_MODES,
    DBPA,
    GNFF,
    ChannelAttention,
    CNNLayer,
    CouplingBlock,
    HybridGatedUnit,
    TransformerLayer,
)

__version__ = "0.1.0"

__all__ = [
    "COUPLING_MODES",
    "CNNLayer",
    "ChannelAttention",
    "CouplingBlock",
    "DBPA",
    "GNFF",
    "HybridGatedUnit",
    "TransformerLayer",
    "__version__",
]
