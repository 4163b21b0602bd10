"""The README's examples run as written, against the live app (gunicorn, as `make run` serves it),
a real supervisor and a real `mlx_lm.server` on the tiny model.

Every fenced block of README.md is either run here or listed in NOT_RUNNABLE with the reason: a
new block fails `test_every_readme_block_is_run_or_says_why_not` until it is one or the other.
Placeholders are substituted one way only, as text (PLACEHOLDERS): the README's address
`http://127.0.0.1:8000` becomes the live app's, and the key `mlxm_…` a live key that may manage.
The model is not substituted: the live profile is called `qwen`, the name the README uses.
Python blocks run in the app's .venv (it has the openai and anthropic SDKs); shell blocks run in
bash (`-e -o pipefail`) from the checkout, with a fresh venv's `pip` first on PATH, as a user's
would be, so `pip install ./mlxm` installs the real package there."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from accounts.models import User
from gateway.models import UsageRecord
from gateway.services import key_create
from gateway.tests.conftest import start_profile
from testing.supervisor import BASE_DIR, wait_for
from testing.venv import fresh_venv
from testing.web import WebServer

README = BASE_DIR / "README.md"
README_URL, README_KEY, README_MODEL = "http://127.0.0.1:8000", "mlxm_…", "qwen"
README_VISION, README_EMBEDDINGS, README_IMAGE = "qwen-vl", "bge", "cat.png"  # mlx_vlm profiles, and a picture
MAX_LINES = 150

# A block that starts with a key is not run here, for the reason given.
NOT_RUNNABLE = {
    "make run": "`make run` serves in the foreground until Ctrl-C and `make test` is the whole suite; "
    "the live app here is what `make run` starts (gunicorn + runsupervisor), and the suite runs in CI",
}
RUNNERS: dict[str, Callable[[str], list[str]]] = {
    "python": lambda code: [sys.executable, "-c", code],
    "sh": lambda code: ["bash", "-e", "-o", "pipefail", "-c", code],
}


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int  # where it starts in README.md, for the messages

    @property
    def reason_not_run(self) -> str | None:
        return next((why for start, why in NOT_RUNNABLE.items() if self.code.startswith(start)), None)


def readme_blocks() -> list[Block]:
    """Every fenced block, indented ones (inside a list item) included, dedented."""
    text = README.read_text()
    fence = re.compile(r"^(?P<indent>[ ]*)```(?P<language>\S*)\n(?P<code>.*?)^(?P=indent)```[ ]*$", re.S | re.M)
    return [
        Block(match["language"], textwrap.dedent(match["code"]), text.count("\n", 0, match.start()) + 1)
        for match in fence.finditer(text)
    ]


def runnable_blocks() -> list[Block]:
    return [block for block in readme_blocks() if block.reason_not_run is None]


def test_every_readme_block_is_run_or_says_why_not() -> None:
    blocks = readme_blocks()
    assert len(blocks) >= 4, "the fence pattern no longer finds the README's blocks"
    unknown = [f"README.md:{b.line}: ```{b.language}" for b in runnable_blocks() if b.language not in RUNNERS]
    assert not unknown, "Run these here (RUNNERS) or list them in NOT_RUNNABLE with the reason:\n" + "\n".join(unknown)
    stale = [start for start in NOT_RUNNABLE if not any(b.code.startswith(start) for b in blocks)]
    assert not stale, f"NOT_RUNNABLE names blocks the README no longer has: {stale}"
    assert README_URL in README.read_text() and README_KEY in README.read_text()


def test_the_readme_stays_short() -> None:
    lines = len(README.read_text().splitlines())
    assert lines <= MAX_LINES, f"README.md has {lines} lines: it is for users; the rest goes to docs/"


def substituted(code: str, placeholders: dict[str, str]) -> str:
    for placeholder, value in placeholders.items():
        code = code.replace(placeholder, value)
    left = [address for address in ("127.0.0.1:8000", "localhost:8000") if address in code]
    assert not left, f"an address the substitution does not know: {left}"
    return code


@pytest.mark.mlx
def test_the_readme_examples_run_as_written(
    supervisor_process: Any,
    tiny_model: Path,
    tiny_vlm_models: dict[str, Path],
    make_user: Callable[..., User],
    tmp_path: Path,
) -> None:
    from PIL import Image

    supervisor_process.start()
    profile = start_profile(tiny_model, README_MODEL, supervisor_process)
    vision, embeddings = (
        start_profile(tiny_vlm_models[kind], name, supervisor_process, engine="mlx_vlm", kind=kind)
        for kind, name in (("vision", README_VISION), ("embeddings", README_EMBEDDINGS))
    )
    Image.new("RGB", (40, 30), (200, 120, 40)).save(tmp_path / README_IMAGE)  # python blocks run in tmp_path
    admin = make_user("admin@example.com", admin=True)
    placeholders = {README_KEY: key_create(user=admin, name="readme", may_manage=True).secret}
    shell_env = fresh_venv(tmp_path / "venv")
    web = WebServer(tmp_path / "gunicorn.log").start()
    try:
        placeholders[README_URL] = web.url
        for block in runnable_blocks():
            code = substituted(block.code, placeholders)
            ran = subprocess.run(
                RUNNERS[block.language](code),
                cwd=BASE_DIR if block.language == "sh" else tmp_path,
                env=shell_env if block.language == "sh" else None,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert ran.returncode == 0, f"README.md:{block.line} failed:\n{code}\n{ran.stdout}\n{ran.stderr}"
            if "mlxm ps" in code:
                assert re.search(rf"^{README_MODEL}\s+running\s+{profile.port}\b", ran.stdout, re.M), ran.stdout
    finally:
        web.stop()

    def served() -> set[str]:
        return set(UsageRecord.objects.filter(profile=profile, status=200).values_list("api", flat=True))

    wait_for(lambda: served() >= {"chat", "messages"}, timeout=30, what="the gateway to record the README's calls")
    for other, api in ((vision, "chat"), (embeddings, "embeddings")):
        records = UsageRecord.objects.filter(profile=other, status=200, api=api)
        wait_for(records.exists, timeout=30, what=f"the README's call to {other.name}")
    assert not UsageRecord.objects.exclude(status=200).exists()
