"""Dispatch of ``geoloc bench AREA``: runs ``bench/<area>.py`` of the source checkout.

Benchmarks print tables and write ``bench_out/<area>.json``; they never assert timings.
"""
from __future__ import annotations

import importlib
import sys
import time
import traceback
from pathlib import Path

AREAS = ("io", "bev", "objects", "fusion", "nodes", "faults", "odometry")


def _bench_root() -> Path:
    root = Path(__file__).resolve().parents[1]
    if not (root / "bench" / "common.py").is_file():
        raise FileNotFoundError("the benchmarks live in the source checkout (bench/); run from a clone")
    return root


def run_benchmarks(area: str, out_dir: Path, quick: bool = False) -> int:
    """Run one area or all; returns a shell exit code (1 when an area failed to run)."""
    root = _bench_root()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    areas = AREAS if area == "all" else (area,)
    failed = []
    for a in areas:
        try:
            mod = importlib.import_module(f"bench.{a}")
        except ModuleNotFoundError as e:
            print(f"[bench {a}] not available: {e}")
            failed.append(a)
            continue
        print(f"\n===== bench {a} {'(quick)' if quick else ''} =====", flush=True)
        t0 = time.perf_counter()
        try:
            mod.run(Path(out_dir), quick=quick)
        except Exception:  # a failing area must not hide the others' numbers
            traceback.print_exc()
            failed.append(a)
        print(f"[bench {a}] {time.perf_counter() - t0:.1f} s", flush=True)
    if failed:
        print(f"benchmarks that failed: {', '.join(failed)}")
    return 1 if failed else 0
