#!/usr/bin/env python
"""Rerun the benchmark table and plot shown in the documentation.

Usage (from the repository root)::

    python benchmarks/run_benchmarks.py                                   # the full sweep (slow)
    python benchmarks/run_benchmarks.py --max-pixels clginet-base=262144  # base up to 512x512 only
    python benchmarks/run_benchmarks.py --models clginet-tiny --sizes 64 128 --repeats 2  # a quick check

By default ``clginet-tiny``, ``clginet-small`` and ``clginet-base`` run at 128², 256², 512² and
1024² (batch 1, float32, CPU, 1 warm-up and 3 timed passes). Every (model, size) measurement runs
in a fresh Python process (``clg_layers.benchmark(..., isolate=True)``), so its peak RSS is its
own and not the largest of the sweep so far. The dense float32 matmul peak of the device is
measured once, for the utilisation column.

Writes, under ``--docs`` (default: this checkout's ``docs/``):

- ``_static/benchmarks.json``: the full report (every row, the environment, the slopes, the command);
- ``benchmarks_table.rst``: a ``.. list-table::`` to ``.. include::`` in the docs;
- ``_static/latency_vs_pixels.png``: log-log median latency against megapixels per model, with
  each model's fitted log-log slope in the legend (1.0 means latency grows linearly with pixels).

The log-log slope between the smallest and the largest size of each model is also printed.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

# Below the sys.path insert on purpose: it must find the checkout's clg_layers.
from clg_layers.tools.benchmark import (  # noqa: E402
    BenchmarkReport,
    BenchmarkResult,
    benchmark,
    benchmark_environment,
    matmul_peak_gmacs,
)

DEFAULT_MODELS = ("clginet-tiny", "clginet-small", "clginet-base")
DEFAULT_SIZES = (128, 256, 512, 1024)
_MIB = 1024**2


def _max_pixels(text: str) -> tuple[str | None, int]:
    """Parse ``N`` (every model) or ``MODEL=N`` (one model)."""
    model, _, value = text.rpartition("=")
    try:
        pixels = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid --max-pixels {text!r}: use N or MODEL=N") from None
    if pixels < 1:
        raise argparse.ArgumentTypeError(f"invalid --max-pixels {text!r}: N must be positive")
    return (model or None), pixels


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), metavar="NAME")
    p.add_argument("--sizes", nargs="+", type=int, default=list(DEFAULT_SIZES), metavar="S",
                   help="square input sides (default: 128 256 512 1024)")  # fmt: skip
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes per measurement (default: 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed passes per measurement (default: 1)")
    p.add_argument("--max-pixels", type=_max_pixels, action="append", default=[], metavar="[MODEL=]N",
                   help="skip sizes with batch*H*W > N, "
                        "for every model or for MODEL only (repeatable)")  # fmt: skip
    p.add_argument("--docs", type=Path, default=ROOT / "docs", help="docs folder to write into")
    return p


def _limit(model: str, limits: list[tuple[str | None, int]]) -> int | None:
    """The tightest pixel limit that applies to ``model``."""
    applicable = [n for m, n in limits if m is None or m == model]
    return min(applicable) if applicable else None


def loglog_slopes(results: list[BenchmarkResult]) -> dict[str, dict[str, float | None]]:
    """Per model: the log-log latency/megapixel slope between the smallest and largest size, and fitted."""
    by_model: dict[str, list[BenchmarkResult]] = defaultdict(list)
    for r in results:
        by_model[r.model].append(r)
    slopes: dict[str, dict[str, float | None]] = {}
    for model, rows in by_model.items():
        rows = sorted(rows, key=lambda r: r.megapixels)
        xs = [math.log(r.megapixels) for r in rows]
        ys = [math.log(r.latency_median_s) for r in rows]
        if len(set(xs)) < 2:
            slopes[model] = {"endpoints": None, "fitted": None}
            continue
        endpoints = (ys[-1] - ys[0]) / (xs[-1] - xs[0])
        fitted = statistics.linear_regression(xs, ys).slope
        slopes[model] = {"endpoints": endpoints, "fitted": fitted}
    return slopes


def write_rst(report: BenchmarkReport, slopes: dict[str, dict[str, float | None]], path: Path) -> None:
    """Write the ``.. list-table::`` of the report."""
    env = report.environment
    rows = report.results
    kind = rows[0].memory_kind if rows else "rss"
    peak_label = "Peak CUDA memory (MiB)" if kind == "cuda_max_allocated" else "Peak RSS (MiB)"
    has_train = any(r.train_step_s is not None for r in rows)
    first = rows[0] if rows else None
    caption = (
        f"Inference on {env.get('device_name', '?')}, {env.get('num_threads', '?')} threads, "
        f"torch {env.get('torch_version', '?')}" + (f", {first.dtype}, batch {first.batch}" if first else "")
    )
    headers = ["Model", "Input", "Params (M)", "G MACs", "Median (ms)", "Min–max (ms)", "MP/s",
               "G MAC/s", "Utilisation", peak_label, "Forward memory (MiB)"]  # fmt: skip
    if has_train:
        headers.append("Train step (ms)")
    table: list[list[str]] = []
    for r in rows:
        _, h, w = r.input_size
        forward_mem = (
            f"{(r.peak_memory_bytes - r.memory_baseline_bytes) / _MIB:.0f}"
            if r.peak_memory_bytes is not None and r.memory_baseline_bytes is not None
            else "–"
        )
        row = [
            f"``{r.model}``",
            f"{h}×{w}",
            f"{r.params / 1e6:.2f}",
            f"{r.macs / 1e9:.1f}",
            f"{r.latency_median_s * 1e3:.1f}",
            f"{r.latency_min_s * 1e3:.1f}–{r.latency_max_s * 1e3:.1f}",
            f"{r.megapixels_per_s:.3f}",
            f"{r.gmacs_per_s:.1f}",
            "–" if r.utilisation is None else f"{100 * r.utilisation:.1f} %",
            "–" if r.peak_memory_bytes is None else f"{r.peak_memory_bytes / _MIB:.0f}",
            forward_mem,
        ]
        if has_train:
            row.append("–" if r.train_step_s is None else f"{r.train_step_s * 1e3:.1f}")
        table.append(row)

    out = [
        ".. This file is generated by benchmarks/run_benchmarks.py; rerun it instead of editing.",
        "",
        f".. list-table:: {caption}",
        "   :header-rows: 1",
        "",
    ]
    for cells in [headers, *table]:
        out.append(f"   * - {cells[0]}")
        out.extend(f"     - {c}" for c in cells[1:])
    out.append("")
    notes = [
        (
            f"Measured {env.get('date', '?')}; median of {first.runs if first else '?'} timed forward "
            "passes after warm-up, each (model, size) in a fresh process."
        ),
    ]
    if kind == "rss":
        notes.append(
            "*Peak RSS* is the peak resident set size of that process, so it includes the interpreter, "
            "the torch libraries and the weights; *forward memory* is what the forward passes added "
            "on top of the resident size just before the first one."
        )
    if env.get("matmul_peak_gmacs"):
        notes.append(
            f"*Utilisation* is G MAC/s over the measured dense {env.get('matmul_peak_dtype')} matmul peak "
            f"of this device ({env['matmul_peak_gmacs']:.1f} G MAC/s)."
        )
    slope_text = ", ".join(
        f"``{m}`` {s['endpoints']:.2f}" for m, s in slopes.items() if s["endpoints"] is not None
    )
    if slope_text:
        notes.append(
            f"Log-log slope of latency against pixels, smallest to largest size: {slope_text} "
            "(1.0 is linear in the number of pixels)."
        )
    out.append(" ".join(notes))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


def write_plot(report: BenchmarkReport, slopes: dict[str, dict[str, float | None]], path: Path) -> None:
    """Write the log-log latency-vs-megapixels plot (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogFormatter, NullFormatter

    env = report.environment
    by_model: dict[str, list[BenchmarkResult]] = defaultdict(list)
    for r in report.results:
        by_model[r.model].append(r)

    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    ticks: dict[float, str] = {}
    for model, rows in by_model.items():
        rows = sorted(rows, key=lambda r: r.megapixels)
        mp = [r.megapixels for r in rows]
        ms = [r.latency_median_s * 1e3 for r in rows]
        err = [
            [(r.latency_median_s - r.latency_min_s) * 1e3 for r in rows],
            [(r.latency_max_s - r.latency_median_s) * 1e3 for r in rows],
        ]
        fitted = slopes.get(model, {}).get("fitted")
        label = f"{model} (slope {fitted:.2f})" if fitted is not None else f"{model} (one size)"
        ax.errorbar(mp, ms, yerr=err, marker="o", capsize=3, label=label)
        for r in rows:
            _, h, w = r.input_size
            ticks[r.megapixels] = f"{h}²" if h == w else f"{h}×{w}"
            if r.batch > 1:
                ticks[r.megapixels] = f"{r.batch}×{ticks[r.megapixels]}"
    if report.results:  # a slope-1 guide through the smallest point of the first model
        r0 = min(report.results, key=lambda r: (r.model != report.results[0].model, r.megapixels))
        xs = sorted(ticks)
        ax.plot(xs, [r0.latency_median_s * 1e3 * x / r0.megapixels for x in xs], "--", color="grey",
                linewidth=1, label="∝ pixels (slope 1)")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sorted(ticks), [f"{ticks[x]}\n{x:.3g} MP" for x in sorted(ticks)])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))  # plain ms, not 2×10³
    ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))
    ax.set_xlabel("Input (megapixels per forward pass)")
    ax.set_ylabel("Median latency (ms)")
    dtype = report.results[0].dtype if report.results else "float32"
    ax.set_title(
        f"CLG-INet inference latency: {env.get('device_name', '?')}, "
        f"{env.get('num_threads', '?')} threads, {dtype}",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Run the sweep and write the JSON, the table and the plot; returns an exit code."""
    args = _parser().parse_args(argv)
    report = BenchmarkReport(environment=benchmark_environment(args.device))
    for model in dict.fromkeys(args.models):
        limit = _limit(model, args.max_pixels)
        sizes = [s for s in args.sizes if limit is None or args.batch * s * s <= limit]
        for s in sorted(set(args.sizes) - set(sizes)):
            print(f"skip {model} at {s}x{s}: {args.batch * s * s} pixels > --max-pixels {limit}", flush=True)
        for s in sizes:  # one call per size, so progress shows as the sweep goes
            part = benchmark(
                model,
                sizes=(s,),
                batch=args.batch,
                dtype=args.dtype,
                device=args.device,
                threads=args.threads,
                warmup=args.warmup,
                repeats=args.repeats,
                isolate=True,
            )
            (row,) = part.results
            report.results.append(row)
            report.environment["num_threads"] = row.threads
            print(
                f"{model:>14} {s:>5}x{s:<5} median {row.latency_median_s * 1e3:9.1f} ms  "
                f"{row.gmacs_per_s:7.1f} G MAC/s  peak RSS {(row.peak_memory_bytes or 0) / _MIB:7.0f} MiB",
                flush=True,
            )
    if not report.results:
        print("nothing to run: every size is above --max-pixels", file=sys.stderr)
        return 2

    peak = matmul_peak_gmacs(args.device, args.threads, dtype=args.dtype)
    report.set_matmul_peak(peak, args.dtype)
    slopes = loglog_slopes(report.results)

    print()
    print(report.table())
    print()
    print("log-log slope of latency vs pixels (smallest -> largest size; fitted over all sizes):")
    for model, s in slopes.items():
        if s["endpoints"] is None:
            print(f"  {model}: one size only")
        else:
            print(f"  {model}: {s['endpoints']:.3f} (fitted {s['fitted']:.3f})")

    static = args.docs / "_static"
    static.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {
        **report.as_dict(),
        "loglog_slopes": slopes,
        "command": ["python", "benchmarks/run_benchmarks.py", *(sys.argv[1:] if argv is None else argv)],
    }
    outputs = (
        static / "benchmarks.json",
        args.docs / "benchmarks_table.rst",
        static / "latency_vs_pixels.png",
    )
    outputs[0].write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    write_rst(report, slopes, outputs[1])
    write_plot(report, slopes, outputs[2])
    for path in outputs:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
