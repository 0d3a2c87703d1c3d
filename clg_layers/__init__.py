"""clg-layers: the building blocks of CLG-INet (Jiang et al., ACM MM 2023) for PyTorch."""

from typing import Any

from ._version import __version__

# hub.py imports huggingface_hub only when a repository is fetched or pushed.
from .integrations.hub import from_pretrained, push_to_hub, save_pretrained
from .layers import (
    COUPLING_MODES,
    DBPA,
    DBPA_FUSIONS,
    GNFF,
    BlockConfig,
    ChannelAttention,
    CNNLayer,
    CouplingBlock,
    HybridGatedUnit,
    TransformerLayer,
    fast_inference_enabled,
    fused_attention_enabled,
    set_fast_inference,
    set_fused_attention,
)
from .models import (
    CLGINet,
    CLGINetConfig,
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
    sigma_map,
    with_sigma_map,
)
from .tools.tiled import tiled_forward

# The benchmark harness (clg_layers.tools.benchmark, about 1,000 lines) is imported on first use
# of one of these names, not by `import clg_layers`.
_BENCHMARK_NAMES = ("BenchmarkReport", "BenchmarkResult", "benchmark", "matmul_peak_gmacs")


def __getattr__(name: str) -> Any:
    if name in _BENCHMARK_NAMES:
        from .tools import benchmark as harness

        return getattr(harness, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_BENCHMARK_NAMES))


__all__ = [
    "COUPLING_MODES",
    "DBPA",
    "DBPA_FUSIONS",
    "GNFF",
    "BenchmarkReport",
    "BenchmarkResult",
    "BlockConfig",
    "CLGINet",
    "CLGINetConfig",
    "CNNLayer",
    "ChannelAttention",
    "CouplingBlock",
    "HybridGatedUnit",
    "LoadReport",
    "ModelInfo",
    "TransformerLayer",
    "__version__",
    "benchmark",
    "build",
    "count_macs",
    "fast_inference_enabled",
    "from_pretrained",
    "fused_attention_enabled",
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
    "set_fast_inference",
    "set_fused_attention",
    "sigma_map",
    "tiled_forward",
    "with_sigma_map",
]
