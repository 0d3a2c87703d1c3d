"""Quality per compute: held-out PSNR/SSIM of tiny denoisers after equal steps or equal CPU time.

Every model trains on the same data: random crops (with flips/rotations) of
the bundled scikit-image photos ``clg_layers.demo.TRAIN_IMAGES``, Gaussian
noise σ = 25 synthesised per batch, all drawn from ``(seed, step)`` by the
project's :class:`~clg_layers.data.datasets.RandomPatchBatches`; the same
AdamW, warm-up and cosine schedule, and L1 loss
(:func:`~clg_layers.training.task.restoration_loss`); evaluation on the
held-out photos ``HELD_OUT_IMAGES`` (noise seeded per image) with
:func:`~clg_layers.training.metrics.evaluate`. A run stops after ``--steps``
optimiser steps, or with ``--minutes`` after that much training CPU time (the
cosine schedule then follows elapsed time). Evaluation time is not counted.

Model specs are a zoo name with optional overrides, ``NAME[:key=value,...]``:
``clginet-tiny``, ``clginet-tiny:fusion=add``, ``clginet-tiny:init=shipped``
(the 0.2.0 start: layer scales 0, every branch's last projection and the
output convolution at their 0.2.0 values), ``clginet-tiny:init=head``
(0.2.0 start but a default-initialised output convolution),
``clginet-tiny:init=gamma0.1`` (the current start with layer scales 0.1),
``clginet-tiny:tau=4`` (DBPA's channel temperatures start at 4 instead of 1),
``clginet-tiny:dim=24,depths=1-1-1-1`` (a shape: tuples are written with ``-``),
``clginet-tiny:compile=True`` (compiled as ``clg-layers train --compile`` does; the
compilation, one forward and backward before the clock starts, is reported
separately as ``compile_seconds``);
``nafnet16`` and ``restormer16`` are the peers, built from the user's own
copies of ``NAFNet_arch.py`` and ``restormer_arch.py`` (never shipped here).

Example (the settings of the tables in docs/design.rst)::

    python benchmarks/quality_per_compute.py --steps 200 --batch 4 --patch 48 --seeds 0 1 \\
        --models clginet-tiny clginet-tiny:init=shipped clginet-tiny:init=head nafnet16 restormer16 \\
        --nafnet-arch /path/NAFNet_arch.py --restormer-arch /path/restormer_arch.py \\
        --json benchmarks/quality_per_compute.json --plot docs/_static/quality_per_compute.png

The plot needs matplotlib (not a dependency of clg-layers).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import importlib.util
import json
import math
import multiprocessing as mp
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]

#: Per-spec overrides that are not constructor arguments.
INIT_SCHEMES: tuple[str, ...] = ("current", "shipped", "head", "gamma0.1")


# ----------------------------------------------------------------------------------------------- models


def _value(text: str) -> Any:
    """``"True"`` → True, ``"3"`` → 3, ``"2.5"`` → 2.5, ``"1-1-2-2"`` → (1, 1, 2, 2), anything else
    stays a str."""
    if text in ("True", "False"):
        return text == "True"
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    parts = text.split("-")
    if len(parts) > 1 and all(p.isdigit() for p in parts):
        return tuple(int(p) for p in parts)
    return text


def _parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"clginet-tiny:fusion=add,depths=1-1-2-2"`` →
    ``("clginet-tiny", {"fusion": "add", "depths": (1, 1, 2, 2)})``."""
    name, _, rest = spec.partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        options[key] = _value(value)
    return name, options


def _load_module(path: str, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"quality_per_compute: cannot import {path!r}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of ``(B, C, H, W)``: stands in for basicsr's ``LayerNorm2d``
    (same function)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        return self.weight.view(1, -1, 1, 1) * (x - mu) / (var + self.eps).sqrt() + self.bias.view(
            1, -1, 1, 1
        )


def _load_nafnet(path: str) -> Any:
    """NAFNet's file imports two basicsr helpers; provide them without installing basicsr."""
    archs = types.ModuleType("basicsr.models.archs")
    util = types.ModuleType("basicsr.models.archs.arch_util")
    util.LayerNorm2d = _ChannelLayerNorm  # type: ignore[attr-defined]
    local = types.ModuleType("basicsr.models.archs.local_arch")
    local.Local_Base = type("Local_Base", (), {})  # type: ignore[attr-defined]  # only for NAFNetLocal
    for name, module in [
        ("basicsr", types.ModuleType("basicsr")),
        ("basicsr.models", types.ModuleType("m")),
        ("basicsr.models.archs", archs),
        ("basicsr.models.archs.arch_util", util),
        ("basicsr.models.archs.local_arch", local),
    ]:
        sys.modules.setdefault(name, module)
    return _load_module(path, "nafnet_arch").NAFNet


class _Padded(nn.Module):
    """Mirror-pads ``(B, C, H, W)`` to a multiple of ``multiple`` for a peer that needs it, and crops back."""

    def __init__(self, net: nn.Module, multiple: int = 8) -> None:
        super().__init__()
        self.net, self.multiple = net, multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = -h % self.multiple, -w % self.multiple
        y = self.net(torch.nn.functional.pad(x, (0, pw, 0, ph), mode="reflect") if ph or pw else x)
        return y[..., :h, :w]


class _Eager(nn.Module):
    """Runs a compiled module's plain ``forward`` (for evaluation)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward(x)


def _apply_init(model: nn.Module, scheme: str) -> None:
    """Re-initialise a fresh CLGINet to one of :data:`INIT_SCHEMES` (for the "how branches start" table)."""
    import clg_layers as cl

    if scheme == "current":
        return
    if scheme not in INIT_SCHEMES:
        raise SystemExit(f"quality_per_compute: unknown init {scheme!r}; choose from {INIT_SCHEMES}")
    with torch.no_grad():
        for m in model.modules():
            lasts: list[nn.Module] = []
            scales: list[nn.Module] = []
            if isinstance(m, cl.CNNLayer):
                lasts = [m.conv_b[-1] if isinstance(m.conv_b, nn.Sequential) else m.conv_b]
                scales = [m.scale]
            elif isinstance(m, cl.TransformerLayer):
                lasts, scales = [m.attn.proj, m.ffn.fc2], [m.scale1, m.scale2]
            if scheme == "gamma0.1":
                for s in scales:
                    s.gamma.fill_(0.1)
            elif lasts:  # 0.2.0: default-initialised last projections, zero layer scales
                for layer in lasts:
                    layer.reset_parameters()
                for s in scales:
                    s.gamma.zero_()
        if scheme == "shipped":
            model.head.weight.zero_()
            model.head.bias.zero_()


def build_model(spec: str, args: argparse.Namespace) -> nn.Module:
    """A fresh model for ``spec`` (seeded by the caller); ``compile=True`` compiles it for training."""
    name, options = _parse_spec(spec)
    compile_it = bool(options.pop("compile", False))
    model = _build(name, options, args)
    if compile_it:
        from clg_layers.training import TRAIN_COMPILE_OPTIONS

        model.compile(dynamic=False, options=TRAIN_COMPILE_OPTIONS)
    return model


def _build(name: str, options: dict[str, Any], args: argparse.Namespace) -> nn.Module:
    import clg_layers as cl

    if name == "nafnet16":
        if not args.nafnet_arch:
            raise SystemExit("quality_per_compute: nafnet16 needs --nafnet-arch")
        # NAFNet's SIDD shape at width 16 with a two middle blocks (2.70 M parameters).
        return _Padded(
            _load_nafnet(args.nafnet_arch)(
                img_channel=3,
                width=16,
                middle_blk_num=options.get("middle", 2),
                enc_blk_nums=[2, 2, 4, 8],
                dec_blk_nums=[2, 2, 2, 2],
            )
        )
    if name == "restormer16":
        if not args.restormer_arch:
            raise SystemExit("quality_per_compute: restormer16 needs --restormer-arch")
        return _Padded(_load_module(args.restormer_arch, "restormer_arch").Restormer(dim=16))
    init = options.pop("init", "current")
    tau = options.pop("tau", None)
    model = cl.build(name, **options)
    _apply_init(model, str(init))
    if tau is not None:  # starting temperature of every DBPA channel projection
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, cl.DBPA) and m.channel:
                    m.temperature.fill_(float(tau))
    return model


# ----------------------------------------------------------------------------------------------- one run


def _task_options() -> dict[str, dict[str, Any]]:
    """Degradation options per ``--task``: those of ``benchmarks/train_tasks.py`` (next to this file)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train_tasks import OPTIONS

    return OPTIONS


def _data(args: argparse.Namespace, seed: int) -> tuple[Any, Any]:
    from clg_layers.data import PatchSchedule, SyntheticPairs, ValidationPairs
    from clg_layers.data.datasets import RandomPatchBatches
    from clg_layers.demo import HELD_OUT_IMAGES, TRAIN_IMAGES, load_photo
    from clg_layers.training import make_degradation

    options = dict(_task_options()[args.task], **({"sigma": args.sigma} if args.task == "denoise" else {}))
    noise = make_degradation(args.task, options)
    train = SyntheticPairs([load_photo(n) for n in TRAIN_IMAGES], noise)
    batches = RandomPatchBatches(
        train, PatchSchedule.constant(args.patch, args.batch), steps=10**9, seed=seed
    )
    held_out = ValidationPairs(
        SyntheticPairs([load_photo(n) for n in HELD_OUT_IMAGES], noise),
        max_side=args.eval_side,
        seed=1000 + seed,
    )
    return batches, held_out


def run_one(spec: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train ``spec`` from seed ``seed`` and return its curve and final scores."""
    from clg_layers.training.metrics import evaluate
    from clg_layers.training.task import restoration_loss

    torch.set_num_threads(args.threads)
    torch.manual_seed(seed)
    model = build_model(spec, args)
    params = sum(p.numel() for p in model.parameters())
    batches, held_out = _data(args, seed)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay, betas=(0.9, 0.9))
    budget = args.minutes * 60.0 if args.minutes else None
    steps = args.steps if budget is None else 10**9
    curve: list[dict[str, float]] = []

    compiled = bool(_parse_spec(spec)[1].get("compile"))
    scored = _Eager(model) if compiled else model  # evaluation need not compile every held-out size

    def score(step: int, seconds: float) -> dict[str, float]:
        report = evaluate(scored, held_out)
        point = dict(step=step, seconds=seconds, psnr=report.mean_psnr, ssim=report.mean_ssim)
        curve.append(point)
        return point

    score(0, 0.0)
    compile_seconds = 0.0
    if compiled:
        # Compile outside the budget: one forward and backward on the first batch, gradients dropped.
        t0 = time.process_time()
        restoration_loss("l1", model(batches[0][0]), batches[0][1]).backward()
        opt.zero_grad(set_to_none=True)
        compile_seconds = time.process_time() - t0
    elapsed, step = 0.0, 0
    model.train()
    while step < steps and (budget is None or elapsed < budget):
        frac = step / steps if budget is None else elapsed / budget
        warm = min(1.0, (step + 1) / args.warmup)
        for group in opt.param_groups:
            group["lr"] = (
                args.lr * warm * (args.min_lr + (1 - args.min_lr) * 0.5 * (1 + math.cos(math.pi * frac)))
            )
        noisy, clean = batches[step]
        t0 = time.process_time()
        loss = restoration_loss("l1", model(noisy), clean)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        elapsed += time.process_time() - t0
        step += 1
        if step % args.eval_every == 0:
            score(step, elapsed)
    if curve[-1]["step"] != step:
        score(step, elapsed)
    final = curve[-1]
    return dict(
        spec=spec,
        seed=seed,
        params=params,
        steps=step,
        seconds=elapsed,
        s_per_step=elapsed / max(step, 1),
        compile_seconds=compile_seconds,
        psnr=final["psnr"],
        ssim=final["ssim"],
        curve=curve,
    )


# ----------------------------------------------------------------------------------------------- report


def _grid(rows: list[tuple[str, ...]]) -> str:
    """An RST grid table; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [line]
    for i, row in enumerate(rows):
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
        out.append(line.replace("-", "=") if i == 0 else line)
    return "\n".join(out)


def table(results: list[dict[str, Any]], specs: list[str]) -> str:
    """An RST grid of mean (and per-seed) held-out PSNR/SSIM per spec."""
    rows = [("model", "params (M)", "steps", "s/step", "PSNR (dB), mean", "per seed", "SSIM, mean")]
    for spec in specs:
        runs = sorted((r for r in results if r["spec"] == spec), key=lambda r: r["seed"])
        if not runs:
            continue
        rows.append(
            (
                f"``{spec}``",
                f"{runs[0]['params'] / 1e6:.2f}",
                f"{statistics.mean(r['steps'] for r in runs):.0f}",
                f"{statistics.mean(r['s_per_step'] for r in runs):.3f}",
                f"{statistics.mean(r['psnr'] for r in runs):.2f}",
                " / ".join(f"{r['psnr']:.2f}" for r in runs),
                f"{statistics.mean(r['ssim'] for r in runs):.4f}",
            )
        )
    return _grid(rows)


def at_seconds(results: list[dict[str, Any]], specs: list[str], seconds: float) -> str:
    """An RST grid of the held-out PSNR each spec had reached after ``seconds`` of training CPU time.

    Read off the curves of fixed-step runs (the last evaluation at or before
    ``seconds``): every model then had the same compute, but a model whose
    run was longer was still early in its cosine schedule there.
    """
    rows = [("model", "steps done", "PSNR (dB), mean", "per seed")]
    for spec in specs:
        runs = sorted((r for r in results if r["spec"] == spec), key=lambda r: r["seed"])
        if not runs:
            continue
        points = [
            max((p for p in r["curve"] if p["seconds"] <= seconds), key=lambda p: p["step"]) for r in runs
        ]
        rows.append(
            (
                f"``{spec}``",
                f"{statistics.mean(p['step'] for p in points):.0f}",
                f"{statistics.mean(p['psnr'] for p in points):.2f}",
                " / ".join(f"{p['psnr']:.2f}" for p in points),
            )
        )
    return _grid(rows)


def plot(results: list[dict[str, Any]], specs: list[str], path: str) -> None:
    """Held-out PSNR against steps and against training CPU seconds, mean over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for spec in specs:
        runs = [r for r in results if r["spec"] == spec]
        if not runs:
            continue
        n = min(len(r["curve"]) for r in runs)
        steps = [runs[0]["curve"][i]["step"] for i in range(n)]
        secs = [statistics.mean(r["curve"][i]["seconds"] for r in runs) for i in range(n)]
        psnr = [statistics.mean(r["curve"][i]["psnr"] for r in runs) for i in range(n)]
        axes[0].plot(steps, psnr, label=spec)
        axes[1].plot(secs, psnr, label=spec)
    for ax, xlabel in zip(axes, ("optimiser steps", "training CPU seconds")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("held-out PSNR (dB)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["clginet-tiny"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument(
        "--minutes", type=float, default=None, help="training CPU minutes per run instead of steps"
    )
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument(
        "--task",
        choices=("denoise", "deblur", "derain"),
        default="denoise",
        help="synthetic degradation: Gaussian noise (--sigma), motion blur or rain streaks",
    )
    parser.add_argument("--sigma", type=float, default=25.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument(
        "--min-lr", type=float, default=0.01, help="final learning rate as a fraction of --lr"
    )
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument(
        "--eval-side", type=int, default=160, help="held-out photos are downscaled to this side"
    )
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per run")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (processes)")
    parser.add_argument("--nafnet-arch", help="path to NAFNet's NAFNet_arch.py")
    parser.add_argument("--restormer-arch", help="path to Restormer's restormer_arch.py")
    parser.add_argument("--json", help="append results to this JSON file (runs already in it are skipped)")
    parser.add_argument("--plot", help="write the PSNR-vs-steps/seconds plot here (needs matplotlib)")
    parser.add_argument("--tag", default="", help="label stored with the results (e.g. 'equal-time')")
    parser.add_argument(
        "--at-seconds", type=float, help="also tabulate PSNR after this much training CPU time"
    )
    args = parser.parse_args(argv)

    results: list[dict[str, Any]] = []
    if args.json and Path(args.json).exists():
        results = json.loads(Path(args.json).read_text())
    done = {(r["spec"], r["seed"], r.get("tag", ""), r.get("task", "denoise")) for r in results}
    todo = [
        (s, seed) for s in args.models for seed in args.seeds if (s, seed, args.tag, args.task) not in done
    ]
    with cf.ProcessPoolExecutor(max_workers=args.jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(run_one, s, seed, args): (s, seed) for s, seed in todo}
        for fut in cf.as_completed(futures):
            r = fut.result()
            r["tag"] = args.tag
            r["task"] = args.task
            r["settings"] = {
                k: v for k, v in vars(args).items() if k not in ("models", "seeds", "json", "plot")
            }
            results.append(r)
            print(
                f"{r['spec']:<40} seed {r['seed']}: {r['psnr']:.2f} dB, {r['steps']} steps, "
                f"{r['s_per_step']:.3f} s/step",
                flush=True,
            )
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=1))
    mine = [r for r in results if r.get("tag", "") == args.tag and r.get("task", "denoise") == args.task]
    print(table(mine, args.models))
    if args.at_seconds:
        print(at_seconds(mine, args.models, args.at_seconds))
    if args.plot:
        plot(mine, args.models, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
