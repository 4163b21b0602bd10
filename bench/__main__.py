"""Run every benchmark module and print one table; also write bench/results.json."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import sys
from pathlib import Path

import django

from bench.common import Result

HERE = Path(__file__).resolve().parent


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlxmanager.settings")
    django.setup()
    only = sys.argv[1:]
    results: list[Result] = []
    for module_info in sorted(pkgutil.iter_modules([str(HERE)]), key=lambda m: m.name):
        if not module_info.name.startswith("bench_") or (only and module_info.name not in only):
            continue
        module = importlib.import_module(f"bench.{module_info.name}")
        print(f"running {module_info.name} ...", flush=True)
        results.extend(module.run())
    print_table(results)
    (HERE / "results.json").write_text(json.dumps([r.as_dict() for r in results], indent=2))
    return 0


def print_table(results: list[Result]) -> None:
    header = f"{'figure':<58} {'median':>12} {'p95':>12} {'goal':>12}  result"
    print(header)
    print("-" * len(header))
    for r in results:
        goal = "-" if r.goal is None else f"{r.goal:.3g} {r.unit}"
        verdict = {True: "pass", False: "MISS", None: "info"}[r.passed]
        print(f"{r.figure:<58} {r.median:>9.3g} {r.unit:<2} {r.p95:>9.3g} {r.unit:<2} {goal:>12}  {verdict}")
        if r.note:
            print(f"    {r.note}")


if __name__ == "__main__":
    sys.exit(main())
