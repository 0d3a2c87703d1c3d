"""Hugging Face Hub layout (save_pretrained / from_pretrained / push_to_hub) and torch.hub, all offline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from _factories import to_0_2_layout
from conftest import wake
from hypothesis import given, settings
from hypothesis import strategies as st

import clg_layers as cl

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]


def _same_outputs(a: torch.nn.Module, b: torch.nn.Module, in_chans: int) -> None:
    x = torch.rand(1, in_chans, 13, 19, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ya, yb = a.eval()(x), b.eval()(x)
    assert torch.equal(ya, yb), f"max abs difference {(ya - yb).abs().max().item()}"


# --------------------------------------------------------------------------------------------------
# save_pretrained / from_pretrained on local directories
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", cl.list_models("clginet-*"))
def test_zoo_round_trip(name: str, tmp_path: Path) -> None:
    model = wake(cl.build(name), seed=1)
    out = cl.save_pretrained(model, tmp_path / name, training_data=["SIDD"], metrics={"PSNR (SIDD)": 39.5})
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    loaded = cl.from_pretrained(out)
    assert loaded.model_name == name and loaded.config == model.config and not loaded.training
    _same_outputs(loaded, model, 3)
    assert (
        cl.build(name, checkpoint=out / "model.safetensors").config == model.config
    )  # the weights file alone


@st.composite
def _configs(draw: st.DrawFn) -> dict[str, Any]:
    dim = draw(st.sampled_from([8, 16]))
    in_chans = draw(st.sampled_from([1, 3]))
    residual = draw(st.booleans())
    return dict(
        in_chans=in_chans,
        out_chans=in_chans if residual else draw(st.sampled_from([1, 3])),
        dim=dim,
        depths=[draw(st.integers(1, 2)) for _ in range(4)],
        num_heads=draw(st.sampled_from([1, 2])),
        window_size=draw(st.sampled_from([4, 8])),
        kernel_size=draw(st.sampled_from([3, 7])),
        expansion=draw(st.sampled_from([0.5, 2.0, 2.66])),
        refinement_depth=draw(st.integers(0, 1)),
        global_residual=residual,
        cnn_groups=draw(st.sampled_from([0, 1, 2])),
        coupling=draw(st.sampled_from(cl.COUPLING_MODES)),
    )


@settings(max_examples=10)
@given(cfg=_configs())
def test_random_configurations_round_trip(
    cfg: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    model = wake(cl.CLGINet(**cfg), seed=2)
    loaded = cl.from_pretrained(cl.save_pretrained(model, tmp_path_factory.mktemp("hub")))
    assert loaded.config == model.config and loaded.model_name is None
    _same_outputs(loaded, model, cfg["in_chans"])


def test_model_card(tmp_path: Path) -> None:
    model = cl.build("clginet-tiny", in_chans=1)
    cl.save_pretrained(
        model,
        tmp_path,
        training_data="BSD400 + WED, σ=25",
        metrics={"PSNR (Set12)": 30.1, "SSIM (Set12)": 0.86},
        card_data={"base_model": "clg-layers/clginet-tiny"},
        license="cc-by-4.0",
    )
    card = (tmp_path / "README.md").read_text()
    header = card.split("---")[1]
    assert 'library_name: "clg-layers"' in header and 'license: "cc-by-4.0"' in header
    assert 'datasets: ["BSD400 + WED, \\u03c3=25"]' in header or 'datasets: ["BSD400 + WED, σ=25"]' in header
    assert 'base_model: "clg-layers/clginet-tiny"' in header
    params = sum(p.numel() for p in model.parameters())
    macs = cl.count_macs(model, (1, 256, 256))
    assert f"Parameters: {params:,}" in card and f"256×256 image: {macs / 1e9:.2f} G" in card
    assert "| PSNR (Set12) | 30.1 |" in card and "- BSD400 + WED, σ=25" in card
    assert "doi       = {10.1145/3581783.3612251}" in card and "| `in_chans` | `1` |" in card
    config = json.loads((tmp_path / "config.json").read_text())
    assert (
        config["format_version"] == cl.integrations.hub.FORMAT_VERSION
        and config["library_version"] == cl.__version__
    )
    assert config["model_name"] == "clginet-tiny" and config["config"] == model.config.to_dict()


def _edit_config(directory: Path, change: Any) -> None:
    path = directory / "config.json"
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))


@pytest.mark.parametrize(
    ("change", "exc", "message"),
    [
        (
            lambda c: c.update(format_version=2, library_version="9.0.0"),
            ValueError,
            r"has format_version 2, written by clg-layers 9.0.0; .* reads format_version <= 1",
        ),
        (
            lambda c: c.update(quantization={"bits": 4}, adapters=[]),
            ValueError,
            r"has keys this clg-layers .* does not understand: \['adapters', 'quantization'\]",
        ),
        (
            lambda c: c["config"].update(norm="rms", act="silu"),
            ValueError,
            r"has config keys CLGINet .* does not understand: \['act', 'norm'\]",
        ),
        (lambda c: c.pop("format_version"), ValueError, "has no integer `format_version`"),
        (lambda c: c.update(library="diffusers"), ValueError, "describes library 'diffusers'"),
        (lambda c: c["config"].update(dim=24), ValueError, r"model.safetensors' does not fit config.json:"),
        (
            lambda c: c["config"].update(dim=7),
            ValueError,
            "invalid CLGINet configuration: .*`dim` must be even",
        ),
    ],
    ids=[
        "newer-format",
        "unknown-keys",
        "unknown-config-keys",
        "no-version",
        "other-library",
        "wrong-dim",
        "invalid-config",
    ],
)
def test_bad_config_json_is_refused(tmp_path: Path, change: Any, exc: type[Exception], message: str) -> None:
    directory = cl.save_pretrained(cl.build("clginet-tiny"), tmp_path / "m")
    _edit_config(directory, change)
    with pytest.raises(exc, match=message):
        cl.from_pretrained(directory)


def test_bad_directories_and_arguments(tmp_path: Path) -> None:
    model = cl.build("clginet-tiny")
    directory = cl.save_pretrained(model, tmp_path / "m")
    (directory / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        cl.from_pretrained(directory)
    (directory / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"has no config\.json"):
        cl.from_pretrained(directory)
    with pytest.raises(FileNotFoundError, match="is a file"):
        cl.from_pretrained(directory / "model.safetensors")
    with pytest.raises(FileNotFoundError, match="neither an existing directory nor a Hub repository id"):
        cl.from_pretrained("./no/such/dir")
    with pytest.raises(
        TypeError, match=r"save_pretrained: `model` must be a clg_layers\.CLGINet, got Conv2d"
    ):
        cl.save_pretrained(torch.nn.Conv2d(1, 1, 1), tmp_path / "x")
    with pytest.raises(TypeError, match="`metrics` must be a mapping"):
        cl.save_pretrained(model, tmp_path / "x", metrics=[("PSNR", 30.0)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`card_data` must be JSON-serialisable"):
        cl.save_pretrained(model, tmp_path / "x", card_data={"when": object()})
    with pytest.raises(ValueError, match="exists and is not a directory"):
        cl.save_pretrained(model, directory / "model.safetensors")


def test_old_dbpa_layout_loads(tmp_path: Path) -> None:
    """A directory whose weights use the other DBPA key layout (fused qkv vs q/k/v) still loads."""
    from safetensors.torch import save_file

    model = wake(cl.build("clginet-tiny"), seed=3)
    directory = cl.save_pretrained(model, tmp_path / "m")
    other = to_0_2_layout(model.state_dict())
    save_file({k: v.contiguous() for k, v in other.items()}, str(directory / "model.safetensors"))
    _same_outputs(cl.from_pretrained(directory), model, 3)


# --------------------------------------------------------------------------------------------------
# The Hugging Face Hub cache, offline
# --------------------------------------------------------------------------------------------------


def _populate_cache(cache: Path, repo_id: str, source: Path, revision: str = "main") -> str:
    """Lay ``source``'s files out as huggingface_hub's cache holds a downloaded snapshot."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for f in source.iterdir():
        shutil.copy(f, snapshot / f.name)
    (repo / "refs").mkdir()
    (repo / "refs" / revision).write_text(commit)
    return commit


def test_from_hub_cache_offline(tmp_path: Path) -> None:
    pytest.importorskip("huggingface_hub")
    model = wake(cl.build("clginet-tiny", in_chans=1), seed=4)
    cache = tmp_path / "cache"
    _populate_cache(cache, "someone/clginet-tiny-gray", cl.save_pretrained(model, tmp_path / "src"))
    loaded = cl.from_pretrained("someone/clginet-tiny-gray", cache_dir=cache, local_files_only=True)
    assert loaded.model_name == "clginet-tiny" and loaded.config == model.config
    _same_outputs(loaded, model, 1)
    with pytest.raises(
        OSError, match="from_pretrained: cannot fetch 'someone/not-cached' from the Hugging Face Hub"
    ):
        cl.from_pretrained("someone/not-cached", cache_dir=cache, local_files_only=True)


def test_offline_env_and_lazy_imports(tmp_path: Path) -> None:
    """Fresh processes: HF_HUB_OFFLINE + HF_HUB_CACHE resolve a repo id from the cache.

    Importing clg_layers imports neither spandrel nor (when absent) huggingface_hub, and both
    integrations say what to install.
    """
    pytest.importorskip("huggingface_hub")
    model = wake(cl.build("clginet-tiny"), seed=5)
    source = cl.save_pretrained(model, tmp_path / "src")
    _populate_cache(tmp_path / "cache", "someone/clginet-tiny", source)
    x = torch.rand(1, 3, 11, 9)
    with torch.no_grad():
        torch.save({"x": x, "y": model.eval()(x)}, tmp_path / "io.pt")
    code = f"""
import sys, torch
import clg_layers
assert "spandrel" not in sys.modules, "import clg_layers imported spandrel"
io = torch.load({str(tmp_path / "io.pt")!r}, weights_only=True)
m = clg_layers.from_pretrained("someone/clginet-tiny")
with torch.no_grad():
    assert torch.equal(m(io["x"]), io["y"])
print("offline ok")
"""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1",
    }
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0 and "offline ok" in out.stdout, out.stderr
    code = f"""
import sys
sys.modules["huggingface_hub"] = None  # as if not installed (timm then goes without it too)
sys.modules["spandrel"] = None
import clg_layers
m = clg_layers.from_pretrained({str(source)!r})  # local directories need no huggingface_hub
for call in (lambda: clg_layers.from_pretrained("someone/x"), lambda: clg_layers.push_to_hub(m, "someone/x")):
    try:
        call()
    except ImportError as err:
        print(err)
try:
    import clg_layers.integrations.spandrel
except ImportError as err:
    print(err)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 3 and all("pip install 'clg-layers[" in line for line in lines), out.stdout
    assert lines[0].startswith("from_pretrained needs") and lines[1].startswith("push_to_hub needs")
    assert "clg-layers[spandrel]" in lines[2]


# --------------------------------------------------------------------------------------------------
# push_to_hub, against a stand-in for HfApi
# --------------------------------------------------------------------------------------------------


class _FakeApi:
    calls: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    def __init__(self, token: str | None = None) -> None:
        self.calls.append(("init", {"token": token}))

    def create_repo(self, repo_id: str, **kwargs: Any) -> str:
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **kwargs: Any) -> Any:
        folder = Path(kwargs["folder_path"])
        staged = {p.name: p.read_bytes() for p in folder.iterdir()}
        self.calls.append(("upload_folder", {**kwargs, "staged": staged}))
        return type(
            "CommitInfo", (), {"commit_url": f"https://huggingface.co/{kwargs['repo_id']}/commit/abc"}
        )()


def test_push_to_hub_stages_the_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(hub, "HfApi", _FakeApi)
    _FakeApi.calls = []
    model = wake(cl.build("clginet-tiny"), seed=6)
    url = cl.push_to_hub(
        model, "someone/clginet-tiny-denoise", private=True, token="hf_x", metrics={"PSNR": 31.0}
    )
    assert url == "https://huggingface.co/someone/clginet-tiny-denoise/commit/abc"
    kinds = [c[0] for c in _FakeApi.calls]
    assert kinds == ["init", "create_repo", "upload_folder"] and _FakeApi.calls[0][1]["token"] == "hf_x"
    create, upload = _FakeApi.calls[1][1], _FakeApi.calls[2][1]
    assert create == {
        "repo_id": "someone/clginet-tiny-denoise",
        "private": True,
        "exist_ok": True,
        "repo_type": "model",
    }
    assert (
        upload["repo_id"] == "someone/clginet-tiny-denoise" and upload["commit_message"] == "Upload CLG-INet"
    )
    staged = upload["staged"]
    assert sorted(staged) == ["README.md", "config.json", "model.safetensors"]
    assert b"| PSNR | 31.0 |" in staged["README.md"]
    assert json.loads(staged["config.json"])["config"] == model.config.to_dict()
    for name, content in staged.items():  # what was uploaded loads back to the same model
        (tmp_path / name).write_bytes(content)
    _same_outputs(cl.from_pretrained(tmp_path), model, 3)
    assert not Path(upload["folder_path"]).exists()  # the staging directory is cleaned up


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        (
            {"repo_id": "a/b/c"},
            ValueError,
            r"push_to_hub: `repo_id` must be 'namespace/name' or 'name', got 'a/b/c'",
        ),
        ({"repo_id": ""}, ValueError, "`repo_id` must be"),
        ({"repo_id": 42}, ValueError, "`repo_id` must be"),
        ({"repo_id": "a/b", "commit_message": " "}, ValueError, "`commit_message` must be a non-empty str"),
        ({"repo_id": "a/b", "private": "yes"}, TypeError, "`private` must be a bool or None"),
        (
            {"repo_id": "a/b", "model": torch.nn.Identity()},
            TypeError,
            "push_to_hub: `model` must be a clg_layers.CLGINet",
        ),
    ],
    ids=["three-parts", "empty", "not-str", "empty-message", "private-str", "not-clginet"],
)
def test_push_to_hub_argument_checks(
    kwargs: dict[str, Any], exc: type[Exception], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(hub, "HfApi", _FakeApi)
    _FakeApi.calls = []
    model = kwargs.pop("model", None) or cl.build("clginet-tiny")
    with pytest.raises(exc, match=message):
        cl.push_to_hub(model, **kwargs)
    assert _FakeApi.calls == []  # nothing reached the Hub


# --------------------------------------------------------------------------------------------------
# torch.hub
# --------------------------------------------------------------------------------------------------


def _arch(model: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


@pytest.mark.parametrize("name", cl.list_models("clginet-*"))
def test_torch_hub_entry_points(name: str) -> None:
    model = torch.hub.load(str(ROOT), name.replace("-", "_"), source="local", trust_repo=True)
    reference = cl.build(name)
    assert type(model) is cl.CLGINet and model.config == reference.config and _arch(model) == _arch(reference)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters())


def test_torch_hub_overrides_and_checkpoint(tmp_path: Path) -> None:
    trained = wake(cl.build("clginet-tiny", in_chans=1, refinement_depth=0), seed=7)
    path = cl.save_checkpoint(trained, tmp_path / "gray.safetensors")
    model = torch.hub.load(str(ROOT), "clginet_tiny", source="local", checkpoint=str(path))
    assert model.config == trained.config
    _same_outputs(model, trained, 1)
    model = torch.hub.load(str(ROOT), "clginet_tiny", source="local", in_chans=1, refinement_depth=0)
    assert _arch(model) == _arch(trained)
    with pytest.raises(ValueError, match="was saved from model 'clginet-tiny', not 'clginet-small'"):
        torch.hub.load(str(ROOT), "clginet_small", source="local", checkpoint=path)
