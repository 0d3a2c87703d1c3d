"""Fine-tuning with LoRA (peft), dynamic quantisation: the documented recipes work on CLG-INet."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import wake
from torch import nn

import clg_layers as cl

peft = pytest.importorskip("peft")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
pytestmark = pytest.mark.usefixtures("one_thread")


def _example():
    spec = importlib.util.spec_from_file_location("lora_finetune", EXAMPLES / "lora_finetune.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    clean = F.interpolate(torch.rand(4, 3, 8, 8, generator=g), size=(32, 32), mode="bilinear")
    return clean + 0.1 * torch.randn(clean.shape, generator=g), clean


def test_lora_trains_only_adapters_and_merges_exactly(tmp_path: Path) -> None:
    targets = list(_example().TARGETS)
    base = wake(cl.build("clginet-tiny"))  # a stand-in for a trained model: every branch is on
    noisy, clean = _batch(0)
    base.eval()
    with torch.no_grad():
        before = base(noisy)
    expected = {n for n, m in base.named_modules() if isinstance(m, nn.Linear) and n.endswith(tuple(targets))}
    assert expected
    model = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=4, target_modules=targets))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    adapted_layers = {n.rsplit(".lora_", 1)[0].split("base_model.model.", 1)[1] for n in trainable}
    assert {n.rsplit(".", 1)[0] if n.endswith(".base_layer") else n for n in adapted_layers} == expected

    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    losses = []
    for _ in range(15):
        loss = F.l1_loss(model(noisy), clean)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0], losses
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if not p.requires_grad)

    model.eval()
    with torch.no_grad():
        adapted = model(noisy)
    assert (adapted - before).abs().max() > 1e-3
    merged = model.merge_and_unload()
    assert type(merged) is cl.CLGINet and not any("lora" in n for n, _ in merged.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(merged(noisy), adapted, rtol=1e-5, atol=1e-5)
    path = cl.save_checkpoint(merged, tmp_path / "merged.safetensors")
    reloaded = cl.build("clginet-tiny", checkpoint=path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(noisy), adapted, rtol=1e-5, atol=1e-5)


def test_lora_example_runs(tmp_path: Path) -> None:
    result = _example().main(
        ["--steps", "4", "--pretrain-steps", "2", "--size", "32", "--out", str(tmp_path)]
    )
    assert 0 < result.trainable < 0.1 * result.total
    assert result.merge_error < 1e-4
    assert result.checkpoint.exists()


def test_dynamic_quantisation_of_every_linear() -> None:
    """`quantize_dynamic(model, {nn.Linear})` replaces every projection and stays close to float32.

    Measured on this input: 59 dB PSNR between the int8 and the float32 output
    (images in [0, 1]); the bound asserted is 40 dB.
    """
    model = wake(cl.build("clginet-tiny"), seed=1).eval()
    x = F.interpolate(
        torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(3)), size=(48, 48), mode="bicubic"
    ).clamp(0, 1)
    with torch.no_grad():
        ref = model(x)
    q = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    assert not any(type(m) is nn.Linear for m in q.modules())
    with torch.no_grad():
        out = q(x)
    psnr = 10 * torch.log10(1.0 / F.mse_loss(out, ref))
    print(f"int8 dynamic quantisation vs float32: {psnr:.1f} dB")
    assert psnr > 40.0
