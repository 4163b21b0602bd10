"""A small Hugging Face Hub stand-in on 127.0.0.1 that the real `huggingface_hub` client talks to.

It serves what the client asks for (read from huggingface_hub's own source): model search
(`/api/models`), model info with file sizes (`/api/models/{repo}[/revision/{rev}]`), the tree
listing (`/api/models/{repo}/tree/{rev}`) and file downloads (`/{repo}/resolve/{rev}/{path}`, HEAD
and GET, with ETag, X-Repo-Commit, Content-Length and Range). Repos are built from real files or
from "virtual" files: a declared size and deterministic bytes generated on the fly, so a
multi-gigabyte model costs nothing until someone downloads it.

Test switches: `bytes_per_second` (serve slowly), `drop_once` (cut the connection halfway through
the next download of a file, once), `down` (every request answers 500).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

CHUNK = 64 * 1024


@dataclass
class HubFile:
    path: str
    size: int
    data: bytes | None = None  # None: virtual, bytes made by `read`

    @property
    def seed(self) -> bytes:
        return hashlib.sha256(self.path.encode()).digest() * 128  # 4096 bytes

    def read(self, offset: int, length: int) -> bytes:
        if self.data is not None:
            return self.data[offset : offset + length]
        seed = self.seed
        start = offset % len(seed)
        out = bytearray()
        while len(out) < length:
            out += seed[start:]
            start = 0
        return bytes(out[:length])

    def content(self) -> bytes:
        return self.read(0, self.size)

    @property
    def is_lfs(self) -> bool:
        return self.path.endswith(".safetensors") or self.size > 1024 * 1024

    @property
    def git_oid(self) -> str:
        return hashlib.sha1(
            f"{self.path}:{self.size}:{hashlib.sha256(self.read(0, 4096)).hexdigest()}".encode()
        ).hexdigest()

    @property
    def sha256(self) -> str:
        if self.data is not None:
            return hashlib.sha256(self.data).hexdigest()
        return hashlib.sha256(f"virtual:{self.path}:{self.size}".encode()).hexdigest()

    @property
    def etag(self) -> str:
        return self.sha256 if self.is_lfs else self.git_oid


@dataclass
class HubRepo:
    repo_id: str
    files: dict[str, HubFile]
    downloads: int = 0
    likes: int = 0
    last_modified: datetime = field(default_factory=lambda: datetime(2025, 1, 1, tzinfo=UTC))
    parameters: dict[str, int] | None = None  # safetensors parameter counts by dtype
    tags: list[str] = field(default_factory=lambda: ["mlx", "safetensors"])
    token: str | None = None  # a gated repo: answered only with `Authorization: Bearer <token>`

    @property
    def sha(self) -> str:
        digest = hashlib.sha1(self.repo_id.encode())
        for name in sorted(self.files):
            digest.update(f"{name}:{self.files[name].etag}".encode())
        return digest.hexdigest()

    def summary(self, *, with_sizes: bool) -> dict[str, Any]:
        siblings = []
        for hub_file in self.files.values():
            sibling: dict[str, Any] = {"rfilename": hub_file.path}
            if with_sizes:
                sibling.update(size=hub_file.size, blobId=hub_file.git_oid)
                if hub_file.is_lfs:
                    sibling["lfs"] = {"size": hub_file.size, "sha256": hub_file.sha256, "pointerSize": 134}
            siblings.append(sibling)
        info: dict[str, Any] = {
            "_id": self.sha[:24],
            "id": self.repo_id,
            "modelId": self.repo_id,
            "author": self.repo_id.split("/")[0],
            "sha": self.sha,
            "lastModified": self.last_modified.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "createdAt": self.last_modified.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "private": False,
            "gated": "manual" if self.token else False,
            "disabled": False,
            "downloads": self.downloads,
            "likes": self.likes,
            "tags": self.tags,
            "library_name": "mlx",
            "pipeline_tag": "text-generation",
            "siblings": siblings,
        }
        if self.parameters:
            info["safetensors"] = {"parameters": self.parameters, "total": sum(self.parameters.values())}
        return info


def repo_from_folder(repo_id: str, folder: Path, **kwargs: Any) -> HubRepo:
    files = {
        p.relative_to(folder).as_posix(): HubFile(p.relative_to(folder).as_posix(), p.stat().st_size, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
    return HubRepo(repo_id, files, **kwargs)


class HubStub:
    """The stand-in's state and switches. `start()` serves it in a daemon thread."""

    def __init__(self, port: int = 0) -> None:
        self.repos: dict[str, HubRepo] = {}
        self.bytes_per_second: float | None = None
        self.drop_once: set[tuple[str, str]] = set()
        self.down = False
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, Range
        self.authorizations: list[str | None] = []  # the Authorization header of every request
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="hubstub", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> HubStub:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, repo: HubRepo) -> HubRepo:
        with self.lock:
            self.repos[repo.repo_id] = repo
        return repo

    def file_requests(self, repo_id: str, path: str) -> list[str | None]:
        """The Range header (or None) of every GET of one file, in order."""
        suffix = f"/{repo_id}/resolve/"
        return [
            rng for method, url, rng in self.requests if method == "GET" and suffix in url and url.endswith("/" + path)
        ]

    def reset(self) -> None:
        with self.lock:
            self.bytes_per_second = None
            self.drop_once = set()
            self.down = False
            self.requests = []
            self.authorizations = []

    # --- what the handler asks ---

    def search(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        search = (query.get("search") or [""])[0].lower()
        author = (query.get("author") or [""])[0].lower()
        sort = (query.get("sort") or [""])[0]
        limit = int((query.get("limit") or ["1000"])[0])
        found = [
            repo
            for repo in self.repos.values()
            if search in repo.repo_id.lower() and (not author or repo.repo_id.lower().split("/")[0] == author)
        ]
        keys = {
            "downloads": lambda r: r.downloads,
            "likes": lambda r: r.likes,
            "lastModified": lambda r: r.last_modified,
            "createdAt": lambda r: r.last_modified,
        }
        if sort in keys:
            found.sort(key=keys[sort], reverse=True)
        return [repo.summary(with_sizes=False) for repo in found[:limit]]


RESOLVE = re.compile(r"^/(?:models/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
INFO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/]+))?$")
TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")


def _handler_for(hub: HubStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_HEAD(self) -> None:
            self.route(head=True)

        def do_GET(self) -> None:
            self.route(head=False)

        def send_json(self, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
            body = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def not_found(self, code: str, message: str) -> None:
            self.send_json({"error": message}, 404, {"X-Error-Code": code, "X-Error-Message": message})

        def route(self, *, head: bool) -> None:
            parts = urlsplit(self.path)
            path = unquote(parts.path)
            query = parse_qs(parts.query)
            with hub.lock:
                hub.requests.append((self.command, self.path, self.headers.get("Range")))
                hub.authorizations.append(self.headers.get("Authorization"))
            if hub.down:
                self.send_json({"error": "Internal Error - the stand-in is down"}, 500)
                return
            if path == "/api/models":
                self.send_json(hub.search(query))
                return
            if match := TREE.match(path):
                repo = self.repo(match["repo"], match["rev"])
                if repo is not None:
                    self.send_json(
                        [
                            {
                                "type": "file",
                                "oid": f.git_oid,
                                "size": f.size,
                                "path": f.path,
                                **({"lfs": {"oid": f.sha256, "size": f.size, "pointerSize": 134}} if f.is_lfs else {}),
                            }
                            for f in repo.files.values()
                        ]
                    )
                return
            if match := INFO.match(path):
                repo = self.repo(match["repo"], match["rev"])
                if repo is not None:
                    self.send_json(repo.summary(with_sizes="blobs" in query))
                return
            if match := RESOLVE.match(path):
                self.resolve(match["repo"], match["rev"], match["path"], head=head)
                return
            self.not_found("NotFound", f"No route for {path}")

        def repo(self, repo_id: str, revision: str | None) -> HubRepo | None:
            repo = hub.repos.get(repo_id)
            if repo is None:
                self.not_found("RepoNotFound", "Repository not found")
                return None
            if repo.token and self.headers.get("Authorization") != f"Bearer {repo.token}":
                # What the Hub answers for a gated repo without a token.
                message = f"Access to model {repo_id} is restricted. You must have access to it and be authenticated."
                self.send_json({"error": message}, 401, {"X-Error-Code": "GatedRepo", "X-Error-Message": message})
                return None
            if revision not in (None, "main", repo.sha):
                self.not_found("RevisionNotFound", "Invalid rev id")
                return None
            return repo

        def resolve(self, repo_id: str, revision: str, file_path: str, *, head: bool) -> None:
            repo = self.repo(repo_id, revision)
            if repo is None:
                return
            hub_file = repo.files.get(file_path)
            if hub_file is None:
                self.send_json(
                    {"error": "Entry not found"},
                    404,
                    {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": repo.sha},
                )
                return
            start, end = 0, hub_file.size - 1
            range_header = self.headers.get("Range")
            status = 200
            if range_header and (m := re.match(r"bytes=(\d+)-(\d*)$", range_header.strip())):
                start = int(m[1])
                end = int(m[2]) if m[2] else hub_file.size - 1
                status = 206
            length = max(0, end - start + 1)
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(length))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", f'"{hub_file.etag}"')
            self.send_header("X-Repo-Commit", repo.sha)
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{hub_file.size}")
            self.end_headers()
            if head:
                return
            key = (repo_id, file_path)
            with hub.lock:
                drop = key in hub.drop_once
                hub.drop_once.discard(key)
            drop_at = start + length // 2 if drop else None
            self.stream(hub_file, start, length, drop_at)

        def stream(self, hub_file: HubFile, start: int, length: int, drop_at: int | None) -> None:
            sent = 0
            began = time.monotonic()
            rate = hub.bytes_per_second
            # Slow serving writes about ten pieces a second, so that even a small file arrives
            # gradually instead of in one write followed by a pause.
            chunk = max(256, min(CHUNK, int(rate / 10))) if rate else CHUNK
            while sent < length:
                size = min(chunk, length - sent)
                if drop_at is not None and start + sent + size > drop_at:
                    size = drop_at - (start + sent)
                    if size > 0:
                        self.wfile.write(hub_file.read(start + sent, size))
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)  # cut off mid-body: the client sees a broken transfer
                    return
                try:
                    self.wfile.write(hub_file.read(start + sent, size))
                except (BrokenPipeError, ConnectionResetError):
                    return
                sent += size
                rate = hub.bytes_per_second
                if rate:
                    ahead = sent / rate - (time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(ahead)

    return Handler


def standard_repos(tiny_model: Path) -> list[HubRepo]:
    """The repos most tests use: a real tiny model, models with big declared sizes for the size
    and "fits" badges, and a medium one whose download takes long enough to watch."""
    gib = 1024**3
    readme = b"---\nlibrary_name: mlx\n---\n# Tiny Llama\n\nA tiny llama model for tests, made with random weights.\n\nMore text.\n"
    tiny = repo_from_folder(
        "mlx-community/Tiny-Llama-4bit", tiny_model, downloads=500, likes=7, parameters={"F32": 4_000}
    )
    tiny.files["README.md"] = HubFile("README.md", len(readme), readme)
    tiny.last_modified = datetime(2025, 3, 1, tzinfo=UTC)
    config = json.dumps(
        {"model_type": "qwen3", "max_position_embeddings": 40960, "quantization": {"bits": 4, "group_size": 64}}
    ).encode()

    def virtual(repo_id: str, size: int, **kwargs: Any) -> HubRepo:
        return HubRepo(
            repo_id,
            {
                "config.json": HubFile("config.json", len(config), config),
                "model.safetensors": HubFile("model.safetensors", size),
            },
            **kwargs,
        )

    return [
        tiny,
        virtual(
            "mlx-community/Qwen3-4B-4bit",
            int(2.1 * gib),
            downloads=90_000,
            likes=40,
            parameters={"BF16": 300_000_000, "U32": 500_000_000},
            last_modified=datetime(2025, 5, 1, tzinfo=UTC),
        ),
        virtual(
            "mlx-community/Giant-Model-1T-8bit",
            200 * 1024 * gib,
            downloads=1_000,
            likes=900,
            last_modified=datetime(2024, 6, 1, tzinfo=UTC),
        ),
        virtual("mlx-community/Medium-Model-8bit", 6 * 1024 * 1024, downloads=20, likes=1),
        virtual("someone-else/Qwen3-4B-mirror", int(2.1 * gib), downloads=5, likes=0),
    ]
