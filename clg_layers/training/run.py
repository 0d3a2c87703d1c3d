"""One training entry point for the CLI, the demo and the benchmark script: :func:`train`."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import (
    GaussianNoise,
    MotionBlur,
    PairedImageFolder,
    PatchSchedule,
    RainStreaks,
    SyntheticPairs,
    ValidationPairs,
    WithSigmaMap,
    list_images,
)
from ..data.datasets import IMAGE_SUFFIXES
from ..layers._checks import check_bool, check_choice, check_int, check_positive_float
from ..models.checkpoint import model_config_dict
from ..models.config import CLGINetConfig

__all__ = [
    "PAIR_LAYOUTS",
    "TASKS",
    "TRAIN_COMPILE_OPTIONS",
    "TrainConfig",
    "TrainResult",
    "check_resume",
    "export_weights",
    "find_pairs",
    "make_degradation",
    "train",
]

#: ``--task`` values; all but ``paired`` synthesise their inputs from clean images.
TASKS: tuple[str, ...] = ("denoise", "deblur", "derain", "paired")
#: Inductor options of ``TrainConfig(compile=True)``. ``force_layout_optimization``: on the
#: CPU inductor otherwise hands the depthwise convolutions' backward contiguous (NCHW)
#: gradients, where oneDNN's kernels are 2-3x slower than in channels-last; measured on
#: clginet-tiny (batch 4 of 48², one thread): compiled without it 0.81x the eager step
#: rate, with it 1.15x (benchmarks/profile_training_step.py).
TRAIN_COMPILE_OPTIONS: dict[str, Any] = {"force_layout_optimization": True}
#: Sub-folder names recognised as (degraded, clean) in a paired dataset, in order.
PAIR_LAYOUTS: tuple[tuple[str, str], ...] = (
    ("input", "target"),  # Rain13K, Restormer's layouts
    ("blur", "sharp"),  # GoPro
    ("noisy", "clean"),  # SIDD-style
    ("lq", "gt"),  # BasicSR
)


@dataclass
class TrainConfig:
    """Everything a training run needs; the CLI's flags and ``--config`` YAML keys are these fields.

    Attributes:
        model: Zoo name, e.g. ``"clginet-tiny"``.
        model_args: Constructor overrides for :func:`~clg_layers.build` (e.g. ``{"in_chans": 1}``).
        task: One of :data:`TASKS`.
        train: Training folder: clean images, or ``input/`` + ``target/`` for ``paired``.
        val: Validation folder, same layout (``None``: no validation).
        max_steps: Optimiser steps (``None`` with ``max_minutes``: time-limited).
        max_minutes: Wall-clock budget in minutes (``None``: none).
        devices: Devices per node (``"auto"``, a count, or a list).
        num_nodes: Nodes (multi-node DDP).
        accelerator: ``"auto"``, ``"cpu"``, ``"gpu"``, ...
        precision: Lightning precision, e.g. ``"32-true"``, ``"bf16-mixed"``, ``"16-mixed"``.
        out: Output folder (checkpoints, metrics.csv, validation images, exported weights).
        resume: A Lightning ``.ckpt`` to resume, or ``"auto"`` for ``OUT/checkpoints/last.ckpt`` if present.
        patch: Training patch side (ignored with ``schedule``).
        batch: Patches per step and device (ignored with ``schedule``).
        schedule: Progressive ``[steps, patch, batch]`` stages (the last one continues).
        loss: ``"l1"``, ``"charbonnier"`` or ``"psnr"``.
        lr: Peak AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: Linear warm-up steps.
        min_lr_ratio: Final learning rate as a fraction of ``lr`` (cosine decay).
        grad_clip: Gradient-norm clipping (0: none).
        ema_decay: EMA decay (0: no EMA; the exported weights are then the last ones).
        degradation: Keyword arguments of the task's degradation (``GaussianNoise``, ``MotionBlur``,
            ``RainStreaks``). ``denoise`` adds noise of ``sigma`` (default 25) or, per sample,
            drawn uniformly from ``sigma_range: [min, max]`` (the 0–255 scale). A
            noise-level-conditioned model (``model_args: {noise_level_map: true}``) trains on
            ``denoise`` only, gets each sample's σ as a map after the image
            (:class:`~clg_layers.data.WithSigmaMap`, in training and validation) and defaults
            to ``sigma_range: [0, 50]``.
        channels: 1 or 3.
        val_every: Validate every this many steps (0: only at the end when there is a ``val`` set).
        val_max_side: Downscale validation images to this longer side (``None``: full size).
        metric_channel: ``"rgb"`` or ``"y"``.
        crop_border: Border pixels excluded from validation metrics.
        log_images: Validation images written per validation.
        checkpoint_every: Write ``last.ckpt`` every this many steps (0: at the end only).
        log_every: Log the training loss every this many steps.
        num_workers: DataLoader workers.
        cache: Keep decoded training images in memory.
        seed: Seed of initialisation, crops and degradations.
        progress: Show Lightning's progress bar.
        export_name: File name of the exported EMA weights (default ``MODEL-TASK.safetensors``).
        compile: Compile the model's training forward and backward with ``torch.compile``
            (:data:`TRAIN_COMPILE_OPTIONS`, static shapes: every patch size of a
            ``schedule`` compiles once); parameter names, checkpoints and exported weights
            are unchanged. The first step then takes the compilation (tens of seconds to
            minutes); worth it for long runs (measured 1.15x faster steps on the CPU).
    """

    model: str = "clginet-tiny"
    model_args: dict[str, Any] = field(default_factory=dict)
    task: str = "denoise"
    train: str | None = None
    val: str | None = None
    max_steps: int | None = 1000
    max_minutes: float | None = None
    devices: int | str | list[int] = 1
    num_nodes: int = 1
    accelerator: str = "auto"
    precision: str = "32-true"
    out: str = "runs/train"
    resume: str | None = None
    patch: int = 64
    batch: int = 8
    schedule: list[list[int]] | None = None
    loss: str = "l1"
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 0
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    degradation: dict[str, Any] = field(default_factory=dict)
    channels: int = 3
    val_every: int = 500
    val_max_side: int | None = 256
    metric_channel: str = "rgb"
    crop_border: int = 0
    log_images: int = 3
    checkpoint_every: int = 500
    log_every: int = 10
    num_workers: int = 0
    cache: bool = True
    seed: int = 0
    progress: bool = True
    export_name: str | None = None
    compile: bool = False

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, source: str = "config") -> TrainConfig:
        """Build from a mapping (e.g. parsed YAML), rejecting unknown keys with a clear message."""
        if not isinstance(values, Mapping):
            raise TypeError(
                f"TrainConfig: {source} must be a mapping of options, got {type(values).__name__}"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in values if k not in known)
        if unknown:
            raise ValueError(f"TrainConfig: unknown option(s) {unknown} in {source}; known: {sorted(known)}")
        return cls(**{str(k).replace("-", "_"): v for k, v in values.items()})

    def __post_init__(self) -> None:
        self.validate()

    def patch_schedule(self) -> PatchSchedule:
        """The :class:`~clg_layers.data.PatchSchedule` from ``schedule`` or ``patch``/``batch``."""
        if self.schedule:
            if isinstance(self.schedule, (str, bytes)) or not isinstance(self.schedule, Sequence):
                raise TypeError(
                    f"TrainConfig: `schedule` must be a list of [steps, patch, batch], got {self.schedule!r}"
                )
            try:
                return PatchSchedule(tuple(tuple(s) for s in self.schedule))  # type: ignore[misc]
            except (TypeError, ValueError) as err:
                raise type(err)(f"TrainConfig: `schedule`: {err}") from None
        return PatchSchedule.constant(self.patch, self.batch)

    def validate(self) -> None:
        """Check option types and ranges with the layers' checks; errors name the option.

        A YAML file read as YAML 1.1 (PyYAML) gives ``lr: 1.0e6`` as the string ``"1.0e6"``
        (YAML 1.1 floats need a signed exponent, ``1.0e+6``): it is refused naming ``lr``.
        """
        who = "TrainConfig"
        check_choice(who, "task", self.task, TASKS)
        if self.max_steps is None and self.max_minutes is None:
            raise ValueError(f"{who}: give `max_steps` or `max_minutes`")
        for name in ("max_steps", "val_max_side"):
            if getattr(self, name) is not None:
                check_int(who, name, getattr(self, name))
        if self.max_minutes is not None:
            _real(who, "max_minutes", self.max_minutes)
        for name in ("num_nodes", "patch", "batch", "log_every"):
            check_int(who, name, getattr(self, name))
        counts = ("val_every", "checkpoint_every", "num_workers", "crop_border", "log_images", "warmup_steps")
        counts += ("seed",)
        for name in counts:
            check_int(who, name, getattr(self, name), minimum=0)
        if check_int(who, "channels", self.channels) not in (1, 3):
            raise ValueError(f"{who}: `channels` must be 1 or 3, got {self.channels!r}")
        _real(who, "lr", self.lr)
        for name in ("weight_decay", "min_lr_ratio", "grad_clip", "ema_decay"):
            _real(who, name, getattr(self, name), allow_zero=True)
        if self.min_lr_ratio > 1:
            raise ValueError(f"{who}: `min_lr_ratio` must be <= 1, got {self.min_lr_ratio!r}")
        if self.ema_decay >= 1:
            raise ValueError(f"{who}: `ema_decay` must be < 1 (0: no EMA), got {self.ema_decay!r}")
        for name in ("compile", "cache", "progress"):
            check_bool(who, name, getattr(self, name))
        for name in ("model_args", "degradation"):
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise TypeError(f"{who}: `{name}` must be a mapping, got {type(value).__name__}")
        if self.model_args.get("noise_level_map") is True:
            _check_sigma_task(who, self.task)
        for name in ("model", "accelerator", "out"):
            if not isinstance(getattr(self, name), (str, os.PathLike)):
                raise TypeError(f"{who}: `{name}` must be a string, got {type(getattr(self, name)).__name__}")
        devices = self.devices
        if isinstance(devices, bool) or (isinstance(devices, int) and devices < 1 and devices != -1):
            raise ValueError(f"{who}: `devices` must be 'auto', a count >= 1, -1 or a list, got {devices}")
        self.patch_schedule()


def _real(who: str, name: str, value: object, *, allow_zero: bool = False) -> float:
    """:func:`check_positive_float`, with a hint for the YAML 1.1 float that arrives as a string."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            pass
        else:
            raise TypeError(
                f"{who}: `{name}` must be a real number, got str ({value!r}); in YAML write it with a "
                "decimal point and a signed exponent (e.g. 1.0e-4, not 1e-4) or as a plain decimal"
            )
    return check_positive_float(who, name, value, allow_zero=allow_zero)


@dataclass
class TrainResult:
    """What :func:`train` produced.

    Attributes:
        out: The output folder.
        weights: Exported (EMA) weights, loadable with ``clg_layers.build(model, checkpoint=weights)``.
        last_checkpoint: Lightning's ``last.ckpt`` for resuming (``None`` if none was written).
        steps: Global step reached.
        seconds: Wall-clock time of ``fit``.
        metrics: Final logged metrics (``val/psnr``, ``val/ssim``, ``train/loss``, ...).
        model: The trained model holding the exported weights.
        rank: This process's global rank (only rank 0 exports and should report).
    """

    out: Path
    weights: Path
    last_checkpoint: Path | None
    steps: int
    seconds: float
    metrics: dict[str, float]
    model: nn.Module
    rank: int = 0


def _check_sigma_task(who: str, task: str) -> None:
    """A noise-level-conditioned model needs the σ of its inputs, which only ``denoise`` knows."""
    if task != "denoise":
        raise ValueError(
            f"{who}: a noise-level-conditioned model (noise_level_map=True) trains with task 'denoise', "
            f"whose Gaussian noise gives each sample's σ; got task {task!r}"
        )


def make_degradation(task: str, options: Mapping[str, Any] | None = None, *, sigma_map: bool = False) -> Any:
    """The synthetic degradation of a task: ``GaussianNoise`` (sigma 25 by default), ``MotionBlur`` or
    ``RainStreaks``.

    With ``sigma_map`` (for a ``noise_level_map=True`` model; ``denoise`` only) the noise is
    wrapped in :class:`~clg_layers.data.WithSigmaMap`, which appends each sample's σ map, and
    defaults to ``sigma_range=(0, 50)``.
    """
    opts = dict(options or {})
    if sigma_map:
        _check_sigma_task("make_degradation", task)
    try:
        if task == "denoise":
            if "sigma" not in opts and "sigma_range" not in opts:
                if sigma_map:
                    opts["sigma_range"] = (0.0, 50.0)
                else:
                    opts["sigma"] = 25.0
            noise = GaussianNoise(**opts)
            return WithSigmaMap(noise) if sigma_map else noise
        if task == "deblur":
            return MotionBlur(**opts)
        if task == "derain":
            return RainStreaks(**opts)
    except TypeError as err:
        raise TypeError(f"make_degradation: bad `degradation` options for task {task!r}: {err}") from None
    raise ValueError(
        f"make_degradation: task {task!r} has no synthetic degradation (one of denoise, deblur, derain)"
    )


def find_pairs(folder: str | Path) -> tuple[Path, Path] | None:
    """The ``(degraded, clean)`` sub-folders of ``folder`` from :data:`PAIR_LAYOUTS`, or ``None``."""
    folder = Path(folder)
    for a, b in PAIR_LAYOUTS:
        if (folder / a).is_dir() and (folder / b).is_dir():
            return folder / a, folder / b
    return None


def _has_images(folder: Path) -> bool:
    return folder.is_dir() and any(
        p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir() if p.is_file()
    )


def _source(
    config: TrainConfig, folder: str | Path, role: str, min_size: int, *, sigma_map: bool = False
) -> PairedImageFolder | SyntheticPairs:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"train: the {role} folder {str(folder)!r} does not exist")
    pairs = find_pairs(folder)
    layouts = ", ".join(f"{a}/+{b}/" for a, b in PAIR_LAYOUTS)
    if config.task == "paired":
        if pairs is None:
            hint = (
                " (it holds images directly: use --task denoise, deblur or derain for clean images)"
                if _has_images(folder)
                else ""
            )
            raise ValueError(
                f"train: task 'paired' needs {role} folder {str(folder)!r} to hold one of {layouts}{hint}"
            )
        return PairedImageFolder(*pairs, channels=config.channels, min_size=min_size, cache=config.cache)
    if pairs is not None and not _has_images(folder):
        raise ValueError(
            f"train: task {config.task!r} synthesises its inputs from clean images, but {role} folder "
            f"{str(folder)!r} holds {pairs[0].name}/ and {pairs[1].name}/ pairs: use --task paired"
        )
    list_images(folder, who="train")
    return SyntheticPairs(
        folder,
        make_degradation(config.task, config.degradation, sigma_map=sigma_map),
        channels=config.channels,
        min_size=min_size,
        cache=config.cache,
    )


def _is_conditioned(model: nn.Module) -> bool:
    """Whether ``model`` takes a σ map after the image (``noise_level_map=True`` in its config)."""
    return (model_config_dict(model) or {}).get("noise_level_map", False) is True


def _plans_conditioned(config: TrainConfig) -> bool:
    """Whether ``build(config.model, **config.model_args)`` will take a σ map, before building it."""
    if "noise_level_map" in config.model_args:
        return config.model_args["noise_level_map"] is True
    from ..models.clginet import VARIANTS

    variant = VARIANTS.get(config.model)
    return variant is not None and variant.config.noise_level_map


def _gives_sigma_map(data: PairedImageFolder | SyntheticPairs | ValidationPairs) -> bool:
    """Whether ``data``'s inputs carry a σ map after the image."""
    if isinstance(data, SyntheticPairs):
        return isinstance(data.degradation, WithSigmaMap)
    if isinstance(data, ValidationPairs) and len(data):
        degraded, clean, _ = data[0]
        return degraded.shape[0] == clean.shape[0] + 1
    return False


def _check_sigma_data(data: Any, role: str, conditioned: bool) -> None:
    """A conditioned model needs σ maps in its data, and a plain one none."""
    if data is None or _gives_sigma_map(data) == conditioned:
        return
    if conditioned:
        raise ValueError(
            f"train: the model is noise-level conditioned (noise_level_map=True), but the {role} data "
            "gives no σ map: use SyntheticPairs(images, WithSigmaMap(GaussianNoise(sigma_range=...)))"
        )
    raise ValueError(
        f"train: the {role} data appends a σ map (WithSigmaMap), but the model is not noise-level "
        "conditioned: build it with noise_level_map=True"
    )


def _plain(value: Any) -> Any:
    """JSON-like view of a config for comparison (tuples as lists)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _normalised_config(model: nn.Module, saved: Any) -> Any:
    """A CLGINet's stored config with the defaults filled in (a 0.2 checkpoint lacks the newer keys)."""
    if isinstance(getattr(model, "config", None), CLGINetConfig) and isinstance(saved, Mapping):
        try:
            return CLGINetConfig.from_dict(saved).to_dict()
        except (TypeError, ValueError):
            return saved  # reported as a difference below
    return saved


def check_resume(path: str | Path, model: nn.Module, *, task: str | None = None) -> dict[str, Any]:
    """Read a Lightning checkpoint safely and check it was written for this model, config and task.

    The file is read with ``torch.load(weights_only=True)``: only tensors and
    plain containers are rebuilt, nothing in it is run.

    Args:
        path: The ``.ckpt`` file.
        model: The freshly built model (its ``model_name`` and ``config`` are compared).
        task: The task label to compare, if any.

    Returns:
        The checkpoint's hyper-parameters.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If it is not a readable, weights-only Lightning checkpoint of this model/config/task.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"train: no resume checkpoint at {str(path)!r}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(
            f"train: cannot read resume checkpoint {str(path)!r} safely (weights_only): {err}"
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise ValueError(f"train: {str(path)!r} is not a Lightning checkpoint written by `clg-layers train`")
    hp = dict(ckpt["hyper_parameters"])
    name = getattr(model, "model_name", None) or type(model).__name__
    if hp.get("model_name") != name:
        raise ValueError(
            f"train: resume checkpoint {str(path)!r} is for model {hp.get('model_name')!r}, not {name!r}"
        )
    saved, now = _plain(_normalised_config(model, hp.get("model_config"))), _plain(model_config_dict(model))
    if saved != now:
        saved, now = saved or {}, now or {}
        diff = {
            k: (saved.get(k), now.get(k)) for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)
        }
        raise ValueError(
            f"train: resume checkpoint {str(path)!r} was trained with another {name} config; "
            f"differences (checkpoint, now): {diff}"
        )
    if task is not None and hp.get("task") not in (None, "", task):
        raise ValueError(
            f"train: resume checkpoint {str(path)!r} was trained for task {hp.get('task')!r}, not {task!r}"
        )
    return hp


def export_weights(model: nn.Module, path: str | Path) -> Path:
    """Write ``model``'s weights with :func:`~clg_layers.save_checkpoint`, atomically
    (temp file + ``os.replace``)."""
    from ..models import save_checkpoint

    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.safetensors")
    try:
        save_checkpoint(model, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _last_value(metrics: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            continue
    return out


def train(
    config: TrainConfig,
    *,
    model: nn.Module | None = None,
    train_data: PairedImageFolder | SyntheticPairs | None = None,
    val_data: ValidationPairs | None = None,
    callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Train a model with Lightning and export its EMA weights.

    Everything is checked (folders, pairs, image sizes, resume checkpoint)
    before the Trainer starts. Writes ``OUT/checkpoints/last.ckpt``
    (Lightning, for ``resume``), ``OUT/metrics.csv`` (CSV logger),
    ``OUT/val_images/`` and ``OUT/MODEL-TASK.safetensors`` (EMA weights with
    the model's name and config: ``clg_layers.build(name, checkpoint=...)``
    and ``clg-layers restore`` load it).

    Args:
        config: The run's options.
        model: A model to train instead of ``build(config.model, **config.model_args)``.
        train_data: A source to use instead of ``config.train``.
        val_data: Validation pairs to use instead of ``config.val``.
        callbacks: Extra Lightning callbacks (e.g. early stopping, a learning-rate monitor).

    Returns:
        A :class:`TrainResult`.

    Raises:
        ValueError, TypeError, FileNotFoundError: For bad options or data, before training starts.
    """
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger
    from lightning.pytorch.strategies import DDPStrategy

    from ..models import build
    from .task import EMA, AtomicCheckpointIO, RestorationDataModule, RestorationTask

    if not isinstance(config, TrainConfig):
        raise TypeError(f"train: `config` must be a TrainConfig, got {type(config).__name__}")
    config.validate()
    out = Path(config.out)
    schedule = config.patch_schedule()
    # A noise-level-conditioned model gets each sample's σ map after the image.
    conditioned = _is_conditioned(model) if model is not None else _plans_conditioned(config)
    if conditioned:
        _check_sigma_task("train", config.task)
    # Data first: every problem with the folders surfaces before a model or a Trainer exists.
    if train_data is None:
        if config.train is None:
            raise ValueError("train: no training data (`train` folder)")
        train_data = _source(config, config.train, "training", schedule.max_patch, sigma_map=conditioned)
    if val_data is None and config.val is not None:
        val_data = ValidationPairs(
            _source(config, config.val, "validation", 1, sigma_map=conditioned),
            max_side=config.val_max_side,
            seed=config.seed + 1,
        )
    _check_sigma_data(train_data, "training", conditioned)
    _check_sigma_data(val_data, "validation", conditioned)

    L.seed_everything(config.seed, workers=True, verbose=False)
    if model is None:
        model = build(config.model, **config.model_args)
        if _is_conditioned(model) != conditioned:  # a registered builder with its own default
            raise ValueError(
                f"train: {config.model!r} builds a model with noise_level_map={not conditioned}; "
                f"say so in `model_args` (noise_level_map: {str(not conditioned).lower()})"
            )
    resume = config.resume
    if resume == "auto":
        last = out / "checkpoints" / "last.ckpt"
        resume = str(last) if last.is_file() else None
    if resume is not None:
        check_resume(resume, model, task=config.task)
    if config.compile:
        # In place (nn.Module.compile): state-dict keys, EMA and export see the plain module.
        # dynamic=False: a new patch size (a progressive schedule) compiles a new static graph;
        # with symbolic sizes inductor's forced layout optimisation fails on the window padding.
        model.compile(dynamic=False, options=TRAIN_COMPILE_OPTIONS)

    task = RestorationTask(
        model,
        loss=config.loss,
        lr=config.lr,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_steps,
        min_lr_ratio=config.min_lr_ratio,
        metric_channel=config.metric_channel,
        crop_border=config.crop_border,
        log_images=config.log_images,
        image_dir=out / "val_images",
        task=config.task,
    )
    steps = config.max_steps if config.max_steps is not None else 10**9
    data = RestorationDataModule(
        train_data, val_data, schedule=schedule, steps=steps, seed=config.seed, num_workers=config.num_workers
    )
    extra_callbacks = list(callbacks)
    callbacks = []
    if config.ema_decay > 0:
        callbacks.append(EMA(config.ema_decay))
    ckpt_cb = ModelCheckpoint(
        dirpath=out / "checkpoints",
        save_last=True,
        save_top_k=0,
        every_n_train_steps=config.checkpoint_every or None,
        enable_version_counter=False,
    )
    callbacks.append(ckpt_cb)
    callbacks.extend(extra_callbacks)
    world = config.num_nodes * (config.devices if isinstance(config.devices, int) else 1)
    multi = world > 1 or (isinstance(config.devices, list) and len(config.devices) > 1)
    # find_unused_parameters=False: DDP then fails loudly if a model leaves a parameter out of the graph.
    strategy: Any = DDPStrategy(find_unused_parameters=False) if multi else "auto"
    val_every = config.val_every if config.val_every and val_data is not None else None
    trainer = L.Trainer(
        accelerator=config.accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        strategy=strategy,
        precision=config.precision,
        max_steps=config.max_steps if config.max_steps is not None else -1,
        max_epochs=-1,
        max_time={"minutes": config.max_minutes} if config.max_minutes is not None else None,
        gradient_clip_val=config.grad_clip or None,
        val_check_interval=min(val_every, steps) if val_every else None,
        check_val_every_n_epoch=None if val_every else 1,
        limit_val_batches=None if val_data is not None else 0,
        num_sanity_val_steps=0,
        logger=CSVLogger(out, name="", version=""),
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False,
        log_every_n_steps=config.log_every,
        enable_progress_bar=config.progress,
        enable_model_summary=False,
        default_root_dir=out,
    )
    start = time.perf_counter()
    trainer.fit(task, datamodule=data, ckpt_path=resume, weights_only=True)
    seconds = time.perf_counter() - start
    name = config.export_name or f"{getattr(model, 'model_name', config.model)}-{config.task}.safetensors"
    weights = out / name
    if trainer.is_global_zero:
        export_weights(task.model, weights)
    last = out / "checkpoints" / "last.ckpt"
    return TrainResult(
        out=out,
        weights=weights,
        last_checkpoint=last if last.is_file() else None,
        steps=trainer.global_step,
        seconds=seconds,
        metrics=_last_value(trainer.callback_metrics),
        model=task.model,
        rank=trainer.global_rank,
    )
