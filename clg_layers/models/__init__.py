"""The CLG-INet network, its configuration, the model zoo, checkpoints and model statistics."""

from . import timm_models as _timm_models  # noqa: F401 - registers the timm entry points
from .checkpoint import (
    LoadReport,
    load_checkpoint,
    migrate_state_dict,
    read_checkpoint_config,
    save_checkpoint,
)
from .clginet import VARIANTS, CLGINet, Variant
from .config import FUSION_MODES, LEVELS, CLGINetConfig
from .info import ModelInfo, count_macs, model_info
from .noise_level import sigma_map, with_sigma_map
from .registry import build, list_models, register_model

__all__ = [
    "FUSION_MODES",
    "LEVELS",
    "VARIANTS",
    "CLGINet",
    "CLGINetConfig",
    "LoadReport",
    "ModelInfo",
    "Variant",
    "build",
    "count_macs",
    "list_models",
    "load_checkpoint",
    "migrate_state_dict",
    "model_info",
    "read_checkpoint_config",
    "register_model",
    "save_checkpoint",
    "sigma_map",
    "with_sigma_map",
]
