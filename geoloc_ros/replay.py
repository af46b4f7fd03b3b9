"""``geoloc replay``: run the pipeline on a bag as fast as it can, exactly as the node would.

Writes the estimate as TUM (``EST.tum``) and, beside it, ``EST.npz`` with per-epoch 6x6
covariances, modes and GNSS verdicts; with ground truth it prints the error and can write a
report.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geoloc_ros.config import GeolocConfig
from geoloc_ros.pipeline import Localizer

log = logging.getLogger("geoloc_ros.replay")

__all__ = ["replay", "ReplayResult", "EstimateLog"]


@dataclass
class EstimateLog:
    """Estimates recorded at most every ``period_s`` (the filter runs at IMU rate)."""
    period_s: float = 0.05
    t: list = field(default_factory=list)
    T: list = field(default_factory=list)
    cov: list = field(default_factory=list)
    mode: list = field(default_factory=list)
    verdict: list = field(default_factory=list)
    reason: list = field(default_factory=list)

    def add(self, est) -> None:
        if self.t and est.t - self.t[-1] < self.period_s:
            return
        self.t.append(est.t)
        self.T.append(np.array(est.T_map_base, float))
        self.cov.append(np.array(est.cov6, float))
        self.mode.append(est.mode)
        self.verdict.append(est.gnss_verdict.value if est.gnss_verdict is not None else "")
        self.reason.append(est.gnss_reason or "")

    def arrays(self) -> dict[str, np.ndarray]:
        n = len(self.t)
        return {"t": np.asarray(self.t, float),
                "T": np.asarray(self.T, float).reshape(n, 4, 4),
                "cov6": np.asarray(self.cov, float).reshape(n, 6, 6),
                "mode": np.asarray(self.mode, dtype="U16"),
                "verdict": np.asarray(self.verdict, dtype="U12"),
                "reason": np.asarray(self.reason, dtype="U80")}

    def save(self, tum_path: Path) -> None:
        from geoloc_ros.io.tum import write_tum
        a = self.arrays()
        tum_path.parent.mkdir(parents=True, exist_ok=True)
        write_tum(tum_path, a["t"], a["T"])
        np.savez(tum_path.with_suffix(".npz"), **a)


@dataclass
class ReplayResult:
    bag: str
    n_events: int
    wall_s: float
    bag_s: float
    log: EstimateLog
    stats: dict
    metrics: dict = field(default_factory=dict)

    @property
    def engine_fixes(self) -> dict:
        """{engine: (t_s (K,), T_map_base (K,4,4))} of every global query, NaN pose = no fix."""
        return {name: st.fixes_arrays() for name, st in self.stats.items() if st.answers_t}

    def summary(self) -> str:
        lines = [f"replayed {self.bag}: {self.n_events} events, {self.bag_s:.1f} s of data in "
                 f"{self.wall_s:.1f} s ({self.bag_s / max(self.wall_s, 1e-9):.1f}x real time), "
                 f"{len(self.log.t)} estimates"]
        for name, st in self.stats.items():
            if st.queries:
                lines.append(f"  {name}: {st.queries} queries, {st.fixes} fixes, {st.accepted} accepted")
        for k, v in self.metrics.items():
            lines.append(f"  {k}: {v:.3f}" if isinstance(v, float) else f"  {k}: {v}")
        return "\n".join(lines)


def replay(bag, profile, map_dir=None, cfg: GeolocConfig | None = None, out_tum=None, gt_tum=None,
           report_dir=None, progress: bool = True, localizer: Localizer | None = None,
           fault_intervals=None) -> ReplayResult:
    """Run ``bag`` through a :class:`Localizer`; see the module docstring."""
    from tqdm import tqdm

    from geoloc_ros.io.bags import read_events
    from geoloc_ros.io.profiles import load_profile
    from geoloc_ros.maps.mapdir import MapDir

    prof = load_profile(profile) if isinstance(profile, (str, Path)) else profile
    mapdir = MapDir.open(map_dir) if map_dir else None
    loc = localizer or Localizer(cfg or GeolocConfig(), mapdir, profile=prof)
    elog = EstimateLog()
    n = 0
    t_first = t_last = None
    t0 = time.perf_counter()
    for ev in tqdm(read_events(bag, prof), desc=f"replay {Path(bag).name}", unit="msg",
                   disable=not progress, mininterval=1.0):
        n += 1
        t_first = ev.t if t_first is None else t_first
        t_last = ev.t
        est = loc.process(ev)
        if est is not None:
            elog.add(est)
    res = ReplayResult(str(bag), n, time.perf_counter() - t0,
                       (t_last - t_first) if t_first is not None else 0.0, elog, loc.stats)
    if out_tum:
        elog.save(Path(out_tum))
    if gt_tum:
        res.metrics = evaluate_log(elog, gt_tum)
    if report_dir and gt_tum:
        from geoloc_ros.eval.report import RunResult, write_report
        from geoloc_ros.io.tum import read_tum
        gt_t, gt_T = read_tum(gt_tum)
        a = elog.arrays()
        run = RunResult(name=Path(bag).stem, est_t=a["t"], est_T=a["T"], est_cov=a["cov6"],
                        gt_t=gt_t, gt_T=gt_T, faults=list(fault_intervals or []),
                        engine_stats=engine_stats_dict(loc.stats))
        write_report(Path(report_dir), [run])
    return res


def engine_stats_dict(stats: dict) -> dict:
    """Plain-dict view of the pipeline's EngineStats (for reports and JSON)."""
    return {name: {"queries": st.queries, "fixes": st.fixes, "accepted": st.accepted,
                   "no_fix_reasons": dict(st.no_fix_reasons),
                   "latency_ms": {k: list(v) for k, v in st.latency_ms.items()}}
            for name, st in stats.items()}


def evaluate_log(elog: EstimateLog, gt_tum) -> dict:
    """ATE (no alignment) and NEES of a replay against a ground-truth TUM file."""
    from geoloc_ros.eval import metrics as M
    from geoloc_ros.io.tum import read_tum
    gt_t, gt_T = read_tum(gt_tum)
    a = elog.arrays()
    if len(a["t"]) == 0:
        return {"estimates": 0}
    r = M.ate((a["t"], a["T"], a["cov6"]), (gt_t, gt_T))
    return {"ate_rmse_m": float(r.rmse), "ate_max_m": float(r.max), "matched": int(r.n)}
