from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models.functions import Lower

from core.formatting import host_port
from nodes.models import Node
from nodes.selectors import this_node_id


class LogLevel(models.TextChoices):
    DEBUG = "DEBUG", "Debug"
    INFO = "INFO", "Info"
    WARNING = "WARNING", "Warning"
    ERROR = "ERROR", "Error"
    CRITICAL = "CRITICAL", "Critical"


class Engine(models.TextChoices):
    MLX_LM = "mlx_lm", "mlx-lm (text chat)"
    MLX_VLM = "mlx_vlm", "mlx-vlm (vision chat, embeddings, rerank)"


class Kind(models.TextChoices):
    """What the model does, so what the gateway may send it (one model per server)."""

    CHAT = "chat", "Chat"
    VISION = "vision", "Vision chat (text and images)"
    EMBEDDINGS = "embeddings", "Embeddings"
    RERANK = "rerank", "Rerank"


# The kinds each engine serves; mlx-lm serves text chat only.
ENGINE_KINDS = {Engine.MLX_LM: (Kind.CHAT,), Engine.MLX_VLM: (Kind.CHAT, Kind.VISION, Kind.EMBEDDINGS, Kind.RERANK)}


def split_aliases(text: str) -> list[str]:
    """The names in a comma-separated aliases field, stripped, first spelling of each kept."""
    seen: set[str] = set()
    names = []
    for raw in text.split(","):
        name = raw.strip()
        if name and name.lower() not in seen:
            seen.add(name.lower())
            names.append(name)
    return names


class ServerProfile(models.Model):
    """The recipe for one model server (`mlx_lm.server`, or `mlx_vlm.server` as its `engine` says):
    which model, what kind, where, and with which options.

    Option fields are blank/null when the user leaves the server's own default in place; the argv
    builder (`profiles.argv.build_server_argv`) passes only what is set and differs from it.
    """

    name = models.CharField(max_length=100, unique=True)
    aliases = models.CharField(
        "also answers to",
        max_length=500,
        blank=True,
        help_text="Other names clients may send as `model` to /v1/, comma-separated (e.g. gpt-4o, qwen).",
    )
    description = models.TextField(blank=True)
    node = models.ForeignKey(
        Node,
        on_delete=models.PROTECT,
        default=this_node_id,
        related_name="profiles",
        help_text="The machine whose supervisor runs this server (and whose disk holds the model).",
    )
    model = models.CharField(
        max_length=500, help_text="A Hugging Face repo id (mlx-community/Qwen3-4B-4bit) or an absolute path."
    )
    engine = models.CharField(
        max_length=10,
        choices=Engine.choices,
        default=Engine.MLX_LM,
        help_text="The model server program: mlx_lm.server, or mlx_vlm.server for vision, embeddings and rerank.",
    )
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.CHAT)
    host = models.CharField(max_length=255, default="127.0.0.1")
    port = models.PositiveIntegerField(unique=True, validators=[MinValueValidator(1024), MaxValueValidator(65535)])

    adapter_path = models.CharField(max_length=500, blank=True)
    draft_model = models.CharField(max_length=500, blank=True)
    num_draft_tokens = models.PositiveIntegerField(null=True, blank=True)
    trust_remote_code = models.BooleanField(default=False)
    log_level = models.CharField(max_length=10, choices=LogLevel.choices, default=LogLevel.INFO)
    chat_template = models.TextField(blank=True)
    use_default_chat_template = models.BooleanField(default=False)
    temperature = models.FloatField(null=True, blank=True)
    top_p = models.FloatField(null=True, blank=True)
    top_k = models.PositiveIntegerField(null=True, blank=True)
    min_p = models.FloatField(null=True, blank=True)
    max_tokens = models.PositiveIntegerField(null=True, blank=True)
    chat_template_args = models.JSONField(default=dict, blank=True)
    decode_concurrency = models.PositiveIntegerField(null=True, blank=True)
    prompt_concurrency = models.PositiveIntegerField(null=True, blank=True)
    prefill_step_size = models.PositiveIntegerField(null=True, blank=True)
    prompt_cache_size = models.PositiveIntegerField(null=True, blank=True)
    prompt_cache_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    kv_bits = models.PositiveSmallIntegerField(null=True, blank=True)
    kv_group_size = models.PositiveIntegerField(null=True, blank=True)
    quantized_kv_start = models.PositiveIntegerField(null=True, blank=True)
    max_num_seqs = models.PositiveIntegerField(null=True, blank=True)  # mlx-vlm only
    vision_cache_size = models.PositiveIntegerField(null=True, blank=True)  # mlx-vlm only
    allowed_origins = models.CharField(max_length=1000, blank=True, help_text="Comma-separated; blank means any (*).")

    auto_start = models.BooleanField(default=False, help_text="Start this server whenever the supervisor starts.")
    start_timeout = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(10), MaxValueValidator(86_400)],
        help_text="Seconds the server has to load the model and answer; blank: scaled by the model's size.",
    )
    on_demand = models.BooleanField(
        "start on first request",
        default=False,
        help_text="A request through /v1/ for this model starts its server and waits until it answers.",
    )
    idle_minutes = models.PositiveIntegerField(
        "stop after N minutes idle",
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(525_600)],
        help_text="Stopped once no /v1/ request has used it for this long; blank: never.",
    )
    keep_running = models.BooleanField(
        default=False, help_text="Never stopped to make room for another model that starts on request."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_profiles",
        help_text="May edit, delete, stop and restart it; an administrator can hand it to someone else.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(Lower("name"), name="profile_name_ci_unique")]
        permissions = [
            ("manage_any_profile", "Can edit and delete every profile"),
            ("use_unsafe_options", "Can use unsafe server options (remote code, network host, any path)"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def alias_list(self) -> list[str]:
        return split_aliases(self.aliases)

    @property
    def address(self) -> str:
        return host_port(self.host, self.port)
