"""What DBPA's two projections do while a network trains: gate statistics, branch correlation, contributions.

Trains one model exactly as ``benchmarks/quality_per_compute.py`` does (same
data, crops, noise seeds, optimiser and schedule; the model spec syntax is
the same) and, every ``--probe-every`` steps, runs a fixed batch of held-out
crops through it with a forward pre-hook on every :class:`clg_layers.DBPA`.
For each DBPA with both projections it recomputes, from that input, the
window output ``S`` and the channel output ``C`` and reports:

* ``gate``: the mixing weight ``g`` of ``S`` (0.5 for ``attn_fusion="sum"``,
  whose mix is fixed): mean, spread over channels and images, and the
  fraction of saturated entries (``< 0.1`` or ``> 0.9``);
* ``corr``: the Pearson correlation of ``S`` and ``C`` per channel over all
  pixels, averaged over channels: near 1 means redundant branches;
* ``share_s``: ``‖proj(S part)‖ / (‖proj(S part)‖ + ‖proj(C part)‖)``: how
  much of the layer's output comes from the window branch after the output
  projection (``proj`` is linear, so the two parts are separable);
* ``tau``: the channel branch's temperatures (mean over heads);
* ``sharp``: how far the channel attention is from uniform: ``1 − H/log d``
  for the entropy ``H`` of each row of the ``d×d`` map (0: every output
  channel is the plain mean of the head's value channels; 1: one-hot).

It reads DBPA's private helpers on purpose: it is a diagnostic, not a user of
the public API. Example (the figures of docs/design.rst)::

    python benchmarks/dbpa_diagnostics.py --model clginet-tiny --steps 250 --seed 0 --json dbpa_diag.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality_per_compute as qpc


def _branches(m: Any, x: torch.Tensor) -> dict[str, float]:
    """Statistics of one DBPA's two branches for input ``x`` of shape ``(B, C, H, W)``.

    The steps of ``DBPA.forward`` (its plain path), computed one by one so each
    intermediate (``S``, ``A``, ``C``, ``g``) can be measured.
    """
    from clg_layers.layers._shapes import to_nchw, to_tokens
    from clg_layers.layers.dbpa import channel_attention, window_attention

    t = to_tokens(x)
    b, h, w, c = t.shape
    q, k, v = (to_tokens(dw(to_nchw(proj(t)))) for proj, dw in ((m.q, m.q_dw), (m.k, m.k_dw), (m.v, m.v_dw)))
    attn = channel_attention(q, k, m.temperature, m.num_heads)  # (B, heads, d, d)
    s = window_attention(q, k, v, m.num_heads, m.window_size).reshape(b, h * w, c)
    ch = torch.einsum("bhij,bnhj->bnhi", attn.to(v.dtype), v.reshape(b, h * w, m.num_heads, -1)).flatten(-2)
    if m.fusion == "gate":
        g = torch.sigmoid(m.gate(x.mean((2, 3), keepdim=True))).view(b, 1, c).expand(b, h * w, c)
    else:
        g = torch.full_like(s, 0.5)
    sc, cc = s - s.mean(1, keepdim=True), ch - ch.mean(1, keepdim=True)
    corr = (sc * cc).sum(1) / (sc.norm(dim=1) * cc.norm(dim=1)).clamp_min(1e-12)  # (B, C)
    scale = 2.0 if m.fusion == "sum" else 1.0  # sum: S + C = 2·(0.5·S + 0.5·C)
    ps, pc = m.proj(g * s * scale), m.proj((1 - g) * ch * scale)
    if m.proj.bias is not None:
        ps, pc = ps - m.proj.bias, pc - m.proj.bias
    ns, nc = ps.norm().item(), pc.norm().item()
    return dict(
        gate_mean=g.mean().item(),
        gate_std=g.std().item(),
        gate_saturated=((g < 0.1) | (g > 0.9)).float().mean().item(),
        corr=corr.mean().item(),
        share_s=ns / max(ns + nc, 1e-12),
        tau=m.temperature.mean().item(),
        sharp=_sharpness(attn),
    )


def _sharpness(attn: torch.Tensor) -> float:
    """``1 − H/log d`` averaged over the rows of the per-head channel maps ``(B, heads, d, d)``."""
    d = attn.shape[-1]
    entropy = -(attn * attn.clamp_min(1e-30).log()).sum(-1)
    return (
        1.0 - (entropy / max(torch.log(torch.tensor(float(d))).item(), 1e-12)).mean().item() if d > 1 else 1.0
    )


def probe(model: torch.nn.Module, batch: torch.Tensor) -> list[dict[str, float]]:
    """Branch statistics of every two-branch DBPA of ``model`` on ``batch``, in execution order."""
    import clg_layers as cl

    found: list[tuple[str, Any, torch.Tensor]] = []
    handles = []
    for name, m in model.named_modules():
        if isinstance(m, cl.DBPA) and m.spatial and m.channel:
            handles.append(m.register_forward_pre_hook(lambda mod, a, n=name: found.append((n, mod, a[0]))))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(batch)
            out = [dict(layer=n, **_branches(m, x)) for n, m, x in found]
    finally:
        for hd in handles:
            hd.remove()
        model.train(was_training)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="clginet-tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--probe-every", type=int, default=50)
    parser.add_argument("--task", choices=("denoise", "deblur", "derain"), default="denoise")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--sigma", type=float, default=25.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--min-lr", type=float, default=0.01)
    parser.add_argument("--eval-side", type=int, default=160)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write the probes here")
    args = parser.parse_args(argv)
    args.nafnet_arch = args.restormer_arch = None

    from clg_layers.training.task import restoration_loss

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = qpc.build_model(args.model, args)
    batches, held_out = qpc._data(args, args.seed)
    # A fixed probe batch: the centre 64×64 of each held-out (degraded) photo.
    crops = []
    for i in range(len(held_out)):
        degraded = held_out[i][0]
        hh, ww = degraded.shape[-2:]
        crops.append(degraded[..., (hh - 64) // 2 : (hh + 64) // 2, (ww - 64) // 2 : (ww + 64) // 2])
    probe_batch = torch.stack(crops)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay, betas=(0.9, 0.9))
    log: list[dict[str, Any]] = [dict(step=0, layers=probe(model, probe_batch))]
    model.train()
    t0 = time.process_time()
    for step in range(args.steps):
        warm = min(1.0, (step + 1) / args.warmup)
        frac = step / args.steps
        for group in opt.param_groups:
            group["lr"] = (
                args.lr * warm * (args.min_lr + (1 - args.min_lr) * 0.5 * (1 + math.cos(math.pi * frac)))
            )
        noisy, clean = batches[step]
        loss = restoration_loss("l1", model(noisy), clean)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % args.probe_every == 0 or step + 1 == args.steps:
            log.append(dict(step=step + 1, layers=probe(model, probe_batch)))
    print(
        f"{args.model}, seed {args.seed}, {args.task}: {args.steps} steps "
        f"in {time.process_time() - t0:.0f} s CPU"
    )
    print(
        f"{'step':>5} {'gate mean':>9} {'gate std':>8} {'saturated':>9} {'corr(S,C)':>9} {'S share':>7} "
        f"{'tau':>5} {'sharp':>6}"
    )
    for point in log:
        rows = point["layers"]
        if not rows:
            continue
        mean = {key: statistics.mean(r[key] for r in rows) for key in rows[0] if key != "layer"}
        print(
            f"{point['step']:>5} {mean['gate_mean']:>9.3f} {mean['gate_std']:>8.3f} "
            f"{mean['gate_saturated']:>9.3f} {mean['corr']:>9.3f} {mean['share_s']:>7.3f} "
            f"{mean['tau']:>5.2f} {mean['sharp']:>6.3f}"
        )
    print("per layer at the end:")
    for r in log[-1]["layers"]:
        print(
            f"  {r['layer']:<40} gate {r['gate_mean']:.3f}±{r['gate_std']:.3f} corr {r['corr']:+.3f} "
            f"S share {r['share_s']:.3f} tau {r['tau']:.2f} sharp {r['sharp']:.3f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(dict(settings=vars(args), log=log), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
