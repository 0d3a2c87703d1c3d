"""clg-layers: the building blocks of CLG-INet (Jiang et al., ACM MM 2023) for PyTorch."""

from .benchmark import BenchmarkReport, BenchmarkResult, benchmark, matmul_peak_gmacs
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
    migrate_state_dict,
    model_info,
    read_checkpoint_config,
    register_model,
    save_checkpoint,
)
from .tiled import tiled_forward

__version__ = "0.2.0"

__all__ = [
    "BenchmarkReport",
    "BenchmarkResult",
    "CLGINet",
    "COUPLING_MODES",
    "LoadReport",
    "ModelInfo",
    "benchmark",
    "build",
    "count_macs",
    "list_models",
    "load_checkpoint",
    "matmul_peak_gmacs",
    "migrate_state_dict",
    "model_info",
    "read_checkpoint_config",
    "register_model",
    "save_checkpoint",
    "tiled_forward",
    "CNNLayer",
    "ChannelAttention",
    "CouplingBlock",
    "DBPA",
    "GNFF",
    "HybridGatedUnit",
    "TransformerLayer",
    "__version__",
]
