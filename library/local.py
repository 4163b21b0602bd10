"""What is on this machine: where a profile's model lives, how big it is, what its config says.

One place for these answers; profiles (form hints), servers (pre-start checks) and the library
pages all ask here. Reads files only: never reaches the Hub.
"""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from huggingface_hub import try_to_load_from_cache
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from library.models import ModelFolder
from nodes.selectors import this_node_id


def is_local_path(model: str) -> bool:
    """A profile's model is either an absolute folder path or a Hub repo id."""
    return model.startswith("/")


def model_folder_roots() -> list[Path]:
    """Folders holding model folders outside the cache: MLXM_MODEL_DIRS, then those an
    administrator added on the Models page for this node."""
    added = ModelFolder.objects.filter(node_id=this_node_id()).values_list("path", flat=True)
    roots = [Path(root) for root in settings.MLXM_MODEL_DIRS]
    return roots + [Path(path) for path in added if Path(path) not in roots]


def allowed_model_roots() -> list[Path]:
    """Folders a member may point a profile at: the Hugging Face cache and the model folders."""
    return [Path(settings.HF_HUB_CACHE), *model_folder_roots()]


def is_allowed_path(path: str) -> bool:
    """Whether an absolute path lies inside an allowed root once `..` and links are resolved."""
    try:
        resolved = Path(path).resolve()
        return any(resolved.is_relative_to(root.resolve()) for root in allowed_model_roots())
    except (OSError, ValueError, RuntimeError):
        return False


def is_valid_repo_id(model: str) -> bool:
    try:
        validate_repo_id(model)
    except HFValidationError:
        return False
    return "/" in model


def local_model_path(model: str, *, cache_dir: Path | None = None) -> Path | None:
    """The folder holding the model's files, or None when it is not on this machine.

    An absolute path must be a folder with config.json; a repo id must have a snapshot with
    config.json in the Hugging Face cache (settings.HF_HUB_CACHE)."""
    if is_local_path(model):
        folder = Path(model)
        return folder if (folder / "config.json").is_file() else None
    if not is_valid_repo_id(model):
        return None
    found = try_to_load_from_cache(model, "config.json", cache_dir=str(cache_dir or settings.HF_HUB_CACHE))
    if isinstance(found, str):
        return Path(found).parent
    return None


def weights_bytes(folder: Path) -> int:
    """Size of the model's weights: the sum of its *.safetensors files (links followed)."""
    return sum(path.stat().st_size for path in folder.glob("*.safetensors"))


def read_config(folder: Path) -> dict[str, Any]:
    """The model's config.json, or {} when it is missing or not a JSON object. Parsed once per
    version of the file (its path, modification time and size): the gateway asks at every request.
    The dict is shared between callers: read it, do not change it."""
    path = folder / "config.json"
    try:
        stat = path.stat()
    except OSError:
        return {}
    return _parsed_config(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _parsed_config(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def chat_template(folder: Path) -> str:
    """The model's chat template ("" when it has none): chat_template.jinja, or the one in
    tokenizer_config.json (a string, or a list of named templates, of which "default")."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(errors="replace")
    path = folder / "tokenizer_config.json"
    try:
        stat = path.stat()
    except OSError:
        return ""
    template = _parsed_config(str(path), stat.st_mtime_ns, stat.st_size).get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else ""


def takes_tools(folder: Path) -> bool:
    """Whether the chat template renders the `tools` a request offers (mlx-lm hands them to it)."""
    return "tools" in chat_template(folder)


@dataclass(frozen=True)
class ModelFacts:
    family: str | None
    context_length: int | None
    quantization: str | None


def model_facts(config: dict[str, Any]) -> ModelFacts:
    """Family, context length and quantization as a person would name them, from config.json."""
    nested = config.get("text_config")
    text_config: dict[str, Any] = nested if isinstance(nested, dict) else {}
    merged = {**text_config, **config}
    context = merged.get("max_position_embeddings") or merged.get("max_sequence_length") or merged.get("n_ctx")
    quant = merged.get("quantization") or merged.get("quantization_config")
    quantization = None
    if isinstance(quant, dict) and quant.get("bits"):
        quantization = f"{quant['bits']}-bit"
        if quant.get("group_size"):
            quantization += f" (group {quant['group_size']})"
    family = merged.get("model_type")
    return ModelFacts(
        family=str(family) if family else None,
        context_length=int(context) if isinstance(context, int) else None,
        quantization=quantization,
    )


def cached_repo_ids(*, cache_dir: Path | None = None) -> list[str]:
    """Model repo ids that have at least one snapshot in the Hugging Face cache, sorted."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(cache_dir or settings.HF_HUB_CACHE)
    except CacheNotFound:
        return []
    return sorted(repo.repo_id for repo in info.repos if repo.repo_type == "model" and repo.revisions)


@dataclass
class LocalModel:
    """A model on this machine: a repo in the Hugging Face cache or a folder under MLXM_MODEL_DIRS."""

    name: str  # the repo id, or the folder's absolute path (what a profile's `model` holds)
    path: Path
    size: int
    revisions: int
    last_used: float | None
    facts: ModelFacts
    in_cache: bool


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _read_since_written(accessed: float, modified: float) -> float | None:
    """When a server last read the model's files, or None when nothing has read them since they
    were written (a download leaves access time = write time; the OS moves it on the next read)."""
    return accessed if accessed > modified + 1 else None


def local_models(*, cache_dir: Path | None = None, also: Sequence[str] = ()) -> list[LocalModel]:
    """Cached model repos (from scan_cache_dir), model folders under the model folder roots, and
    the folders `also` names (those profiles serve, wherever they are) that hold a model."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    found: list[LocalModel] = []
    try:
        info = scan_cache_dir(cache_dir or settings.HF_HUB_CACHE)
        repos = sorted(info.repos, key=lambda r: r.repo_id.lower())
    except CacheNotFound:
        repos = []
    for repo in repos:
        if repo.repo_type != "model" or not repo.revisions:
            continue
        newest = max(repo.revisions, key=lambda r: r.last_modified)
        found.append(
            LocalModel(
                name=repo.repo_id,
                path=newest.snapshot_path,
                size=repo.size_on_disk,
                revisions=len(repo.revisions),
                last_used=_read_since_written(repo.last_accessed, repo.last_modified),
                facts=model_facts(read_config(newest.snapshot_path)),
                in_cache=True,
            )
        )
    folders: list[Path] = []
    for root in model_folder_roots():
        folders += [root, *sorted(p for p in _subfolders(root))]
    folders += [Path(path) for path in also if is_local_path(path)]
    listed: set[Path] = set()
    for folder in folders:
        if folder not in listed and _holds_a_model(folder):
            listed.add(folder)
            found.append(
                LocalModel(
                    name=str(folder),
                    path=folder,
                    size=_folder_size(folder),
                    revisions=1,
                    last_used=None,
                    facts=model_facts(read_config(folder)),
                    in_cache=False,
                )
            )
    return found


def _subfolders(root: Path) -> list[Path]:
    try:
        return [p for p in root.iterdir() if p.is_dir()]
    except OSError:  # gone, or not readable by this user
        return []


def _holds_a_model(folder: Path) -> bool:
    try:
        return (folder / "config.json").is_file()
    except OSError:
        return False


def disk_free(path: Path) -> int:
    """Free bytes on the disk that holds `path` (or its nearest existing parent); 0 when none exists."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return 0
