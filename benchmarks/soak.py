#!/usr/bin/env python
"""Soak test: train a zoo model for a long time on ever-changing shapes, watching loss and memory.

Not a unit test and not run in CI. It trains ``clginet-tiny`` (or ``--model``) with AdamW on a
synthetic denoising task. Every step draws a random batch size (1-4) and a random crop height and
width (17-96, odd and even), so the padding, windowing and allocator paths all see new shapes.

It checks after every step that the loss is finite and stops at the first one that is not. Every
``--rss-every`` steps it records the resident set size (``/proc/self/statm``; peak RSS from
``resource`` where there is no ``/proc``). At the end it prints the steps, time, first/last loss
and the RSS at 10 % of the run against the RSS at the end. It exits with status 1 if a loss was not
finite or if RSS grew by more than ``--max-rss-growth`` (default 15 %) after that warm-up point,
and with status 0 otherwise.

RSS is what the allocator holds, not only what is live. glibc's malloc keeps freed heap memory,
and with a new shape every step RSS settles above the live set after the first few dozen steps,
then moves up and down with the shapes drawn. A leak shows as a steady upward trend (printed in MiB
per 1000 steps). To make RSS follow the live set closely (steps get slower), run with
``MALLOC_MMAP_THRESHOLD_=131072``.

Usage (from the repository root)::

    python benchmarks/soak.py --minutes 10              # the full soak
    python benchmarks/soak.py --steps 500 --threads 1   # a fixed number of steps
    python benchmarks/soak.py --minutes 3 --rss-every 5 # a quick check

With both ``--steps`` and ``--minutes`` the run stops at whichever comes first; with neither it
runs for 10 minutes.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import clg_layers as cl  # noqa: E402

try:
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]

MIN_CROP, MAX_CROP = 17, 96
MAX_BATCH = 4
NOISE_SIGMA = 0.1


@dataclass
class Sample:
    """One RSS measurement."""

    step: int
    elapsed: float
    rss: int  # bytes


def rss_bytes() -> int:
    """Current resident set size in bytes (peak RSS where ``/proc`` is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    if resource is None:  # pragma: no cover
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def peak_rss_bytes() -> int | None:
    """Peak resident set size of this process in bytes, if the platform reports it."""
    if resource is None:  # pragma: no cover
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def mib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:.1f} MiB"


def make_batch(
    gen: torch.Generator, batch: int, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A noisy/clean pair: smooth random RGB images plus Gaussian noise."""
    low = torch.rand(batch, 3, max(height // 8, 2), max(width // 8, 2), generator=gen)
    clean = F.interpolate(low, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)
    noisy = clean + NOISE_SIGMA * torch.randn(clean.shape, generator=gen)
    return noisy, clean


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=None, help="stop after this many steps")
    p.add_argument("--minutes", type=float, default=None, help="stop after this many minutes (default 10)")
    p.add_argument("--model", default="clginet-tiny", help="zoo model to train (default clginet-tiny)")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate, constant (1e-3)")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay (1e-4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the model, the shapes and the data (0)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--rss-every", type=int, default=10, help="record RSS every K steps (10)")
    p.add_argument(
        "--max-rss-growth", type=float, default=0.15, help="fail above this RSS growth after warm-up (0.15)"
    )
    p.add_argument("--warmup", type=float, default=0.10, help="fraction of the run that is warm-up (0.10)")
    args = p.parse_args(argv)
    if args.steps is None and args.minutes is None:
        args.minutes = 10.0
    if args.steps is not None and args.steps < 1:
        p.error("--steps must be >= 1")
    if args.minutes is not None and not args.minutes > 0:
        p.error("--minutes must be > 0")
    if args.rss_every < 1:
        p.error("--rss-every must be >= 1")
    if not 0 <= args.warmup < 1:
        p.error("--warmup must be in [0, 1)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    shapes = random.Random(args.seed)
    gen = torch.Generator().manual_seed(args.seed + 1)

    model = cl.build(args.model).train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    limit_s = None if args.minutes is None else 60.0 * args.minutes
    until = [f"{args.steps} steps"] if args.steps is not None else []
    until += [f"{args.minutes:g} min"] if args.minutes is not None else []
    print(
        f"soak: {args.model}, AdamW lr={args.lr}, batch 1-{MAX_BATCH}, crops {MIN_CROP}-{MAX_CROP}, "
        f"threads={torch.get_num_threads()}, until {' or '.join(until)}",
        flush=True,
    )

    samples = [Sample(0, 0.0, rss_bytes())]
    losses: list[float] = []
    bad_step: int | None = None
    pixels = 0
    start = time.perf_counter()
    step = 0
    while True:
        elapsed = time.perf_counter() - start
        if (args.steps is not None and step >= args.steps) or (limit_s is not None and elapsed >= limit_s):
            break
        b = shapes.randint(1, MAX_BATCH)
        h, w = shapes.randint(MIN_CROP, MAX_CROP), shapes.randint(MIN_CROP, MAX_CROP)
        noisy, clean = make_batch(gen, b, h, w)

        opt.zero_grad(set_to_none=True)
        loss = F.l1_loss(model(noisy), clean)
        value = loss.item()
        step += 1
        losses.append(value)
        pixels += b * h * w
        if not math.isfinite(value):
            bad_step = step
            print(f"soak: step {step}: non-finite loss {value} (batch {b}, {h}x{w}); stopping", flush=True)
            break
        loss.backward()
        opt.step()

        if step % args.rss_every == 0:
            sample = Sample(step, time.perf_counter() - start, rss_bytes())
            samples.append(sample)
            recent = sum(losses[-args.rss_every :]) / len(losses[-args.rss_every :])
            print(
                f"soak: step {step:6d}  {sample.elapsed:7.1f} s  loss {recent:.5f} (mean of last "
                f"{args.rss_every})  RSS {mib(sample.rss)}",
                flush=True,
            )

    total_s = time.perf_counter() - start
    samples.append(Sample(step, total_s, rss_bytes()))
    # The warm-up reference: the first sample at or after `warmup` of the run's steps.
    cut = args.warmup * step
    warm = next((s for s in samples if s.step >= cut and s.step > 0), samples[-1])
    end = samples[-1]
    growth = (end.rss - warm.rss) / warm.rss if warm.rss else 0.0
    k = min(10, len(losses))

    print("soak: ---- summary ----")
    rate, mpx = step / max(total_s, 1e-9), pixels / max(total_s, 1e-9) / 1e6
    print(f"soak: steps             {step} in {total_s:.1f} s ({rate:.2f} steps/s, {mpx:.3f} Mpx/s)")
    if losses:
        print(f"soak: loss first/last   {losses[0]:.5f} / {losses[-1]:.5f}")
        first_k, last_k = sum(losses[:k]) / k, sum(losses[-k:]) / k
        print(f"soak: loss mean of first/last {k} steps  {first_k:.5f} / {last_k:.5f}")
    print(f"soak: RSS at start      {mib(samples[0].rss)}")
    print(f"soak: RSS at {args.warmup:.0%} (step {warm.step})  {mib(warm.rss)}")
    print(
        f"soak: RSS at end (step {end.step})  {mib(end.rss)}  "
        f"({growth:+.1%} after warm-up; limit {args.max_rss_growth:.0%})"
    )
    after = [s for s in samples if s.step >= warm.step]
    if len(after) >= 3:
        # Least-squares slope of RSS over the steps after warm-up: a leak shows as a steady slope.
        xs, ys = [s.step for s in after], [s.rss / 2**20 for s in after]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
        print(
            f"soak: RSS after warm-up min/max  {mib(min(s.rss for s in after))} / "
            f"{mib(max(s.rss for s in after))}"
            f"  (trend {1000 * slope:+.1f} MiB per 1000 steps)"
        )
    print(f"soak: peak RSS          {mib(peak_rss_bytes())}")

    failures = []
    if bad_step is not None:
        failures.append(f"non-finite loss at step {bad_step}")
    if growth > args.max_rss_growth:
        failures.append(f"RSS grew {growth:.1%} after warm-up (limit {args.max_rss_growth:.0%})")
    if failures:
        print("soak: FAIL: " + "; ".join(failures))
        return 1
    print("soak: OK")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
