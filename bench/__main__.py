"""Run every benchmark module (or those named: `python -m bench bench_dashboard`; a short name runs
every module it begins: `python -m bench gateway` runs bench_gateway*, as `make bench BENCH=gateway`),
print one table of figures beside their same-run baselines, and write bench/results.json."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import sys
from pathlib import Path

import django

from bench.common import Result, close_shared_stack

HERE = Path(__file__).resolve().parent


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlxmanager.settings")
    django.setup()
    only = sys.argv[1:]
    results: list[Result] = []
    try:
        for module_info in sorted(pkgutil.iter_modules([str(HERE)]), key=lambda m: m.name):
            if not module_info.name.startswith("bench_") or (only and not _chosen(module_info.name, only)):
                continue
            module = importlib.import_module(f"bench.{module_info.name}")
            print(f"running {module_info.name} ...", flush=True)
            results.extend(module.run())
    finally:
        close_shared_stack()
    print_table(results)
    (HERE / "results.json").write_text(json.dumps([r.as_dict() for r in results], indent=2) + "\n")
    return 0


def _chosen(name: str, only: list[str]) -> bool:
    """A module's whole name chooses it alone; a short one (`gateway`) every module it begins."""
    return any(
        name == wanted or (not wanted.startswith("bench_") and name.startswith(f"bench_{wanted}")) for wanted in only
    )


def _figure(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{value:.3g} {unit}"


def print_table(results: list[Result]) -> None:
    header = f"{'figure':<62} {'median':>10} {'p95':>10} {'baseline median':>16} {'p95':>10} {'goal':>9}  result"
    print(header)
    print("-" * len(header))
    for r in results:
        verdict = {True: "pass", False: "MISS", None: "info"}[r.passed]
        print(
            f"{r.figure:<62} {_figure(r.median, r.unit):>10} {_figure(r.p95, r.unit):>10} "
            f"{_figure(r.baseline_median, r.unit):>16} {_figure(r.baseline_p95, r.unit):>10} "
            f"{_figure(r.goal, r.unit):>9}  {verdict}"
        )
        print(f"    n={r.count}; baseline: {r.baseline}")
        if "spread" in r.extra:
            spread = r.extra["spread"]
            print(f"    spread of the differences: p5 {spread['p5']:.3g} {r.unit}, p95 {spread['p95']:.3g} {r.unit}")
        if r.note:
            print(f"    {r.note}")


if __name__ == "__main__":
    sys.exit(main())
