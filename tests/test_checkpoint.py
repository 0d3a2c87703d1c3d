"""Checkpoint loading and saving: every common layout, clear errors, and no code execution."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from conftest import wake
from safetensors.torch import save_file

import clg_layers as cl


@pytest.fixture
def trained() -> cl.CLGINet:
    return wake(cl.build("clginet-tiny"), seed=7)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda s: s,
        lambda s: {"state_dict": s, "epoch": 3},
        lambda s: {"params": s},
        lambda s: {"params_ema": s, "params": {k: torch.zeros_like(v) for k, v in s.items()}},
        lambda s: {"model": s, "optimizer": {"lr": 1e-3}},
        lambda s: {f"module.{k}": v for k, v in s.items()},
        lambda s: {"state_dict": {f"module._orig_mod.{k}": v for k, v in s.items()}},
    ],
    ids=[
        "plain",
        "state_dict",
        "params",
        "params_ema-preferred",
        "model",
        "module-prefix",
        "nested-prefixes",
    ],
)
@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_torch_layouts_round_trip(tmp_path: Path, trained: cl.CLGINet, wrap, suffix: str) -> None:
    path = tmp_path / f"ckpt{suffix}"
    wrapped = wrap(trained.state_dict())
    torch.save(wrapped, path)
    fresh = cl.build("clginet-tiny")
    report = cl.load_checkpoint(fresh, path)
    # Only a file with EMA and training weights says which it took.
    source = "the EMA weights (`params_ema`); the training weights in `params` were not used"
    assert report == cl.LoadReport([], [], [], source=source if "params_ema" in wrapped else "")
    assert _same_weights(fresh, trained)


def test_safetensors_round_trip_restores_config(tmp_path: Path) -> None:
    model = wake(cl.build("clginet-tiny", in_chans=1), seed=3)
    path = cl.save_checkpoint(model, tmp_path / "gray.safetensors")
    assert cl.read_checkpoint_config(path)[0] == "clginet-tiny"
    restored = cl.build("clginet-tiny", checkpoint=path)  # in_chans=1 comes back from the file
    assert restored.in_chans == 1 and _same_weights(restored, model)
    x = torch.rand(1, 1, 19, 23)
    torch.testing.assert_close(restored.eval()(x), model.eval()(x))
    with pytest.raises(ValueError, match="was saved from model 'clginet-tiny', not 'clginet-small'"):
        cl.build("clginet-small", checkpoint=path)


def test_plain_safetensors_from_other_tools(tmp_path: Path, trained: cl.CLGINet) -> None:
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(path))
    model = cl.build("clginet-tiny", checkpoint=path)
    assert _same_weights(model, trained)


def test_mismatch_lists_keys(tmp_path: Path, trained: cl.CLGINet) -> None:
    state = trained.state_dict()
    state.pop("head.bias")
    state["extra.weight"] = torch.zeros(2)
    state["embed.weight"] = torch.zeros(16, 1, 3, 3)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(ValueError) as info:
        cl.load_checkpoint(cl.build("clginet-tiny"), path)
    msg = str(info.value)
    assert "does not fit CLGINet" in msg
    assert "missing keys (1): head.bias" in msg
    assert "unexpected keys (1): extra.weight" in msg
    assert "shape mismatches (1): embed.weight: checkpoint (16, 1, 3, 3) vs model (16, 3, 3, 3)" in msg
    model = cl.build("clginet-tiny")
    report = cl.load_checkpoint(model, path, strict=False)
    assert report.missing == ["head.bias"] and report.unexpected == ["extra.weight"]
    assert len(report.mismatched) == 1
    assert torch.equal(model.state_dict()["embed.bias"], trained.state_dict()["embed.bias"])


class _Exploit:
    """Unpickling this would create a file: the payload that must never run."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.mark.parametrize("legacy", [False, True])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path, legacy: bool) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = {"state_dict": {"embed.weight": torch.zeros(1)}, "x": _Exploit(str(marker))}
    if legacy:
        with path.open("wb") as f:
            pickle.dump(payload, f, protocol=2)
    else:
        torch.save(payload, path)
    assert not marker.exists()
    with pytest.raises(ValueError, match="refused, nothing was run"):
        cl.load_checkpoint(cl.build("clginet-tiny"), path)
    with pytest.raises(ValueError):
        cl.build("clginet-tiny", checkpoint=path)
    assert not marker.exists()


def test_truncated_empty_and_foreign_files(tmp_path: Path, trained: cl.CLGINet) -> None:
    model = cl.build("clginet-tiny")
    good_pt = tmp_path / "good.pt"
    torch.save(trained.state_dict(), good_pt)
    good_st = cl.save_checkpoint(trained, tmp_path / "good.safetensors")
    for good in (good_pt, good_st):
        cut = tmp_path / f"cut{good.suffix}"
        cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
        with pytest.raises(ValueError, match=r"load_checkpoint: .*(truncated|damaged)"):
            cl.load_checkpoint(model, cut)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="is empty, not a checkpoint"):
        cl.load_checkpoint(model, empty)
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights")
    with pytest.raises(ValueError, match="neither a safetensors file nor a torch checkpoint"):
        cl.load_checkpoint(model, text)
    with pytest.raises(FileNotFoundError, match="no such file"):
        cl.load_checkpoint(model, tmp_path / "missing.pt")
    tensor_only = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor_only)
    with pytest.raises(ValueError, match="holds a Tensor, not a state dict"):
        cl.load_checkpoint(model, tensor_only)
    with pytest.raises(ValueError, match=r"must end in \.safetensors"):
        cl.save_checkpoint(model, tmp_path / "x.pt")


def test_safetensors_whose_header_length_starts_like_a_pickle(tmp_path: Path) -> None:
    """A header length with low byte 0x80 must not be mistaken for a pickle (and lose the config)."""
    model = cl.build("clginet-tiny", in_chans=1)
    for pad in range(300):  # vary the metadata (the stored name) until the header length's low byte is 0x80
        path = tmp_path / "x.safetensors"
        model.model_name = "clginet-tiny" + "x" * pad
        cl.save_checkpoint(model, path)
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.skip("could not produce a header length with low byte 0x80")
    name, config = cl.read_checkpoint_config(path)
    assert name == model.model_name
    assert config["in_chans"] == 1


DATA = Path(__file__).resolve().parent / "data"


def test_checkpoint_written_by_0_2_0_loads_and_gives_its_outputs(tmp_path: Path) -> None:
    """A checkpoint saved by clg-layers 0.2.0 (fused ``qkv``, 1×1 ``Conv2d`` projections) still loads.

    ``tests/data`` holds one written by 0.2.0's own code, with the output 0.2.0
    computed for a fixed input: the migrated model must reproduce it.
    """
    from safetensors.torch import load_file

    path = DATA / "clginet-0.2.0-layout.safetensors"
    model = cl.build("clginet-tiny", checkpoint=path).eval()  # name and config from the file's metadata
    ref = load_file(DATA / "clginet-0.2.0-reference.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(model(ref["input"]), ref["output"], rtol=1e-5, atol=1e-5)
    report = cl.load_checkpoint(model, path)
    assert report.missing == report.unexpected == report.mismatched == []
    assert any("attn.qkv" in note for note in report.migrated)
    assert any("fc1_a" in note for note in report.migrated)
    assert cl.load_checkpoint(model, cl.save_checkpoint(model, tmp_path / "new.safetensors")).migrated == []


def test_migration_leaves_other_models_alone() -> None:
    """Keys that merely look like 0.2.0's are not rewritten for a model that has them as they are."""

    class Foreign(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = torch.nn.Module()
            self.attn.qkv = torch.nn.Conv2d(4, 12, 1)
            self.attn.proj = torch.nn.Conv2d(4, 4, 1)

    model = Foreign()
    state = {k: torch.randn(v.shape) for k, v in model.state_dict().items()}
    migrated, notes = cl.migrate_state_dict(
        state, expected={k: v.shape for k, v in model.state_dict().items()}
    )
    assert notes == [] and set(migrated) == set(state)
    upgraded, notes = cl.migrate_state_dict(state)  # without `expected`: the 0.2.0 mapping applies
    assert {"attn.q.weight", "attn.k.weight", "attn.v.weight"} <= set(upgraded) and notes
