"""Where one training step's time goes: per module family, forward and backward, and the step rate
of each variant.

One optimiser step is the step of ``benchmarks/quality_per_compute.py``
(L1 loss, AdamW, ``--batch`` crops of ``--patch``², one intra-op thread by
default, as there). Three reports:

* ``--families``: forward and backward CPU time per module family (DBPA,
  GNFF, CNN layer, HGU, LayerNorm, ...), each measured between hooks that the
  family's modules fire around their own forward (forward pre-hook / forward
  hook) and their own backward (full backward pre-hook / full backward hook),
  so a family's figure includes its sub-modules and nothing else. Hooks cost
  a little themselves, so the families do not add up to the plain step time;
  the rest of the step (loss, optimiser, padding, reshapes between modules)
  is reported as "outside".
* ``--ops``: the busiest operators from :mod:`torch.profiler`.
* ``--depthwise``: forward, input gradient and weight gradient of one
  depthwise convolution (16 channels, ``--batch`` of ``--patch``²) at 3×3,
  5×5 and 7×7, in ``channels_last`` and contiguous (NCHW) memory.
* always: seconds per step of each ``--models`` spec, eager and (with
  ``--compile``) under plain ``torch.compile`` and with
  :data:`clg_layers.training.run.TRAIN_COMPILE_OPTIONS`, medians of ``--repeats`` rounds of
  ``--steps`` steps, run round-robin so that machine noise hits all alike.

All times are CPU time of this process (:func:`time.process_time`), so that
other work on a shared machine inflates them less than wall-clock time would.

Model specs are those of ``quality_per_compute.py`` (``nafnet16`` needs
``--nafnet-arch``). Example (the figures of docs/design.rst)::

    python benchmarks/profile_training_step.py --models clginet-tiny nafnet16 \\
        --families --depthwise --compile \\
        --nafnet-arch /path/NAFNet_arch.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality_per_compute as qpc


def families() -> list[tuple[str, Callable[[str, nn.Module], bool]]]:
    """Module families: a label and a test on a module's attribute name and the module (first match wins)."""
    from timm.layers import LayerScale, LayerScale2d

    import clg_layers as cl
    from clg_layers.models import clginet

    def of(*types: type) -> Callable[[str, nn.Module], bool]:
        return lambda name, m: isinstance(m, types)

    return [
        ("DBPA (attention)", of(cl.DBPA)),
        ("GNFF (feed-forward)", of(cl.GNFF)),
        ("CNN layer", of(cl.CNNLayer)),
        ("coupling projection", lambda name, m: name == "fuse"),
        ("HGU", of(cl.HybridGatedUnit)),
        ("LayerNorm", of(nn.LayerNorm)),
        ("LayerScale", of(LayerScale, LayerScale2d)),
        ("down/upsampling", of(clginet._Downsample, clginet._Upsample)),
        ("embedding and head", lambda name, m: name in ("embed", "head")),
    ]


DW = "  of which depthwise q/k/v convs"
PROJ = "  of which q/k/v/output Linear"


def make_batch(batch: int, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(batch, 3, patch, patch, generator=g)
    return clean + 0.1 * torch.randn(clean.shape, generator=g), clean


def make_step(model: nn.Module, batch: int, patch: int) -> Callable[[], None]:
    """One optimiser step of ``model`` on fixed random data."""
    noisy, clean = make_batch(batch, patch)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4, betas=(0.9, 0.9))

    def step() -> None:
        loss = nn.functional.l1_loss(model(noisy), clean)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def family_times(model: nn.Module, batch: int, patch: int, steps: int) -> dict[str, tuple[float, float]]:
    """Mean forward and backward CPU seconds per step of each module family, the rest, and the optimiser."""
    fams = families()
    owner: dict[nn.Module, str] = {}

    def claim(module: nn.Module, family: str | None = None) -> None:
        for attr, child in module.named_children():
            name = family or next((f for f, test in fams if test(attr, child)), None)
            if isinstance(child, (nn.ModuleList, nn.ModuleDict)):
                claim(child, family)  # never called itself
            elif name == "HGU" and family is None:
                # Its forward takes a list, which full backward hooks cannot see:
                # time its sub-modules instead (its resizes then count as the rest).
                claim(child, name)
            elif name is not None:
                owner[child] = name  # outermost match: its sub-modules are included, not counted again
            else:
                claim(child)

    claim(model)
    # Inside DBPA, also time its convolutions and projections ("of which" rows, not added to the sums).
    subs = {"q_dw": DW, "k_dw": DW, "v_dw": DW, "q": PROJ, "k": PROJ, "v": PROJ, "proj": PROJ}
    for m, name in list(owner.items()):
        if name == "DBPA (attention)":
            for attr, child in m.named_children():
                if attr in subs:
                    owner[child] = subs[attr]
    totals: dict[tuple[str, str], float] = defaultdict(float)
    starts: dict[tuple[int, str], float] = {}
    handles = []
    for module, name in owner.items():
        key = id(module)

        def fpre(m: nn.Module, args: object, key: int = key) -> None:
            starts[(key, "f")] = time.process_time()

        def fpost(m: nn.Module, args: object, out: object, key: int = key, name: str = name) -> None:
            totals[(name, "forward")] += time.process_time() - starts.pop((key, "f"))

        def bpre(m: nn.Module, grad_out: object, key: int = key) -> None:
            starts[(key, "b")] = time.process_time()

        def bpost(m: nn.Module, grad_in: object, grad_out: object, key: int = key, name: str = name) -> None:
            if (key, "b") in starts:
                totals[(name, "backward")] += time.process_time() - starts.pop((key, "b"))

        handles += [
            module.register_forward_pre_hook(fpre),
            module.register_forward_hook(fpost),
            module.register_full_backward_pre_hook(bpre),
            module.register_full_backward_hook(bpost),
        ]
    noisy, clean = make_batch(batch, patch)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4, betas=(0.9, 0.9))
    phase = defaultdict(float)
    try:
        for i in range(steps + 1):  # the first is a warm-up
            if i == 1:
                totals.clear()
                phase.clear()
            t0 = time.process_time()
            loss = nn.functional.l1_loss(model(noisy), clean)
            t1 = time.process_time()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            t2 = time.process_time()
            opt.step()
            t3 = time.process_time()
            phase["forward"] += t1 - t0
            phase["backward"] += t2 - t1
            phase["optimiser"] += t3 - t2
    finally:
        for h in handles:
            h.remove()
    names = [name for name, _ in fams]
    out = {name: (totals[(name, "forward")] / steps, totals[(name, "backward")] / steps) for name in names}
    rest = (
        phase["forward"] / steps - sum(f for f, _ in out.values()),
        phase["backward"] / steps - sum(b for _, b in out.values()),
    )
    for sub in (DW, PROJ):  # listed right after DBPA
        out[sub] = (totals[(sub, "forward")] / steps, totals[(sub, "backward")] / steps)
    out = {k: out[k] for k in [names[0], DW, PROJ, *names[1:]]}
    out["the rest (loss, padding, glue)"] = rest
    out["optimiser (AdamW)"] = (0.0, phase["optimiser"] / steps)
    out["whole step (with hooks)"] = (phase["forward"] / steps, phase["backward"] / steps)
    return out


def step_rates(steps: dict[str, Callable[[], None]], n: int, repeats: int) -> dict[str, float]:
    """Median seconds per step of each callable, measured round-robin."""
    for fn in steps.values():
        fn()
        fn()  # warm-up (and compilation)
    times: dict[str, list[float]] = defaultdict(list)
    for _ in range(repeats):
        for name, fn in steps.items():
            t0 = time.process_time()
            for _ in range(n):
                fn()
            times[name].append((time.process_time() - t0) / n)
    return {name: statistics.median(v) for name, v in times.items()}


def depthwise_times(
    batch: int, patch: int, repeats: int, channels: int = 16
) -> list[tuple[str, int, float, float, float]]:
    """Milliseconds of forward, input gradient and weight gradient of a depthwise convolution."""
    rows = []
    for k in (3, 5, 7):
        for layout in ("channels_last", "NCHW"):
            fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
            x = torch.randn(batch, channels, patch, patch).to(memory_format=fmt)
            gy = torch.randn_like(x)
            w = torch.randn(channels, 1, k, k)

            def grad(mask: list[bool], x=x, gy=gy, w=w, k=k) -> object:
                return torch.ops.aten.convolution_backward(
                    gy, x, w, None, [1, 1], [k // 2] * 2, [1, 1], False, [0, 0], channels, mask
                )

            calls = {
                "forward": lambda x=x, w=w, k=k: nn.functional.conv2d(x, w, None, 1, k // 2, 1, channels),
                "input grad": lambda: grad([True, False, False]),
                "weight grad": lambda: grad([False, True, False]),
            }
            ms = []
            for fn in calls.values():
                fn()
                times = []
                for _ in range(repeats):
                    t0 = time.process_time()
                    for _ in range(10):
                        fn()
                    times.append((time.process_time() - t0) / 10)
                ms.append(1e3 * statistics.median(times))
            rows.append((layout, k, *ms))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["clginet-tiny"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5, help="steps per timed round")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (the median is reported)")
    parser.add_argument(
        "--families", action="store_true", help="per-family forward/backward times of the first model"
    )
    parser.add_argument("--ops", action="store_true", help="busiest operators of the first model's step")
    parser.add_argument("--compile", action="store_true", help="also time each model under torch.compile")
    parser.add_argument(
        "--depthwise", action="store_true", help="time one depthwise convolution's three passes"
    )
    parser.add_argument("--nafnet-arch")
    parser.add_argument("--restormer-arch")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    first = args.models[0]
    if args.families:
        torch.manual_seed(0)
        model = qpc.build_model(first, args)
        times = family_times(model, args.batch, args.patch, args.steps * args.repeats)
        print(f"{first}: batch {args.batch} of {args.patch}², {args.threads} thread(s), ms per step")
        print(f"{'family':<34} {'forward':>8} {'backward':>8} {'total':>8}")
        opt_s = times["optimiser (AdamW)"][1]
        for name, (f, b) in times.items():
            total = f + b + (opt_s if name.startswith("whole step") else 0.0)  # the whole step includes AdamW
            print(f"{name:<34} {1e3 * f:8.1f} {1e3 * b:8.1f} {1e3 * total:8.1f}")
    if args.ops:
        from torch.profiler import ProfilerActivity, profile

        torch.manual_seed(0)
        model = qpc.build_model(first, args)
        step = make_step(model, args.batch, args.patch)
        step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps):
                step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))
    if args.depthwise:
        print(f"depthwise convolution, 16 channels, batch {args.batch} of {args.patch}², ms (median)")
        print(f"{'layout':<14} {'kernel':>6} {'forward':>8} {'input grad':>10} {'weight grad':>11}")
        for layout, k, f, gi, gw in depthwise_times(args.batch, args.patch, args.repeats):
            print(f"{layout:<14} {f'{k}×{k}':>6} {f:8.2f} {gi:10.2f} {gw:11.2f}")
    variants: dict[str, Callable[[], None]] = {}
    for spec in args.models:
        torch.manual_seed(0)
        variants[spec] = make_step(qpc.build_model(spec, args), args.batch, args.patch)
        if args.compile:
            from clg_layers.training import TRAIN_COMPILE_OPTIONS

            for label, options in (
                ("torch.compile", None),
                ("compiled, layout forced", TRAIN_COMPILE_OPTIONS),
            ):
                torch.manual_seed(0)
                model = qpc.build_model(spec, args)
                model.compile(dynamic=False, options=options)
                variants[f"{spec} ({label})"] = make_step(model, args.batch, args.patch)
    rates = step_rates(variants, args.steps, args.repeats)
    base = rates[first]
    print(f"{'model':<56} {'s/step':>7} {'vs ' + first:>20}")
    for name, s in rates.items():
        print(f"{name:<56} {s:7.3f} {base / s:19.2f}×")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
