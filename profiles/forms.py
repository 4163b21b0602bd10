"""The profile form: every field validated, with messages that say what is wrong."""

from __future__ import annotations

import ipaddress
import json
import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms
from django.conf import settings

from accounts.models import User
from library.local import is_allowed_path
from nodes.forms import NodeChoiceField
from nodes.models import Node
from nodes.selectors import this_node
from profiles.argv import OPTIONS, VLM_OPTIONS, split_origins
from profiles.modelinfo import (
    NOT_ALLOWED,
    START_SECONDS_PER_GIB,
    default_start_timeout,
    folder_problem,
    model_shape_problem,
)
from profiles.models import ENGINE_KINDS, Engine, Kind, ServerProfile, split_aliases
from profiles.ports import PORT_MAX, PORT_MIN
from profiles.services import UNSAFE_WHO, profile_unsafe_problems, user_may_use_unsafe_options

ORIGIN_RE = re.compile(r"^https?://[^\s/,?#]+$")
SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?B?)?\s*$", re.IGNORECASE)
SIZE_UNITS = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "M": 10**6, "MB": 10**6, "G": 10**9, "GB": 10**9}
SIZE_UNITS |= {"T": 10**12, "TB": 10**12}
KV_BITS = [(bits, f"{bits}-bit") for bits in (2, 3, 4, 5, 6, 8)]
KV_GROUP_SIZES = [(size, str(size)) for size in (32, 64, 128)]


def _int(label: str, low: int, high: int, *, required: bool = False, **kwargs: Any) -> forms.IntegerField:
    return forms.IntegerField(
        label=label,
        required=required,
        min_value=low,
        max_value=high,
        error_messages={
            "required": f"Enter a {label.lower()}.",
            "invalid": f"{label} must be a whole number.",
            "min_value": f"{label} must be at least {low}.",
            "max_value": f"{label} must be at most {high}.",
        },
        **kwargs,
    )


def _float(label: str, low: float, high: float, **kwargs: Any) -> forms.FloatField:
    return forms.FloatField(
        label=label,
        required=False,
        min_value=low,
        max_value=high,
        error_messages={
            "invalid": f"{label} must be a number, such as 0.7.",
            "min_value": f"{label} must be at least {low}.",
            "max_value": f"{label} must be at most {high}.",
        },
        **kwargs,
    )


class SizeField(forms.CharField):
    """A size in bytes, typed as 8000000000, 8GB or 500 MB (decimal units, as mlx-lm reads them)."""

    def to_python(self, value: Any) -> int | None:  # type: ignore[override]
        text = super().to_python(value)
        if not text:
            return None
        match = SIZE_RE.match(text)
        if not match:
            raise forms.ValidationError("Enter a size such as 8GB, 500MB or a number of bytes.")
        try:
            size = int(Decimal(match.group(1)) * SIZE_UNITS[(match.group(2) or "").upper()])
        except (InvalidOperation, KeyError):
            raise forms.ValidationError("Enter a size such as 8GB, 500MB or a number of bytes.") from None
        if size < 1 or size > 2**60:
            raise forms.ValidationError("The prompt cache size in bytes must be more than 0 and at most 1 EB.")
        return size


class NonFiniteNumber(ValueError):
    """NaN or ±Infinity in JSON text: Python reads them, but JSON and the database do not."""


def _refuse_constant(name: str) -> Any:
    raise NonFiniteNumber(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 reads as infinity
        raise NonFiniteNumber(text)
    return value


# The options only one engine reads: the form shows the chosen engine's, and clears the other's.
ENGINE_ONLY = {
    Engine.MLX_LM: {o.field for o in OPTIONS} - {o.field for o in VLM_OPTIONS} - {"adapter_path"},
    Engine.MLX_VLM: {o.field for o in VLM_OPTIONS} - {o.field for o in OPTIONS},
}
EMPTY = {"chat_template_args": {}, "use_default_chat_template": False, "allowed_origins": ""}
EMPTY |= {"chat_template": "", "draft_model": ""}


# What happens at the supervisor's start either way: it restores what was wanted when it stopped.
AUTO_START_HELP = (
    "On: started every time the supervisor starts. Off: started with the supervisor only if it was running "
    "when the supervisor stopped (as after a restart of `make run`)."
)
AUTO_START_SHOWN = {True: "Yes, every time", False: "Only if it was running when the supervisor stopped"}


class ProfileForm(forms.ModelForm):  # type: ignore[type-arg]
    port = _int("Port", PORT_MIN, PORT_MAX, required=True)
    node = NodeChoiceField(help_text="The Mac that runs this server; the model must be on that Mac's disk.")
    num_draft_tokens = _int("Draft tokens", 1, 64, help_text="Tokens the draft model proposes per step (mlx: 3).")
    temperature = _float("Temperature", 0.0, 10.0, help_text="0 always picks the most likely token (mlx: 0.0).")
    top_p = forms.FloatField(
        label="Top-p",
        required=False,
        help_text="More than 0, at most 1 (mlx: 1.0, off).",
        error_messages={"invalid": "Top-p must be a number, such as 0.95."},
    )
    top_k = _int("Top-k", 0, 100_000, help_text="0 turns it off (mlx: 0).")
    min_p = _float("Min-p", 0.0, 1.0, help_text="From 0 to 1; 0 turns it off (mlx: 0.0).")
    max_tokens = _int(
        "Max tokens", 1, 10_000_000, help_text="Default answer length when a request sets none (mlx: 512)."
    )
    decode_concurrency = _int("Decode concurrency", 1, 4096, help_text="Requests decoded in parallel (mlx: 32).")
    prompt_concurrency = _int("Prompt concurrency", 1, 4096, help_text="Prompts processed in parallel (mlx: 8).")
    prefill_step_size = _int("Prefill step size", 1, 1_000_000, help_text="Tokens per prefill step (mlx: 2048).")
    prompt_cache_size = _int("Prompt cache size", 0, 100_000, help_text="Distinct KV caches kept (mlx: 10).")
    prompt_cache_bytes = SizeField(
        label="Prompt cache bytes", required=False, help_text="Most memory for KV caches, e.g. 8GB (mlx: no limit)."
    )
    kv_bits = forms.TypedChoiceField(
        label="KV bits",
        choices=[("", "Full precision (mlx default)"), *KV_BITS],
        coerce=int,
        empty_value=None,
        required=False,
        help_text="Quantize the KV cache; saves memory, serves one request at a time.",
    )
    kv_group_size = forms.TypedChoiceField(
        label="KV group size",
        choices=[("", "mlx default (64)"), *KV_GROUP_SIZES],
        coerce=int,
        empty_value=None,
        required=False,
    )
    quantized_kv_start = _int(
        "Quantized KV start", 0, 1_000_000_000, help_text="Token position where KV quantization starts (mlx: 5000)."
    )
    max_num_seqs = _int(
        "Most sequences at once", 1, 4096, help_text="Requests decoded together; more wait (mlx-vlm: no limit)."
    )
    vision_cache_size = _int("Vision cache size", 0, 100_000, help_text="Image features kept for reuse (mlx-vlm: 20).")
    start_timeout = _int("Start timeout (seconds)", 10, 86_400)
    idle_minutes = _int(
        "Stop after N minutes idle",
        1,
        525_600,
        help_text="Stopped once no /v1/ request used it this long; blank: never.",
    )
    chat_template_args = forms.CharField(
        label="Chat template arguments",
        required=False,
        max_length=10_000,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": '{"enable_thinking": false}'}),
        help_text="A JSON object passed to the chat template.",
    )

    class Meta:
        model = ServerProfile
        fields = [
            "name",
            "aliases",
            "description",
            "node",
            "model",
            "engine",
            "kind",
            "host",
            "port",
            "auto_start",
            "start_timeout",
            "on_demand",
            "idle_minutes",
            "keep_running",
            "adapter_path",
            "draft_model",
            "num_draft_tokens",
            "trust_remote_code",
            "log_level",
            "chat_template",
            "use_default_chat_template",
            "chat_template_args",
            "temperature",
            "top_p",
            "top_k",
            "min_p",
            "max_tokens",
            "decode_concurrency",
            "prompt_concurrency",
            "prefill_step_size",
            "prompt_cache_size",
            "prompt_cache_bytes",
            "kv_bits",
            "kv_group_size",
            "quantized_kv_start",
            "max_num_seqs",
            "vision_cache_size",
            "allowed_origins",
        ]
        labels = {
            "adapter_path": "Adapter path",
            "draft_model": "Draft model",
            "trust_remote_code": "Trust remote code",
            "use_default_chat_template": "Use the default chat template",
            "allowed_origins": "Allowed origins",
            "auto_start": "Start with the supervisor",
            "on_demand": "Start on first request",
            "keep_running": "Keep running",
        }
        help_texts = {
            "model": "A Hugging Face repo id (mlx-community/Qwen3-4B-4bit), or the absolute path of a model folder "
            "in an allowed model folder (Models page).",
            "auto_start": AUTO_START_HELP,
            "host": "An IP address or localhost; 0.0.0.0 makes the server reachable from the network.",
            "adapter_path": "Absolute path to a folder of trained adapter weights.",
            "draft_model": "A smaller model for speculative decoding (repo id or absolute path).",
            "chat_template": "A Jinja chat template replacing the tokenizer's own.",
            "allowed_origins": "Comma-separated origins for CORS, e.g. http://localhost:3000; blank means any (*).",
        }
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2}),
            "chat_template": forms.Textarea(attrs={"rows": 3}),
            "model": forms.TextInput(attrs={"list": "cached-models", "autocomplete": "off", "spellcheck": "false"}),
        }

    def __init__(self, *args: Any, user: User | None = None, **kwargs: Any) -> None:
        """`user` is who saves: without the "use unsafe server options" permission, the form
        offers only loopback hosts, allowed model paths and no remote code, and refuses them on save."""
        super().__init__(*args, **kwargs)
        self.any_path = user is None or user_may_use_unsafe_options(user=user)
        self.offer_trust_remote_code = True
        self.unsafe_who = UNSAFE_WHO
        if not self.any_path:
            host_help = f"127.0.0.1, localhost or ::1. {UNSAFE_WHO} serve on an address reachable from the network."
            self.fields["host"].help_text = host_help
            # Not offered (the template shows who can instead), and refused in clean() if posted anyway;
            # a profile that already has it shows it, so its owner can turn it off.
            self.offer_trust_remote_code = bool(self.instance.trust_remote_code)
        required = {
            "name": "Give the profile a name.",
            "model": "Enter a model: a Hugging Face repo id or an absolute path to a model folder.",
            "host": "Enter a host, such as 127.0.0.1.",
        }
        for name, message in required.items():
            self.fields[name].error_messages["required"] = message
        self._describe_start_timeout()
        for name in ("engine", "kind"):  # left out (a script's POST, an older form): today's engine, chat
            self.fields[name].required = False
        engine = self.data.get("engine") if self.is_bound else self.initial.get("engine", self.instance.engine)
        self.engine_value = engine if engine in Engine.values else Engine.MLX_LM
        # The select's options are node names (the initial value would otherwise be the row's id).
        if self.instance.pk:
            self.initial["node"] = self.instance.node.name
        elif self.initial.get("node") is None:
            self.initial["node"] = this_node().name
        self.several_nodes = Node.objects.count() > 1
        args_initial = self.initial.get("chat_template_args")
        if isinstance(args_initial, dict):
            self.initial["chat_template_args"] = json.dumps(args_initial) if args_initial else ""

    def _describe_start_timeout(self) -> None:
        """Say what a blank start timeout means, in seconds for this profile's model when known."""
        base = settings.MLXM_START_TIMEOUT
        field = self.fields["start_timeout"]
        rule = f"Blank: {base:g} s plus {START_SECONDS_PER_GIB:g} s per GiB of the model's weights"
        model = str(self.initial.get("model") or getattr(self.instance, "model", "") or "")
        if model:
            seconds = default_start_timeout(model, base=base)
            field.widget.attrs["placeholder"] = str(seconds)
            rule += f" ({seconds} s for this model)"
        field.help_text = f"Time to load the model and answer one token before the start counts as failed. {rule}."

    def _others(self) -> Any:
        return ServerProfile.objects.exclude(pk=self.instance.pk) if self.instance.pk else ServerProfile.objects.all()

    def _names_of_others(self) -> dict[str, str]:
        """Every name and alias of the other profiles, lowercased, to the profile that has it."""
        taken: dict[str, str] = {}
        for other in self._others().only("name", "aliases"):
            for name in [other.name, *other.alias_list]:
                taken.setdefault(name.lower(), other.name)
        return taken

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the profile a name.")
        clash = self._names_of_others().get(name.lower())
        if clash and clash.lower() == name.lower():
            raise forms.ValidationError(f"A profile named “{clash}” already exists; names must differ (ignoring case).")
        if clash:
            raise forms.ValidationError(f"The profile “{clash}” already answers to “{name}” (an alias).")
        return name

    def clean_aliases(self) -> str:
        aliases = split_aliases(self.cleaned_data.get("aliases") or "")
        taken = self._names_of_others()
        for alias in aliases:
            if len(alias) > 100 or any(ch.isspace() for ch in alias):
                raise forms.ValidationError(f"“{alias[:100]}” is not a usable name: no spaces, at most 100 characters.")
            if clash := taken.get(alias.lower()):
                raise forms.ValidationError(f"The profile “{clash}” already answers to “{alias}”.")
        return ", ".join(aliases)

    def clean(self) -> dict[str, Any]:
        data = self._clean_options()
        self._clean_engine(data)
        name = (data.get("name") or "").lower()
        if name and name in {alias.lower() for alias in split_aliases(data.get("aliases") or "")}:
            self.add_error("aliases", "The profile's own name need not be listed as an alias.")
        return data

    def _clean_engine(self, data: dict[str, Any]) -> None:
        """The kind must be one the engine serves; the other engine's options are cleared (hidden in
        the form, and never passed to this server)."""
        engine = Engine(data.get("engine") or Engine.MLX_LM)
        kind = data.get("kind") or Kind.CHAT
        data["engine"], data["kind"] = engine, kind
        if kind not in ENGINE_KINDS[engine] and "kind" not in self.errors:
            self.add_error(
                "kind", f"{engine.label} serves text chat only; choose mlx-vlm for {Kind(kind).label.lower()}."
            )
        for other, fields in ENGINE_ONLY.items():
            if other == engine:
                continue
            for name in fields:
                self.errors.pop(name, None)
                data[name] = EMPTY.get(name)

    def clean_model(self) -> str:
        model: str = self.cleaned_data["model"].strip()
        if problem := model_shape_problem(model, any_path=self.any_path):
            raise forms.ValidationError(problem)
        return model

    def clean_host(self) -> str:
        host: str = self.cleaned_data["host"].strip()
        if host.lower() == "localhost":
            return "localhost"
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            raise forms.ValidationError(
                "The host must be an IP address (127.0.0.1, 0.0.0.0, ::1) or localhost."
            ) from None

    def clean_port(self) -> int:
        port: int = self.cleaned_data["port"]
        clash = self._others().filter(port=port).first()
        if clash:
            raise forms.ValidationError(f"Port {port} is already used by the profile “{clash.name}”.")
        return port

    def clean_adapter_path(self) -> str:
        path: str = self.cleaned_data["adapter_path"].strip()
        if path and not self.any_path and not is_allowed_path(path):
            raise forms.ValidationError(NOT_ALLOWED)
        if path and (problem := folder_problem(path, what="adapter path")):
            raise forms.ValidationError(problem)
        return path

    def clean_draft_model(self) -> str:
        model: str = self.cleaned_data["draft_model"].strip()
        if model and (problem := model_shape_problem(model, any_path=self.any_path)):
            raise forms.ValidationError(problem)
        return model

    def clean_top_p(self) -> float | None:
        top_p: float | None = self.cleaned_data["top_p"]
        if top_p is not None and not 0 < top_p <= 1:
            raise forms.ValidationError("Top-p must be more than 0 and at most 1.")
        return top_p

    def clean_chat_template_args(self) -> dict[str, Any]:
        text: str = self.cleaned_data["chat_template_args"].strip()
        if not text:
            return {}
        try:
            value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
        except NonFiniteNumber as exc:
            raise forms.ValidationError(
                f"{exc} is not a number JSON allows (nor the database); write a number or a string instead."
            ) from None
        except ValueError as exc:
            raise forms.ValidationError(f"This is not valid JSON ({exc}).") from None
        except RecursionError:
            raise forms.ValidationError("This JSON is nested too deeply.") from None
        if not isinstance(value, dict):
            raise forms.ValidationError(
                'Chat template arguments must be a JSON object, like {"enable_thinking": false}.'
            )
        return value

    def clean_allowed_origins(self) -> str:
        origins = split_origins(self.cleaned_data["allowed_origins"])
        bad = [origin for origin in origins if origin != "*" and not ORIGIN_RE.match(origin)]
        if bad:
            raise forms.ValidationError(
                f"Not an origin: {bad[0]}. Write each as scheme://host[:port], e.g. http://localhost:3000, or *."
            )
        return ", ".join(origins)

    def _clean_options(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        if not self.any_path:
            for name, problem in profile_unsafe_problems(fields=data).items():
                if name not in self.errors:
                    self.add_error(name, problem)
        if data.get("draft_model") and data.get("num_draft_tokens") is None and "num_draft_tokens" not in self.errors:
            self.add_error("num_draft_tokens", "A draft model needs the number of draft tokens (3 is a good start).")
        if (
            data.get("num_draft_tokens") is not None
            and not data.get("draft_model")
            and "draft_model" not in self.errors
        ):
            self.add_error("num_draft_tokens", "Draft tokens are only used with a draft model; set one or clear this.")
        if data.get("kv_bits") is None and "kv_bits" not in self.errors:
            for name in ("kv_group_size", "quantized_kv_start"):
                if data.get(name) is not None:
                    self.add_error(name, "Only used when KV bits is set; choose KV bits or clear this.")
        return data


def name_from_model(model: str) -> str:
    """A profile name to suggest for `model`: its last path part in lower case ("qwen3-4b-4bit"),
    with "-2", "-3" ... when a profile already has that name."""
    base = model.strip().rstrip("/").rsplit("/", 1)[-1].lower()[:90]
    if not base:
        return ""
    taken = {
        name.lower() for name in ServerProfile.objects.filter(name__istartswith=base).values_list("name", flat=True)
    }
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    return candidate
