#!/usr/bin/env python
"""Measure a clg-layers model against Restormer side by side, in one process per allocator setting.

Restormer is not part of this repository and never will be: pass the path of
``restormer_arch.py`` from your own clone of https://github.com/swz30/Restormer
(``basicsr/models/archs/restormer_arch.py``; it needs ``pip install einops``)::

    python benchmarks/compare_restormer.py \\
        --restormer-arch ~/src/Restormer/basicsr/models/archs/restormer_arch.py
    python benchmarks/compare_restormer.py --restormer-arch ... \\
        --allocators A --sizes 256 --repeats 2  # quick
    python benchmarks/compare_restormer.py --from-json benchmarks/restormer_comparison.json --rst out.rst

What it measures (CPU, batch 1, float32, ``torch.inference_mode()``, default 2 threads), each figure
the median of ``--repeats`` timed runs after one warm-up, the two networks taken round-robin so
that machine noise hits both alike:

- forward latency of both networks at ``--sizes`` and the ratio ours / Restormer;
- utilisation: model MACs / forward time / dense-matmul peak (2048³, measured in the same process);
- our latency at ``--slope-sizes`` and the log-log slope of latency against pixels;
- a training step (batch 2, 128², forward + L1 loss + backward + AdamW) of both;
- peak RSS of one 512² forward of each, each in a fresh process (``--rss-size``).

Allocators: ``A`` is glibc's default malloc; ``B`` sets
``MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824``
so large buffers are reused instead of freshly mapped (see ``docs/benchmarks.rst``). Each runs in its
own child process, since glibc reads these variables at start-up.

Writes a JSON report (``--json``, default ``benchmarks/restormer_comparison.json``) and prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

TUNED_MALLOC = {
    "MALLOC_MMAP_THRESHOLD_": "17179869184",
    "MALLOC_TRIM_THRESHOLD_": "17179869184",
    "MALLOC_TOP_PAD_": "1073741824",
}


def _load_restormer(path: str) -> Any:
    spec = importlib.util.spec_from_file_location("restormer_arch", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"compare_restormer: cannot import {path!r}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Restormer  # the paper configuration is its default


def _build(which: str, args: argparse.Namespace) -> Any:
    if which == "restormer":
        return _load_restormer(args.restormer_arch)()
    import clg_layers  # only where needed: a Restormer RSS process must not carry our imports

    return clg_layers.build(args.model)


def _macs(model: Any, size: int) -> float:
    from clg_layers import count_macs

    return count_macs(model, (3, size, size)) / 1e9


def _time(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _child(args: argparse.Namespace) -> dict[str, Any]:
    """One allocator setting: every latency, the peak, the train steps (runs in a fresh process)."""
    import torch

    from clg_layers.tools.benchmark import matmul_peak_gmacs

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {name: _build(name, args).eval() for name in ("ours", "restormer")}
    out: dict[str, Any] = {"peak_gmacs": matmul_peak_gmacs(threads=args.threads, repeats=7), "forward": {}}
    macs = {name: _macs(m, 256) for name, m in models.items()}
    out["gmacs_256"] = macs
    out["params"] = {name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}

    with torch.inference_mode():
        for size in sorted(set(args.sizes) | set(args.slope_sizes)):
            x = torch.randn(1, 3, size, size)
            names = ["ours", "restormer"] if size in args.sizes else ["ours"]
            for name in names:  # warm-up
                models[name](x)
            times: dict[str, list[float]] = {name: [] for name in names}
            for _ in range(args.repeats):
                for name in names:
                    times[name].append(_time(lambda m=models[name], x=x: m(x)))
            out["forward"][str(size)] = {name: statistics.median(t) for name, t in times.items()}
            figures = ", ".join(f"{n} {statistics.median(t):.3f} s" for n, t in times.items())
            print(f"  {size}²: {figures}", flush=True)

    x = torch.randn(2, 3, args.train_size, args.train_size)
    target = torch.randn_like(x)
    steps = {}
    for name, m in models.items():
        m.train()
        opt = torch.optim.AdamW(m.parameters(), lr=1e-4)

        def step(m: Any = m, opt: Any = opt) -> None:
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.l1_loss(m(x), target).backward()
            opt.step()

        steps[name] = step
        step()  # warm-up; also creates the optimiser state
    train: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            train[name].append(_time(step))
    out["train_step"] = {name: statistics.median(t) for name, t in train.items()}
    print("  train step: " + ", ".join(f"{n} {v:.3f} s" for n, v in out["train_step"].items()), flush=True)
    return out


def _rss(args: argparse.Namespace, which: str, env: dict[str, str], argv: list[str]) -> dict[str, float]:
    """Peak RSS (GiB) of one forward in a fresh process, and the RSS after building the model."""
    cmd = [sys.executable, __file__, "--rss-child", which, *argv]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def _rss_child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    model = _build(args.rss_child, args).eval()  # the process holds only what this network needs
    x = torch.randn(1, 3, args.rss_size, args.rss_size)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    with torch.inference_mode():
        model(x)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({"after_build_gib": base, "peak_gib": peak}))


def _slope(forward: dict[str, dict[str, float]], name: str, sizes: list[int]) -> float | None:
    pts = [(s * s, forward[str(s)][name]) for s in sizes if str(s) in forward and name in forward[str(s)]]
    if len(pts) < 2:
        return None
    (p0, t0), (p1, t1) = pts[0], pts[-1]
    return math.log(t1 / t0) / math.log(p1 / p0)


def _report(results: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        (
            f"clg-layers `{args.model}` vs Restormer, CPU, {args.threads} threads, batch 1, fp32, "
            f"median of {args.repeats} round-robin runs"
        ),
        "",
        "| allocator | size | ours (s) | Restormer (s) | ratio | ours G MAC/s (utilisation) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for alloc, r in results["runs"].items():
        for size, t in r["forward"].items():
            if "restormer" not in t:
                continue
            macs = r["gmacs_256"]["ours"] * (int(size) / 256) ** 2
            rate = macs / t["ours"]
            lines.append(
                f"| {alloc} | {size}² | {t['ours']:.3f} | {t['restormer']:.3f} "
                f"| {t['ours'] / t['restormer']:.3f} "
                f"| {rate:.1f} ({rate / r['peak_gmacs']:.2f}) |"
            )
    lines += [
        "",
        (
            "| allocator | matmul peak G MAC/s | our slope | Restormer slope "
            "| train step ours / Restormer (s) | ratio |"
        ),
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for alloc, r in results["runs"].items():
        ts = r["train_step"]
        lines.append(
            f"| {alloc} | {r['peak_gmacs']:.1f} "
            f"| {r['slope_ours']:.3f} ({min(args.slope_sizes)}²→{max(args.slope_sizes)}²) "
            f"| {r['slope_restormer']:.3f} ({min(args.sizes)}²→{max(args.sizes)}²) "
            f"| {ts['ours']:.3f} / {ts['restormer']:.3f} | {ts['ours'] / ts['restormer']:.3f} |"
        )
    if results.get("rss"):
        lines += [
            "",
            (
                f"| allocator | peak RSS {args.rss_size}² fwd, ours / Restormer (GiB) | ratio "
                "| growth over the built model, ours / Restormer (GiB) | ratio |"
            ),
            "| --- | --- | --- | --- | --- |",
        ]
        for alloc, r in results["rss"].items():
            o, t = r["ours"], r["restormer"]
            go, gt = o["peak_gib"] - o["after_build_gib"], t["peak_gib"] - t["after_build_gib"]
            lines.append(
                f"| {alloc} | {o['peak_gib']:.2f} / {t['peak_gib']:.2f} "
                f"| {o['peak_gib'] / t['peak_gib']:.3f} "
                f"| {go:.2f} / {gt:.2f} | {go / gt:.3f} |"
            )
    return "\n".join(lines)


def _rst(results: dict[str, Any]) -> str:
    """The report as reST list-tables, for ``.. include::`` in the docs."""
    out = [
        ".. This file is generated by benchmarks/compare_restormer.py --rst; rerun it instead of editing.",
        "",
        f"Command: ``{results['command']}``; torch {results['torch']}, Python {results['python']}.",
        "",
    ]

    def table(title: str, header: list[str], rows: list[list[str]]) -> None:
        out.append(f".. list-table:: {title}\n   :header-rows: 1\n")
        out.extend("   * - " + "\n     - ".join(row) for row in [header, *rows])
        out.append("")

    rows = []
    for alloc, run in results["runs"].items():
        for size, t in run["forward"].items():
            if "restormer" not in t:
                continue
            rate = run["gmacs_256"]["ours"] * (int(size) / 256) ** 2 / t["ours"]
            ratio = t["ours"] / t["restormer"]
            rows.append(
                [
                    alloc,
                    f"{size}²",
                    f"{t['ours']:.3f}",
                    f"{t['restormer']:.3f}",
                    f"**{ratio:.3f}**",
                    f"{rate:.1f}",
                    f"{rate / run['peak_gmacs']:.2f}",
                ]
            )
    header = ["allocator", "input", "ours (s)", "Restormer (s)", "ratio", "ours G MAC/s", "utilisation"]
    table("Forward latency, side by side", header, rows)
    rows = []
    for alloc, run in results["runs"].items():
        ts, last = run["train_step"], str(max(int(s) for s in run["forward"]))
        rows.append(
            [
                alloc,
                f"{run['peak_gmacs']:.1f}",
                f"{run['forward'][last]['ours']:.2f}",
                f"**{run['slope_ours']:.3f}**",
                f"{run['slope_restormer']:.3f}",
                f"{ts['ours']:.2f} / {ts['restormer']:.2f}",
                f"**{ts['ours'] / ts['restormer']:.3f}**",
            ]
        )
    header = ["allocator", "matmul peak (G MAC/s)", f"ours {last}² (s)", "our slope", "Restormer slope"]
    table(
        "Matmul peak, growth with pixels, training step",
        [*header, "train step, ours / Restormer (s)", "ratio"],
        rows,
    )
    rows = []
    for alloc, rss in results.get("rss", {}).items():
        o, t = rss["ours"], rss["restormer"]
        go, gt = o["peak_gib"] - o["after_build_gib"], t["peak_gib"] - t["after_build_gib"]
        rows.append(
            [
                alloc,
                f"{o['peak_gib']:.2f} / {t['peak_gib']:.2f}",
                f"**{o['peak_gib'] / t['peak_gib']:.3f}**",
                f"{o['after_build_gib']:.2f} / {t['after_build_gib']:.2f}",
                f"{go:.2f} / {gt:.2f}",
                f"{go / gt:.3f}",
            ]
        )
    if rows:
        header = [
            "allocator",
            "peak, ours / Restormer",
            "ratio",
            "after building",
            "growth in the forward",
            "ratio",
        ]
        table("Peak RSS of one forward, each network in a fresh process (GiB)", header, rows)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--restormer-arch", help="path to Restormer's restormer_arch.py")
    parser.add_argument("--model", default="clginet-base")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--slope-sizes", type=int, nargs="+", default=[128, 256, 512, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=128)
    parser.add_argument("--rss-size", type=int, default=512)
    parser.add_argument("--allocators", nargs="+", choices=["A", "B"], default=["A", "B"])
    parser.add_argument("--no-rss", action="store_true")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "restormer_comparison.json"))
    parser.add_argument("--rst", help="also write the tables as reST to this path (for the docs)")
    parser.add_argument("--from-json", help="measure nothing: render the tables of an earlier --json report")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rss-child", choices=["ours", "restormer"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.rss_child:
        _rss_child(args)
        return 0
    if args.child:
        print(json.dumps(_child(args)))
        return 0
    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())
        if args.rst:
            Path(args.rst).write_text(_rst(results) + "\n")
        print(_rst(results))
        return 0
    if not args.restormer_arch:
        parser.error("--restormer-arch is required unless --from-json is given")

    import torch

    results: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
        "runs": {},
        "rss": {},
    }
    base_env = {k: v for k, v in os.environ.items() if k not in TUNED_MALLOC}
    envs = {"A": base_env, "B": {**base_env, **TUNED_MALLOC}}
    raw = list(argv if argv is not None else sys.argv[1:])
    for alloc in args.allocators:
        print(f"allocator {alloc}:", flush=True)
        cmd = [sys.executable, __file__, "--child", *raw]
        proc = subprocess.run(cmd, env=envs[alloc], stdout=subprocess.PIPE, text=True, check=True)
        lines = proc.stdout.strip().splitlines()
        print("\n".join(lines[:-1]), flush=True)
        run = json.loads(lines[-1])
        run["slope_ours"] = _slope(run["forward"], "ours", args.slope_sizes)
        run["slope_restormer"] = _slope(run["forward"], "restormer", args.sizes)
        results["runs"][alloc] = run
        if not args.no_rss:
            results["rss"][alloc] = {
                which: _rss(args, which, envs[alloc], raw) for which in ("ours", "restormer")
            }
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if args.rst:
        Path(args.rst).write_text(_rst(results) + "\n")
    print(_report(results, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
