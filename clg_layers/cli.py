"""The ``clg-layers`` command: list, info, bench, restore and demo.

Exit codes: 0 success; 1 the command ran but failed (a missing or unreadable
image, a checkpoint that does not fit, a channel mismatch); 2 a usage error
(bad options, an unknown model name).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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
        ("size multiple", f"{info.size_multiple} (pads internally)" if info.size_multiple == 1 else info.size_multiple),
        ("float16 / bfloat16", f"{'yes' if info.supports_half else 'no'} / {'yes' if info.supports_bf16 else 'no'}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return EXIT_OK


def _cmd_restore(args: argparse.Namespace) -> int:
    import torch

    from .io import read_image, write_image
    from .models import build
    from .models.registry import _builder
    from .tiled import tiled_forward

    try:
        _builder(args.name)
    except ValueError as err:
        return _error(str(err), EXIT_USAGE)
    if args.tile < 0 or args.overlap < 0 or (args.tile and args.overlap >= args.tile):
        return _error(f"need --tile >= 0 and 0 <= --overlap < --tile, got {args.tile} and {args.overlap}", EXIT_USAGE)
    try:
        device = torch.device(args.device)
    except RuntimeError as err:
        return _error(f"invalid --device {args.device!r}: {err}", EXIT_USAGE)
    try:
        image = read_image(args.input, max_pixels=args.max_pixels)
    except (FileNotFoundError, ValueError) as err:
        return _error(str(err), EXIT_FAILURE)
    try:
        model = build(args.name, checkpoint=args.checkpoint)
    except FileNotFoundError as err:
        return _error(str(err), EXIT_FAILURE)
    except (ValueError, TypeError) as err:  # TypeError: a stored config with a wrong type or key
        return _error(f"checkpoint {args.checkpoint!r} does not fit {args.name!r}: {err}", EXIT_FAILURE)
    c = image.tensor.shape[1]
    if c != model.in_chans:
        kind = {1: "grayscale", 3: "RGB"}.get(c, f"{c}-channel")
        return _error(
            f"{args.name} (from this checkpoint) takes {model.in_chans}-channel images, but {args.input!r} "
            f"is {kind}; convert the image or use a checkpoint trained with in_chans={c}",
            EXIT_FAILURE,
        )
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


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import main as demo_main

    return demo_main(args=args)


def build_parser() -> argparse.ArgumentParser:
    """The ``clg-layers`` argument parser (``bench`` is forwarded to :mod:`clg_layers.benchmark`)."""
    from .demo import build_parser as demo_parser
    from .io import DEFAULT_MAX_PIXELS

    parser = argparse.ArgumentParser(
        prog="clg-layers",
        description="CLG-INet layers and models: list, inspect, benchmark, restore images, run the demo.",
        epilog="Exit codes: 0 success, 1 failure while running, 2 usage error. "
        "'clg-layers COMMAND --help' for each command.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="list the registered models")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style wildcard (default: *)")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("info", help="parameters, MACs and metadata of a model")
    p.add_argument("name", help="model name, e.g. clginet-base")
    p.add_argument("--size", nargs=2, type=int, default=(256, 256), metavar=("H", "W"), help="input size (256 256)")
    p.add_argument("--in-chans", type=int, default=3, help="input channels (default: 3)")
    p.set_defaults(func=_cmd_info)

    sub.add_parser("bench", help="benchmark models (see 'clg-layers bench --help')", add_help=False)

    p = sub.add_parser("restore", help="restore an image with a trained checkpoint")
    p.add_argument("name", help="model name the checkpoint belongs to, e.g. clginet-tiny")
    p.add_argument("input", help="input image (PNG, JPEG, TIFF, ...; 8/16-bit, gray/RGB, alpha kept)")
    p.add_argument("output", help="output image; the format follows the suffix")
    p.add_argument("--checkpoint", required=True, help=".safetensors or .pt/.pth weights")
    p.add_argument("--tile", type=int, default=512, help="tile size for large images; 0 = whole image (512)")
    p.add_argument("--overlap", type=int, default=32, help="overlap between tiles in pixels (32)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (cpu)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse larger images")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_cmd_restore)

    p = sub.add_parser("demo", help="train clginet-tiny on bundled photos and report held-out PSNR/SSIM")
    demo_parser(p)
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``clg-layers`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        from .benchmark import main as bench_main

        return bench_main(argv[1:], prog="clg-layers bench")
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
