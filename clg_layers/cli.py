"""The ``clg-layers`` command: list, info, bench, restore, train, eval and demo.

Exit codes: 0 success; 1 the command ran but failed (a missing or unreadable
image, a checkpoint that does not fit, a channel mismatch); 2 a usage error
(bad options, an unknown model name).

``train`` and ``eval`` need the training extra: ``pip install 'clg-layers[train]'``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence

__all__ = ["main"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _error(message: str, code: int) -> int:
    print(f"clg-layers: error: {message}", file=sys.stderr)
    return code


def _cmd_list(args: argparse.Namespace) -> int:
    from .models import list_models

    names = list_models(args.pattern)
    if not names:
        return _error(f"no model matches {args.pattern!r}", EXIT_FAILURE)
    print("\n".join(names))
    return EXIT_OK


def _cmd_info(args: argparse.Namespace) -> int:
    from .models import model_info
    from .models.registry import _builder

    try:
        _builder(args.name)
    except ValueError as err:
        return _error(str(err), EXIT_USAGE)
    h, w = args.size
    info = model_info(args.name, input_size=(args.in_chans, h, w))
    rows = [
        ("model", info.name),
        ("parameters", f"{info.params:,} ({info.params / 1e6:.2f} M)"),
        (f"MACs at 1×{args.in_chans}×{h}×{w}", f"{info.macs:,} ({info.gmacs:.2f} G)"),
        ("in / out channels", f"{info.in_chans} / {info.out_chans}"),
        (
            "size multiple",
            f"{info.size_multiple} (pads internally)" if info.size_multiple == 1 else info.size_multiple,
        ),
        (
            "float16 / bfloat16",
            f"{'yes' if info.supports_half else 'no'} / {'yes' if info.supports_bf16 else 'no'}",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return EXIT_OK


@contextlib.contextmanager
def _checkpoint_notes() -> Iterator[list[str]]:
    """Collect what the checkpoint loader logs about the weights it chose (e.g. a ``.ckpt``'s EMA weights)."""
    from .models import checkpoint

    notes: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            source = getattr(record, checkpoint.SOURCE_LOG_FIELD, None)
            if source:
                notes.append(str(source))

    logger = logging.getLogger(checkpoint.__name__)
    handler, level = _Collect(logging.INFO), logger.level
    logger.addHandler(handler)
    if not logger.isEnabledFor(logging.INFO):
        logger.setLevel(logging.INFO)
    try:
        yield notes
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _image_channels(model: object) -> int:
    """Channels of the images a model restores: its config's ``in_chans`` (without a σ map)."""
    in_chans = getattr(getattr(model, "config", None), "in_chans", None)
    return int(in_chans) if isinstance(in_chans, int) else int(model.in_chans)


def _noise_level_input(model: object, sigma: float | None, name: str) -> tuple[object, str | None]:
    """``(model to run, None)``, appending the σ map of ``--sigma`` for a noise-level-conditioned
    model, or ``(model, error message)``."""
    import torch
    from torch import nn

    from .models.noise_level import with_sigma_map

    config = getattr(model, "config", None)
    conditioned = getattr(config, "noise_level_map", False) is True
    if not conditioned:
        if sigma is not None:
            return (
                model,
                f"--sigma is for noise-level-conditioned models, and {name} (from this checkpoint) is blind",
            )
        return model, None
    if sigma is None:
        return model, (
            f"{name} (from this checkpoint) is noise-level conditioned (noise_level_map=True): "
            "give the noise level with --sigma (0-255 scale, e.g. --sigma 25)"
        )
    if not 0 <= sigma <= 255:
        return model, f"--sigma must be in [0, 255], got {sigma:g}"

    class _WithSigma(nn.Module):
        """The model, with the σ map of ``--sigma`` appended to every input (tile)."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(with_sigma_map(x, sigma / 255.0))

    return _WithSigma(), None


def _cmd_restore(args: argparse.Namespace) -> int:
    import torch

    from .io import read_image, write_image
    from .models import build
    from .models.registry import _builder
    from .tools.tiled import tiled_forward

    try:
        _builder(args.name)
    except ValueError as err:
        return _error(str(err), EXIT_USAGE)
    if args.tile < 0 or args.overlap < 0 or (args.tile and args.overlap >= args.tile):
        return _error(
            f"need --tile >= 0 and 0 <= --overlap < --tile, got {args.tile} and {args.overlap}", EXIT_USAGE
        )
    try:
        device = torch.device(args.device)
    except RuntimeError as err:
        return _error(f"invalid --device {args.device!r}: {err}", EXIT_USAGE)
    try:
        image = read_image(args.input, max_pixels=args.max_pixels)
    except (FileNotFoundError, ValueError) as err:
        return _error(str(err), EXIT_FAILURE)
    try:
        with _checkpoint_notes() as notes:
            model = build(args.name, checkpoint=args.checkpoint)
    except FileNotFoundError as err:
        return _error(str(err), EXIT_FAILURE)
    except (ValueError, TypeError) as err:  # TypeError: a stored config with a wrong type or key
        return _error(f"checkpoint {args.checkpoint!r} does not fit {args.name!r}: {err}", EXIT_FAILURE)
    for note in notes:  # which weights of a Lightning/EMA checkpoint were loaded
        print(f"{args.checkpoint}: {note}")
    c = image.tensor.shape[1]
    image_chans = _image_channels(model)
    if c != image_chans:
        kind = {1: "grayscale", 3: "RGB"}.get(c, f"{c}-channel")
        return _error(
            f"{args.name} (from this checkpoint) takes {image_chans}-channel images, but {args.input!r} "
            f"is {kind}; convert the image or use a checkpoint trained with in_chans={c}",
            EXIT_FAILURE,
        )
    model, problem = _noise_level_input(model, args.sigma, args.name)
    if problem is not None:
        return _error(problem, EXIT_FAILURE)
    model = model.to(device).eval()
    x = image.tensor.to(device)
    h, w = x.shape[-2:]
    with torch.inference_mode():
        if args.tile and max(h, w) > args.tile:
            y = tiled_forward(model, x, tile=args.tile, overlap=args.overlap, progress=not args.no_progress)
        else:
            y = model(x)
    image.tensor = y.float().cpu()
    try:
        write_image(args.output, image)
    except (ValueError, OSError) as err:
        return _error(str(err), EXIT_FAILURE)
    print(f"restored {args.input} ({w}×{h}) -> {args.output}")
    return EXIT_OK


def _train_config(args: argparse.Namespace) -> tuple[object, int | None]:
    """Merge ``--config FILE.yaml`` with the flags given; return ``(config, None)`` or
    ``(None, exit code)``."""
    from .training import TrainConfig

    values: dict[str, object] = {}
    if args.config is not None:
        import yaml

        try:
            with open(args.config, encoding="utf-8") as f:
                loaded = yaml.safe_load(f)
        except FileNotFoundError:
            return None, _error(f"no such config file: {args.config!r}", EXIT_USAGE)
        except (OSError, yaml.YAMLError) as err:
            return None, _error(f"cannot read config {args.config!r}: {err}", EXIT_USAGE)
        if loaded is not None and not isinstance(loaded, dict):
            return None, _error(f"config {args.config!r} must hold a mapping of options", EXIT_USAGE)
        values.update(loaded or {})
    for key in (
        "model",
        "task",
        "train",
        "val",
        "max_steps",
        "max_minutes",
        "devices",
        "num_nodes",
        "accelerator",
        "precision",
        "out",
        "resume",
        "seed",
    ):
        value = getattr(args, key)
        if value is not None:
            values[key] = value
    if args.no_progress:
        values["progress"] = False
    if args.compile:
        values["compile"] = True
    try:
        config = TrainConfig.from_mapping(values, source=args.config or "the options")
        if config.max_minutes is not None and "max_steps" not in values:
            config.max_steps = None
        config.validate()
    except (ValueError, TypeError) as err:
        return None, _error(str(err), EXIT_USAGE)
    if config.train is None:
        return None, _error("--train DIR is required (or `train:` in --config)", EXIT_USAGE)
    return config, None


def _devices(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def _cmd_train(args: argparse.Namespace) -> int:
    from .models.registry import _builder

    config, code = _train_config(args)
    if config is None:
        return code if code is not None else EXIT_USAGE
    try:
        _builder(config.model)
    except ValueError as err:
        return _error(str(err), EXIT_USAGE)
    from .tools.allocator import tune_allocator
    from .training import train

    tune_allocator()  # this command owns its process (see clg_layers.tools.allocator)
    try:
        result = train(config)
    except FileNotFoundError as err:
        return _error(str(err), EXIT_FAILURE)
    except (ValueError, TypeError) as err:
        return _error(str(err), EXIT_FAILURE)
    if result.rank == 0:
        psnr = result.metrics.get("val/psnr")
        print(
            f"trained {config.model} ({config.task}) for {result.steps} steps in {result.seconds:.0f} s"
            + (f"; val PSNR {psnr:.2f} dB" if psnr is not None else "")
        )
        print(f"EMA weights: {result.weights}")
        if result.last_checkpoint is not None:
            print(f"resume from: {result.last_checkpoint}")
    return EXIT_OK


def _cmd_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .models import build
    from .models.registry import _builder

    try:
        _builder(args.model)
    except ValueError as err:
        return _error(str(err), EXIT_USAGE)
    if args.tile < 0 or args.overlap < 0 or (args.tile and args.overlap >= args.tile):
        return _error(
            f"need --tile >= 0 and 0 <= --overlap < --tile, got {args.tile} and {args.overlap}", EXIT_USAGE
        )
    from .data import PairedImageFolder, ValidationPairs
    from .io import ImageData, write_image
    from .training import PAIR_LAYOUTS, evaluate, find_pairs

    pairs = find_pairs(args.data)
    if pairs is None:
        layouts = ", ".join(f"{a}/+{b}/" for a, b in PAIR_LAYOUTS)
        return _error(f"--data {args.data!r} must hold one of {layouts}", EXIT_FAILURE)
    try:
        model = build(args.model, checkpoint=args.checkpoint)
    except FileNotFoundError as err:
        return _error(str(err), EXIT_FAILURE)
    except (ValueError, TypeError) as err:
        return _error(f"checkpoint {args.checkpoint!r} does not fit {args.model!r}: {err}", EXIT_FAILURE)
    channels = _image_channels(model)
    model, problem = _noise_level_input(model, args.sigma, args.model)
    if problem is not None:
        return _error(problem, EXIT_FAILURE)
    try:
        data = ValidationPairs(PairedImageFolder(*pairs, channels=channels))
    except (FileNotFoundError, ValueError) as err:
        return _error(str(err), EXIT_FAILURE)
    save = Path(args.save) if args.save else None

    def keep(name: str, _inp: object, restored: object, _tgt: object) -> None:
        if save is not None:
            write_image(save / f"{name}.png", ImageData(tensor=restored[None], alpha=None, bit_depth=8))

    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
    try:
        report = evaluate(
            model,
            data,
            channel=args.channel,
            crop_border=args.crop_border,
            device=args.device,
            tile=args.tile,
            overlap=args.overlap,
            on_image=keep,
        )
    except (ValueError, RuntimeError) as err:
        return _error(str(err), EXIT_FAILURE)
    print(report.table())
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import main as demo_main
    from .tools.allocator import tune_allocator

    tune_allocator()  # the demo trains, and owns its process (see clg_layers.tools.allocator)
    return demo_main(args=args)


def build_parser() -> argparse.ArgumentParser:
    """The ``clg-layers`` argument parser (``bench`` is forwarded to :mod:`clg_layers.tools.benchmark`)."""
    from .demo import build_parser as demo_parser
    from .io import DEFAULT_MAX_PIXELS

    parser = argparse.ArgumentParser(
        prog="clg-layers",
        description="CLG-INet layers and models: list, inspect, benchmark, restore images, train, evaluate, "
        "run the demo.",
        epilog="Exit codes: 0 success, 1 failure while running, 2 usage error. "
        "'clg-layers COMMAND --help' for each command.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="list the registered models")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style wildcard (default: *)")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("info", help="parameters, MACs and metadata of a model")
    p.add_argument("name", help="model name, e.g. clginet-base")
    p.add_argument(
        "--size", nargs=2, type=int, default=(256, 256), metavar=("H", "W"), help="input size (256 256)"
    )
    p.add_argument("--in-chans", type=int, default=3, help="input channels (default: 3)")
    p.set_defaults(func=_cmd_info)

    sub.add_parser("bench", help="benchmark models (see 'clg-layers bench --help')", add_help=False)

    p = sub.add_parser("restore", help="restore an image with a trained checkpoint")
    p.add_argument("name", help="model name the checkpoint belongs to, e.g. clginet-tiny")
    p.add_argument("input", help="input image (PNG, JPEG, TIFF, ...; 8/16-bit, gray/RGB, alpha kept)")
    p.add_argument("output", help="output image; the format follows the suffix")
    p.add_argument(
        "--checkpoint",
        required=True,
        help=".safetensors, .pt/.pth weights or a Lightning .ckpt (its EMA weights when it has them)",
    )
    p.add_argument("--tile", type=int, default=512, help="tile size for large images; 0 = whole image (512)")
    p.add_argument("--overlap", type=int, default=32, help="overlap between tiles in pixels (32)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (cpu)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse larger images")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="noise level on the 0-255 scale, for a noise-level-conditioned model (noise_level_map=True)",
    )
    p.set_defaults(func=_cmd_restore)

    p = sub.add_parser(
        "train", help="train a model (denoise, deblur, derain or paired folders) with Lightning"
    )
    p.add_argument("--model", default=None, help="zoo name (default: clginet-tiny)")
    p.add_argument(
        "--task",
        choices=("denoise", "deblur", "derain", "paired"),
        default=None,
        help="denoise/deblur/derain: --train holds clean images; paired: input/ and target/ (denoise)",
    )
    p.add_argument("--train", default=None, metavar="DIR", help="training folder")
    p.add_argument("--val", default=None, metavar="DIR", help="validation folder (same layout)")
    p.add_argument("--max-steps", type=int, default=None, help="optimiser steps (default: 1000)")
    p.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget instead of --max-steps")
    p.add_argument("--devices", type=_devices, default=None, help="devices per node: N or auto (default: 1)")
    p.add_argument("--num-nodes", type=int, default=None, help="nodes for multi-node DDP (default: 1)")
    p.add_argument("--accelerator", default=None, help="auto, cpu, gpu, ... (default: auto)")
    p.add_argument("--precision", default=None, help="32-true, bf16-mixed, 16-mixed, ... (default: 32-true)")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: runs/train)")
    p.add_argument("--resume", default=None, metavar="CKPT", help="Lightning checkpoint to resume, or 'auto'")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--config", default=None, metavar="FILE.yaml", help="every other option (see the docs)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the training step (first step slower; faster after, see the docs)",
    )
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="PSNR/SSIM of a checkpoint on a folder of input/ + target/ pairs")
    p.add_argument("--model", required=True, help="model name the checkpoint belongs to")
    p.add_argument(
        "--checkpoint",
        required=True,
        help=".safetensors, .pt/.pth weights or a Lightning .ckpt (its EMA weights when it has them)",
    )
    p.add_argument("--data", required=True, metavar="DIR", help="folder holding input/ and target/")
    p.add_argument("--save", default=None, metavar="DIR", help="write the restored images here")
    p.add_argument("--channel", choices=("rgb", "y"), default="rgb", help="measure on RGB or on Y (rgb)")
    p.add_argument("--crop-border", type=int, default=0, help="border pixels left out of the scores (0)")
    p.add_argument("--tile", type=int, default=0, help="tile size for large images; 0 = whole image (0)")
    p.add_argument("--overlap", type=int, default=32, help="overlap between tiles in pixels (32)")
    p.add_argument("--device", default="cpu", help="torch device (cpu)")
    p.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="noise level on the 0-255 scale, for a noise-level-conditioned model (noise_level_map=True)",
    )
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("demo", help="train clginet-tiny on bundled photos and report held-out PSNR/SSIM")
    demo_parser(p)
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``clg-layers`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        from .tools.benchmark import main as bench_main

        return bench_main(argv[1:], prog="clg-layers bench")
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
