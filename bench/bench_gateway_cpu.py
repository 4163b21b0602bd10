"""The gateway's own CPU per small chat completion, in-process and with a canned upstream (no model,
no network: bench/gateway_cpu_probe.py): the process's CPU time around rounds of requests sent to
`mlxmanager.asgi.application`, read once each round's usage records are written, minus the same
client against a bare ASGI app answering the same bytes, in interleaved rounds."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import Result, summarize
from testing.net import free_port
from testing.stack import REPO, Stack, wait_for_http

ROUNDS = 7
REQUESTS = 100


def run() -> list[Result]:
    from testing.tinymodel import make_tiny_model

    with tempfile.TemporaryDirectory(prefix="mlxm-gateway-cpu-") as folder:
        root = Path(folder)
        model = make_tiny_model(root / "tiny-llama")  # its tokenizer: the gateway reads it (prompt fit)
        stack = Stack(root / "stack")  # its environment and database only: nothing is served
        stack.data_dir.mkdir(parents=True)
        stack.manage("migrate", "--noinput")
        port = free_port()
        canned = subprocess.Popen([sys.executable, "-m", "bench.gateway_cpu_probe", "upstream", str(port)], cwd=REPO)
        try:
            wait_for_http(f"http://127.0.0.1:{port}/health")
            probe = subprocess.run(
                [sys.executable, "-m", "bench.gateway_cpu_probe", "measure", str(port), str(model), str(ROUNDS), str(REQUESTS)],
                cwd=REPO, env=stack.env, capture_output=True, text=True, check=False, timeout=1200,
            )  # fmt: skip
        finally:
            canned.terminate()
            canned.wait()
    if probe.returncode != 0:
        raise RuntimeError(f"the CPU probe failed: {probe.stderr[-2000:]}")
    figures = json.loads(probe.stdout.strip().splitlines()[-1])
    baseline = figures["baseline"]
    gateway = [w - b for w, b in zip(figures["with_records"], baseline, strict=True)]
    answers = [a - b for a, b in zip(figures["answers_only"], baseline, strict=True)]
    answers.sort()
    return [
        summarize(
            "gateway: CPU per small completion, in-process, canned upstream",
            "ms",
            gateway,
            baseline="the same client against a bare ASGI app (subtracted)",
            baseline_samples=baseline,
            goal=1.5,
            note=(
                f"{ROUNDS} rounds of {REQUESTS}, until their usage records were written; read when the "
                f"answers were in (records written meanwhile included): median {answers[len(answers) // 2]:.3g} ms"
            ),
        )
    ]
