from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest

from profiles import ports
from profiles.models import ServerProfile


@pytest.fixture(autouse=True)
def fresh_socket_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees the sockets as they are now, not a scan an earlier test left (the port check
    reuses a scan for a few seconds of typing)."""
    monkeypatch.setattr(ports, "_last_scan", (float("-inf"), []))


@pytest.fixture
def make_profile(db: Any) -> Callable[..., ServerProfile]:
    counter = iter(range(1, 10_000))

    def make(**fields: Any) -> ServerProfile:
        n = next(counter)
        values: dict[str, Any] = {"name": f"profile {n}", "model": "mlx-community/Qwen3-4B-4bit", "port": 20000 + n}
        return ServerProfile.objects.create(**{**values, **fields})

    return make


@pytest.fixture
def listening_socket() -> Iterator[socket.socket]:
    """A real TCP socket listening on a port the OS picked, held by this test process."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


def write_model_folder(folder: Path, config: dict[str, Any], *, generation: dict[str, Any] | None = None) -> Path:
    """A model folder as the form sees it: config.json, a weights file (contents unread) and,
    optionally, generation_config.json. For facts and suggestions only; nothing loads it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"\0" * 16)
    if generation is not None:
        (folder / "generation_config.json").write_text(json.dumps(generation))
    return folder


QWEN3_CONFIG = {"model_type": "qwen3", "max_position_embeddings": 40960, "quantization": {"bits": 4, "group_size": 64}}


@pytest.fixture
def qwen3_folder(tmp_path: Path) -> Path:
    return write_model_folder(
        tmp_path / "Qwen3-4B-4bit", QWEN3_CONFIG, generation={"temperature": 0.6, "top_p": 0.95, "top_k": 20}
    )


@pytest.fixture
def cached_repo(settings: Any, tmp_path: Path) -> str:
    """A model in a Hugging Face cache of this test's own, laid out as huggingface_hub writes it
    (blob, snapshot, ref)."""
    settings.HF_HUB_CACHE = tmp_path / "hub"
    repo_id = "mlx-community/Qwen3-4B-4bit"
    repo = settings.HF_HUB_CACHE / "models--mlx-community--Qwen3-4B-4bit"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, content in (("config.json", json.dumps(QWEN3_CONFIG)), ("model.safetensors", "weights")):
        blob = repo / "blobs" / hashlib.sha256(content.encode()).hexdigest()
        blob.write_text(content)
        link = snapshot / name
        if not link.exists():
            link.symlink_to(os.path.relpath(blob, snapshot))
    return repo_id


class _Captured(Exception):
    pass


def parser_of(main: Callable[[], Any]) -> argparse.ArgumentParser:
    """A server's real argument parser: its `main()` builds it and calls parse_args, which we intercept."""
    captured: dict[str, argparse.ArgumentParser] = {}

    def intercept(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        captured["parser"] = self
        raise _Captured

    with patch.object(argparse.ArgumentParser, "parse_args", intercept), pytest.raises(_Captured):
        main()
    return captured["parser"]
