"""Share CLG-INet in the Hugging Face Hub layout: ``config.json``, ``model.safetensors`` and a model card.

:func:`save_pretrained` writes the three files to a directory,
:func:`from_pretrained` reads such a directory (or a Hub repository, through
``huggingface_hub``), and :func:`push_to_hub` uploads one. Nothing here
imports ``huggingface_hub`` until a repository is actually fetched or pushed
(install it with the ``hub`` extra: ``pip install "clg-layers[hub]"``).

Loading runs no code from the files: ``config.json`` is parsed as JSON, and
its ``config`` only as a :class:`~clg_layers.CLGINetConfig`
(:meth:`~clg_layers.CLGINetConfig.from_dict`); the weights are safetensors.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file

from .._version import __version__
from ..integrations.detect import load_strict, prepare_state_dict
from ..models.checkpoint import save_checkpoint
from ..models.clginet import CLGINet
from ..models.config import CLGINetConfig
from ..models.info import count_macs

__all__ = [
    "CONFIG_NAME",
    "FORMAT_VERSION",
    "WEIGHTS_NAME",
    "from_pretrained",
    "push_to_hub",
    "save_pretrained",
]

#: Version of the ``config.json`` layout this clg-layers writes and reads.
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"

_CONFIG_KEYS = ("format_version", "library", "library_version", "architecture", "model_name", "config")
_LIBRARY = "clg-layers"
# "name" or "namespace/name"; the Hub allows letters, digits, "-", "_" and "." (not leading).
_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}$")

_CITATION = """@inproceedings{jiang2023clginet,
  title     = {{CLG-INet}: Coupled Local-Global Interactive Network for Image Restoration},
  author    = {Jiang and others},
  booktitle = {Proceedings of the 31st ACM International Conference on Multimedia (MM '23)},
  year      = {2023},
  doi       = {10.1145/3581783.3612251}
}"""


def _check_model(fn: str, model: object) -> CLGINet:
    if not isinstance(model, CLGINet):
        raise TypeError(f"{fn}: `model` must be a clg_layers.CLGINet, got {type(model).__name__}")
    return model


def _yaml(value: Any) -> str:
    """A YAML value: JSON is valid YAML flow style, so no YAML library is needed."""
    return json.dumps(value, ensure_ascii=False)


def _card(
    model: CLGINet,
    *,
    training_data: Sequence[str],
    metrics: Mapping[str, Any],
    card_data: Mapping[str, Any],
    license: str,
) -> str:
    name = model.model_name or "CLG-INet"
    cfg = model.config
    params = sum(p.numel() for p in model.parameters())
    macs = count_macs(model, (model.in_chans, 256, 256))
    front: dict[str, Any] = {
        "library_name": _LIBRARY,
        "license": license,
        "pipeline_tag": "image-to-image",
        "tags": ["image-restoration", "clg-inet", "pytorch", "safetensors"],
    }
    if training_data:
        front["datasets"] = list(training_data)
    front.update(card_data)
    lines = ["---", *(f"{k}: {_yaml(v)}" for k, v in front.items()), "---", ""]
    lines += [
        f"# {name}",
        "",
        "A CLG-INet image-restoration network (Jiang et al., ACM Multimedia 2023),",
        f"saved with clg-layers {__version__}.",
        "",
        "## Architecture",
        "",
        "| setting | value |",
        "| --- | --- |",
        *(f"| `{k}` | `{_yaml(v)}` |" for k, v in cfg.to_dict().items()),
        "",
        f"- Parameters: {params:,} ({params / 1e6:.2f} M)",
        f"- MACs for one 1×{model.in_chans}×256×256 image: {macs / 1e9:.2f} G",
        f"- Input `(B, {model.in_chans}, H, W)`, output `(B, {model.out_chans}, H, W)`, any `H, W >= 1`",
        "  (the model pads internally)",
        "",
        "## Training data",
        "",
        *([f"- {d}" for d in training_data] or ["Not recorded."]),
        "",
        "## Metrics",
        "",
    ]
    if metrics:
        lines += ["| metric | value |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in metrics.items())]
    else:
        lines.append("Not recorded.")
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "import clg_layers",
        'model = clg_layers.from_pretrained("<this repository or directory>")',
        "```",
        "",
        "## Citation",
        "",
        "```bibtex",
        _CITATION,
        "```",
        "",
        "## License",
        "",
        f"Weights: {license}. The clg-layers code: MIT.",
        "",
    ]
    return "\n".join(lines)


def save_pretrained(
    model: CLGINet,
    directory: str | Path,
    *,
    training_data: str | Sequence[str] | None = None,
    metrics: Mapping[str, float | int | str] | None = None,
    card_data: Mapping[str, Any] | None = None,
    license: str = "mit",
) -> Path:
    """Write ``model`` to ``directory`` in the Hugging Face Hub layout.

    Three files: ``config.json`` (the constructor configuration, the zoo name,
    the clg-layers version and the layout's ``format_version``),
    ``model.safetensors`` (the weights, with the same config as metadata, so
    :func:`~clg_layers.build` can read it too) and ``README.md``, a model card
    with the architecture, parameter count, MACs at 256², training data and
    metrics when given, the paper's citation and the license. Existing files
    of those names are replaced.

    Args:
        model: The network to save.
        directory: Destination directory (created if needed).
        training_data: Data set(s) the weights were trained on, for the card.
        metrics: Results for the card, e.g. ``{"PSNR (SIDD)": 39.2}``.
        card_data: Extra entries for the card's YAML header (JSON-serialisable),
            e.g. ``{"tags": [...], "base_model": ...}``.
        license: License of the weights (a Hub license identifier).

    Returns:
        The directory.

    Raises:
        TypeError: If ``model`` is not a :class:`~clg_layers.CLGINet` or an
            argument has the wrong type.
        ValueError: If ``directory`` is an existing file or ``card_data`` is not JSON-serialisable.
    """
    fn = "save_pretrained"
    model = _check_model(fn, model)
    if isinstance(training_data, str):
        training_data = [training_data]
    data = list(training_data or [])
    if not all(isinstance(d, str) for d in data):
        raise TypeError(f"{fn}: `training_data` must be a str or a sequence of str, got {training_data!r}")
    if metrics is not None and not isinstance(metrics, Mapping):
        raise TypeError(f"{fn}: `metrics` must be a mapping of names to values, got {type(metrics).__name__}")
    if card_data is not None and not isinstance(card_data, Mapping):
        raise TypeError(f"{fn}: `card_data` must be a mapping, got {type(card_data).__name__}")
    if not isinstance(license, str) or not license:
        raise TypeError(f"{fn}: `license` must be a non-empty str, got {license!r}")
    try:
        json.dumps(dict(card_data or {}))
    except TypeError as err:
        raise ValueError(f"{fn}: `card_data` must be JSON-serialisable: {err}") from None
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{fn}: {str(directory)!r} exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "format_version": FORMAT_VERSION,
        "library": _LIBRARY,
        "library_version": __version__,
        "architecture": "CLGINet",
        "model_name": model.model_name,
        "config": model.config.to_dict(),
    }
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    save_checkpoint(model, directory / WEIGHTS_NAME)
    card = _card(
        model,
        training_data=data,
        metrics=dict(metrics or {}),
        card_data=dict(card_data or {}),
        license=license,
    )
    (directory / CARD_NAME).write_text(card, encoding="utf-8")
    return directory


def _read_config(path: Path) -> tuple[str | None, dict[str, Any]]:
    """Parse and check ``config.json``: ``(model_name, constructor config)``."""
    fn = "from_pretrained"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{fn}: {str(path)!r} is not valid JSON: {err}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{fn}: {str(path)!r} must hold a JSON object, got {type(raw).__name__}")
    version = raw.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(
            f"{fn}: {str(path)!r} has no integer `format_version` (got {version!r}); "
            "it was not written by clg_layers.save_pretrained"
        )
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{fn}: {str(path)!r} has format_version {version}, written by clg-layers "
            f"{raw.get('library_version', '?')}; this clg-layers ({__version__}) reads format_version "
            f"<= {FORMAT_VERSION}: upgrade clg-layers"
        )
    unknown = sorted(set(raw) - set(_CONFIG_KEYS))
    if unknown:
        raise ValueError(
            f"{fn}: {str(path)!r} has keys this clg-layers ({__version__}) does not understand: {unknown} "
            f"(known: {list(_CONFIG_KEYS)}; written by clg-layers {raw.get('library_version', '?')})"
        )
    if raw.get("library") != _LIBRARY or raw.get("architecture") != "CLGINet":
        raise ValueError(
            f"{fn}: {str(path)!r} describes library {raw.get('library')!r}, architecture "
            f"{raw.get('architecture')!r}; expected {_LIBRARY!r}, 'CLGINet'"
        )
    config, name = raw.get("config"), raw.get("model_name")
    if not isinstance(config, dict):
        raise ValueError(f"{fn}: {str(path)!r}: `config` must be a JSON object, got {type(config).__name__}")
    if name is not None and not isinstance(name, str):
        raise ValueError(f"{fn}: {str(path)!r}: `model_name` must be a string or null, got {name!r}")
    unknown = sorted(set(config) - set(CLGINetConfig.field_names()))
    if unknown:
        raise ValueError(
            f"{fn}: {str(path)!r} has config keys CLGINet in this clg-layers ({__version__}) does not "
            f"understand: {unknown} (written by clg-layers {raw.get('library_version', '?')})"
        )
    return name, config


def _load_directory(directory: Path) -> CLGINet:
    fn = "from_pretrained"
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{fn}: {str(directory)!r} has no {path.name} (save_pretrained writes "
                f"{CONFIG_NAME}, {WEIGHTS_NAME} and {CARD_NAME})"
            )
    name, config = _read_config(config_path)
    try:
        model = CLGINet(CLGINetConfig.from_dict(config))
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{fn}: {str(config_path)!r} holds an invalid CLGINet configuration: {err}"
        ) from None
    try:
        state = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{fn}: cannot read {str(weights_path)!r} as safetensors: {err}") from None
    load_strict(
        model,
        prepare_state_dict(state, model),
        f"{fn}: {str(weights_path)!r} does not fit {config_path.name}:",
    )
    model.model_name = name
    return model.eval()


def _hub(fn: str) -> Any:
    try:
        import huggingface_hub
    except ImportError as err:
        raise ImportError(
            f"{fn} needs the `huggingface_hub` package for Hub repositories ({err}); "
            "install it with: pip install 'clg-layers[hub]'"
        ) from err
    return huggingface_hub


def from_pretrained(
    name_or_path: str | Path,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> CLGINet:
    """Load a CLG-INet saved by :func:`save_pretrained`, from a directory or a Hugging Face Hub repository.

    An existing directory is read directly. Anything else of the form
    ``"name"`` or ``"namespace/name"`` is a Hub repository id, fetched (only
    ``config.json``, ``model.safetensors`` and ``README.md``) through
    ``huggingface_hub.snapshot_download`` into its cache, so it works offline
    (``HF_HUB_OFFLINE=1`` or ``local_files_only=True``) once cached.

    Args:
        name_or_path: A directory, or a Hub repository id.
        revision: Branch, tag or commit of the repository.
        cache_dir: Hub cache directory (default: ``HF_HUB_CACHE``).
        local_files_only: Use only the cache; never touch the network.
        token: Hub token for private repositories (``None``: the stored login).

    Returns:
        The model with its weights, in eval mode, on the CPU; ``model_name``
        is the zoo name it was saved under.

    Raises:
        FileNotFoundError: If the directory lacks a file, or the name is
            neither a directory nor a repository id.
        ValueError: If ``config.json`` is unreadable, comes from a newer
            format, has keys this version does not understand (they are named),
            or the weights do not fit it.
        ImportError: If a repository is asked for and ``huggingface_hub`` is
            not installed.
        OSError: If the repository cannot be fetched.
    """
    fn = "from_pretrained"
    if not isinstance(name_or_path, (str, Path)):
        raise TypeError(f"{fn}: expected a directory or a repository id, got {type(name_or_path).__name__}")
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return _load_directory(path)
    if path.exists():
        raise FileNotFoundError(
            f"{fn}: {str(path)!r} is a file; expected a directory written by save_pretrained"
        )
    repo_id = str(name_or_path)
    if isinstance(name_or_path, Path) or not _REPO_ID.match(repo_id):
        raise FileNotFoundError(f"{fn}: {repo_id!r} is neither an existing directory nor a Hub repository id")
    hub = _hub(fn)
    try:
        folder = hub.snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
            allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, CARD_NAME],
            library_name=_LIBRARY,
            library_version=__version__,
        )
    except Exception as err:  # the Hub's many error types become one clear message
        raise OSError(
            f"{fn}: cannot fetch {repo_id!r} from the Hugging Face Hub: {type(err).__name__}: {err}"
        ) from err
    return _load_directory(Path(folder))


def push_to_hub(
    model: CLGINet,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str = "Upload CLG-INet",
    create_pr: bool = False,
    training_data: str | Sequence[str] | None = None,
    metrics: Mapping[str, float | int | str] | None = None,
    card_data: Mapping[str, Any] | None = None,
    license: str = "mit",
) -> str:
    """Upload ``model`` to a Hugging Face Hub repository (created if needed) in the Hub layout.

    The files are those :func:`save_pretrained` writes, staged in a temporary
    directory and uploaded in one commit.

    Args:
        model: The network to upload.
        repo_id: ``"namespace/name"`` (or ``"name"`` under your own account).
        private: Visibility of a newly created repository (``None``: the Hub's default).
        token: Hub token (``None``: the stored login).
        revision: Branch to commit to.
        commit_message: The commit's message.
        create_pr: Open a pull request instead of committing directly.
        training_data: See :func:`save_pretrained`.
        metrics: See :func:`save_pretrained`.
        card_data: See :func:`save_pretrained`.
        license: See :func:`save_pretrained`.

    Returns:
        The URL of the commit.

    Raises:
        TypeError: If ``model`` is not a :class:`~clg_layers.CLGINet`.
        ValueError: If ``repo_id`` or ``commit_message`` is malformed.
        ImportError: If ``huggingface_hub`` is not installed.
    """
    fn = "push_to_hub"
    model = _check_model(fn, model)
    if not isinstance(repo_id, str) or not _REPO_ID.match(repo_id):
        raise ValueError(f"{fn}: `repo_id` must be 'namespace/name' or 'name', got {repo_id!r}")
    if not isinstance(commit_message, str) or not commit_message.strip():
        raise ValueError(f"{fn}: `commit_message` must be a non-empty str, got {commit_message!r}")
    if private is not None and not isinstance(private, bool):
        raise TypeError(f"{fn}: `private` must be a bool or None, got {private!r}")
    hub = _hub(fn)
    api = hub.HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="clg-layers-push-") as tmp:
        save_pretrained(
            model, tmp, training_data=training_data, metrics=metrics, card_data=card_data, license=license
        )
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=tmp,
            repo_type="model",
            revision=revision,
            commit_message=commit_message,
            create_pr=create_pr,
        )
    return str(getattr(info, "commit_url", info))
