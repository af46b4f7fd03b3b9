"""Shared helpers for the benchmarks: the JSON result file and a plain-text table."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np


def _clean(v: Any):
    if isinstance(v, (np.floating, np.integer)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def write_result(area: str, metrics: dict[str, float], command: str, seconds: float,
                 out_dir: str | Path = "bench_out", extra: dict | None = None) -> Path:
    """Write ``out_dir/<area>.json`` as {"metrics": {flat.key: number}, "command": ..., "seconds": ...}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"metrics": {k: _clean(v) for k, v in metrics.items()}, "command": command,
           "seconds": round(float(seconds), 3)}
    if extra:
        doc["extra"] = extra
    path = out / f"{area}.json"
    path.write_text(json.dumps(doc, indent=1, sort_keys=False))
    return path


def print_table(headers: list[str], rows: Iterable[Iterable[Any]], title: str = "") -> str:
    """Print (and return) a fixed-width table; floats get 3 significant decimals."""
    def fmt(v):
        if isinstance(v, (float, np.floating)):
            return "nan" if not math.isfinite(v) else f"{v:.3f}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)
    rows = [[fmt(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = []
    if title:
        lines.append(title)
    lines.append("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    text = "\n".join(lines)
    print(text, flush=True)
    return text
