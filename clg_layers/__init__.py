"""clg-layers: the building blocks of CLG-INet (Jiang et al., ACM MM 2023) for PyTorch."""

from .tools.benchmark import BenchmarkReport, BenchmarkResult, benchmark, matmul_peak_gmacs
from .layers import (
    COUPLING_MODES,
    DBPA,
    DBPA_FUSIONS,
    GNFF,
    ChannelAttention,
    CNNLayer,
    CouplingBlock,
    HybridGatedUnit,
    TransformerLayer,
    fast_inference_enabled,
    set_fast_inference,
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
from .tools.tiled import tiled_forward

# Last: hub.py reads __version__ lazily and imports huggingface_hub only when a repository is fetched or pushed.
from .integrations.hub import from_pretrained, push_to_hub, save_pretrained  # noqa: E402

__version__ = "0.3.0"

__all__ = [
    "BenchmarkReport",
    "BenchmarkResult",
    "CLGINet",
    "COUPLING_MODES",
    "DBPA_FUSIONS",
    "LoadReport",
    "ModelInfo",
    "benchmark",
    "build",
    "count_macs",
    "from_pretrained",
    "list_models",
    "load_checkpoint",
    "matmul_peak_gmacs",
    "migrate_state_dict",
    "model_info",
    "push_to_hub",
    "read_checkpoint_config",
    "register_model",
    "save_checkpoint",
    "save_pretrained",
    "tiled_forward",
    "CNNLayer",
    "ChannelAttention",
    "CouplingBlock",
    "DBPA",
    "GNFF",
    "HybridGatedUnit",
    "TransformerLayer",
    "__version__",
    "fast_inference_enabled",
    "set_fast_inference",
]
