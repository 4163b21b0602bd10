"""What the profile form tells about the model typed in: is it usable, what is it, what fits it.

Reads the model folder or the local Hugging Face cache; for a repo that is not downloaded yet, its
config.json from the Hub (library.hub, with its deadline; when the Hub cannot answer, the form
says so and carries on).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from library.hub import HubError, hub_config
from library.local import (
    ModelFacts,
    is_allowed_path,
    is_local_path,
    is_valid_repo_id,
    local_model_path,
    model_facts,
    read_config,
    weights_bytes,
)

SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "min_p")

# Settings that fit a model family (config.json's model_type), on top of the model's own
# generation_config.json. Qwen3 thinks by default; its non-thinking sampling values go with the switch.
FAMILY_SUGGESTIONS: dict[str, dict[str, Any]] = {
    "qwen3": {"chat_template_args": {"enable_thinking": False}, "temperature": 0.7, "top_p": 0.8, "top_k": 20},
    "qwen3_moe": {"chat_template_args": {"enable_thinking": False}, "temperature": 0.7, "top_p": 0.8, "top_k": 20},
    "gpt_oss": {"chat_template_args": {"reasoning_effort": "low"}},
}


GiB = 1024**3
START_SECONDS_PER_GIB = 10.0  # loading reads every weight from disk: a 70 GB model needs minutes more


def default_start_timeout(model: str, *, base: float, per_gib: float = START_SECONDS_PER_GIB) -> int:
    """Seconds a server of `model` gets to load and answer when its profile sets none: `base`
    plus `per_gib` for each GiB of weights on this machine."""
    folder = local_model_path(model) if model and not model_shape_problem(model) else None
    size = weights_bytes(folder) if folder is not None else 0
    return round(base + per_gib * size / GiB)


NOT_ALLOWED = (
    "Profiles may serve models only from the Hugging Face cache and the model folders an administrator "
    "allowed (listed on the Models page): ask one to allow this folder. Administrators, and members granted "
    "“use unsafe server options”, can use any path."
)


def model_shape_problem(model: str, *, any_path: bool = True) -> str | None:
    """Why `model` cannot be a profile's model, or None: a repo id, or an absolute path to a
    folder holding config.json and *.safetensors. Without `any_path`, a path outside the allowed
    roots gets one answer whatever is there, so the check cannot be used to explore the disk."""
    if not model:
        return "Enter a model."
    if is_local_path(model):
        if not any_path and not is_allowed_path(model):
            return NOT_ALLOWED
        return folder_problem(model, what="model folder", need_weights=True)
    if model.startswith(("~", ".")) or "\\" in model:
        return "A local model must be given as an absolute path (starting with /)."
    if not is_valid_repo_id(model):
        return (
            "Enter a Hugging Face repo id such as mlx-community/Qwen3-4B-4bit, or an absolute path to a model folder."
        )
    return None


def folder_problem(path: str, *, what: str, need_weights: bool = False) -> str | None:
    """Why `path` is not an absolute path to an existing folder (with config.json and weights
    when `need_weights`), or None."""
    folder = Path(path)
    if not folder.is_absolute():
        return f"The {what} must be an absolute path (starting with /)."
    try:
        if not folder.exists():
            return f"{path} does not exist on this machine."
        if not folder.is_dir():
            return f"{path} is a file, not a folder."
        if need_weights and not (folder / "config.json").is_file():
            return f"{path} has no config.json, so it is not a model folder."
        if need_weights and not any(folder.glob("*.safetensors")):
            return f"{path} has no *.safetensors weights."
    except OSError as exc:
        return f"{path} cannot be read: {exc.strerror or exc}."
    except ValueError:  # a NUL byte in the path
        return "The path contains characters a path cannot have."
    return None


@dataclass
class ModelCheck:
    """The model field's verdict: a problem, or what is known about the model and what fits it."""

    model: str
    problem: str | None = None
    folder: Path | None = None
    facts: ModelFacts | None = None
    suggestions: dict[str, Any] = field(default_factory=dict)
    hub_error: str | None = None  # why the Hub could not tell about a repo that is not here

    @property
    def on_this_machine(self) -> bool:
        return self.folder is not None

    @property
    def suggestion_items(self) -> list[tuple[str, str]]:
        return [(name, format_suggestion(value)) for name, value in self.suggestions.items()]


def _generation_defaults(folder: Path) -> dict[str, Any]:
    """Sampling values the model's authors recommend, from its generation_config.json."""
    try:
        data = json.loads((folder / "generation_config.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        key: data[key]
        for key in SAMPLING_FIELDS
        if isinstance(data.get(key), int | float) and not isinstance(data.get(key), bool)
    }


def check_model(model: str, *, any_path: bool = True) -> ModelCheck:
    model = model.strip()
    check = ModelCheck(model=model, problem=model_shape_problem(model, any_path=any_path))
    if check.problem or not model:
        return check
    check.folder = local_model_path(model)
    if check.folder is None:
        if is_local_path(model):
            return check
        try:
            config = hub_config(model)
        except HubError as error:
            check.hub_error = str(error)
            return check
        if not config:
            return check
        suggestions: dict[str, Any] = {}
    else:
        config = read_config(check.folder)
        suggestions = _generation_defaults(check.folder)
    check.facts = model_facts(config)
    suggestions.update(FAMILY_SUGGESTIONS.get(check.facts.family or "", {}))
    check.suggestions = suggestions
    return check


def format_suggestion(value: Any) -> str:
    """A suggested value as the user would type it into the form."""
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def apply_suggestions(data: dict[str, str], suggestions: dict[str, Any]) -> dict[str, str]:
    """The form's values with the suggestions filled in where the user typed nothing. Chat template
    arguments gain the suggested keys they lack; keys the user set (or text that is not a JSON
    object) stay as they are."""
    result = dict(data)
    for name, value in suggestions.items():
        current = (result.get(name) or "").strip()
        if name == "chat_template_args" and current:
            try:
                typed = json.loads(current)
            except ValueError:
                continue
            if isinstance(typed, dict):
                result[name] = json.dumps({**value, **typed})
        elif not current:
            result[name] = format_suggestion(value)
    return result
