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
from .models import (
    CLGINet,
    LoadReport,
    ModelInfo,
    build,
    count_macs,
    list_models,
    load_checkpoint,
    model_info,
    read_checkpoint_config,
    register_model,
    save_checkpoint,
)

__version__ = "0.1.0"

__all__ = [
    "CLGINet",
    "COUPLING_MODES",
    "LoadReport",
    "ModelInfo",
    "build",
    "count_macs",
    "list_models",
    "load_checkpoint",
    "model_info",
    "read_checkpoint_config",
    "register_model",
    "save_checkpoint",
    "CNNLayer",
    "ChannelAttention",
    "CouplingBlock",
    "DBPA",
    "GNFF",
    "HybridGatedUnit",
    "TransformerLayer",
    "__version__",
]
