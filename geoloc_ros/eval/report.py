"""The evaluation report: ``report.md`` + PNG figures for one or more replayed runs.

    runs = [RunResult(name, est_t, est_T, gt_t, gt_T, est_cov=..., faults=..., engine_stats=...)]
    write_report(out_dir, runs, background=MapBackground(points_xy=...))

Per run it computes (``evaluate_run``): ATE in the map frame without alignment (the headline: the
map frame is the truth frame), SE(3)-aligned ATE, RPE, coverage, the fraction of epochs within the
success thresholds, NEES of the reported covariances with chi-square bounds, error statistics
inside each injected fault interval, and per engine its queries / fixes / accepted and, when the
fixes themselves are given, how many were correct against ground truth. Figures are drawn by
:mod:`geoloc_ros.eval.plots` (matplotlib, Agg backend).
"""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geoloc_ros.eval import metrics as M
from geoloc_ros.eval.config import EvalConfig

log = logging.getLogger("geoloc_ros.eval.report")

__all__ = ["RunResult", "MapBackground", "evaluate_run", "write_report", "background_from_mapdir",
           "normalize_faults", "faults_from_manifest"]


@dataclass
class RunResult:
    """One replayed run, as the replay (or the demo) fills it.

    ``engine_stats``: ``{engine: {"queries": int, "fixes": int, "accepted": int,
    "no_fix_reasons": {reason: count}, "latency_ms": {stage: [ms, ...]}}}`` (the shape of
    ``geoloc_ros.replay.engine_stats_dict``). ``engine_fixes``: optional ``{engine: (t_s (K,),
    T_map_base (K, 4, 4))}`` of every query's answer (NaN pose = no fix), scored against ground
    truth. ``latency_ms``: optional extra stages outside the engines (e.g. ``"fusion"``).
    ``faults``: ``[(t0_s, t1_s, kind), ...]`` or the simulator manifest's fault dicts
    (:func:`faults_from_manifest`). ``map_name``: optional name of the map the run was localized
    in (a column of the metrics table); ``background``: optional plot background of that map
    (overrides ``write_report``'s shared one for this run's trajectory plot).
    """
    name: str
    est_t: np.ndarray                  # (N,) s
    est_T: np.ndarray                  # (N, 4, 4) T_map_base
    gt_t: np.ndarray                   # (G,) s
    gt_T: np.ndarray                   # (G, 4, 4)
    est_cov: np.ndarray | None = None  # (N, 6, 6) ROS order, m^2 / rad^2
    faults: list = field(default_factory=list)
    engine_stats: dict = field(default_factory=dict)
    engine_fixes: dict = field(default_factory=dict)
    latency_ms: dict = field(default_factory=dict)
    modes: np.ndarray | None = None    # (N,) str, PoseEstimate.mode per estimate
    note: str = ""
    map_name: str = ""
    background: MapBackground | None = None


@dataclass
class MapBackground:
    """What the trajectory plot draws under the trajectories (all optional, map frame, m)."""
    points_xy: np.ndarray | None = None      # (P, 2|3) map points -> density image
    keyframes_xy: np.ndarray | None = None   # (K, 2|3) BEV database keyframe positions
    objects_xy: np.ndarray | None = None     # (O, 2|3) object-map centroids
    object_labels: list | None = None        # (O,) class names


def normalize_faults(faults) -> list[tuple[float, float, str]]:
    """Fault intervals as ``(t0_s, t1_s, kind)`` from tuples or from the simulator manifest's dicts
    (``{"sensor", "kind", "t_start", "t_end"}``: kind becomes ``"sensor kind"``, e.g. "gnss multipath").
    Malformed or non-finite entries are dropped (logged)."""
    out = []
    for f in faults or []:
        try:
            if isinstance(f, dict):
                t0, t1 = float(f.get("t_start", f.get("t0_s"))), float(f.get("t_end", f.get("t1_s")))
                kind = " ".join(str(f[k]) for k in ("sensor", "kind") if f.get(k)) or "fault"
            else:
                t0, t1 = float(f[0]), float(f[1])
                kind = str(f[2]) if len(f) > 2 else "fault"
        except (TypeError, ValueError, KeyError, IndexError):
            log.warning("ignoring malformed fault interval %r", f)
            continue
        if math.isfinite(t0) and math.isfinite(t1) and t1 >= t0:
            out.append((t0, t1, kind))
        else:
            log.warning("ignoring fault interval with bad times %r", f)
    return out


def faults_from_manifest(manifest, run: str) -> list[tuple[float, float, str]]:
    """The fault intervals of ``run`` from a simulator ``manifest.json`` (path or parsed dict)."""
    import json
    doc = manifest if isinstance(manifest, dict) else json.loads(Path(manifest).read_text())
    runs = doc.get("runs", {}) if isinstance(doc, dict) else {}
    if run in runs and isinstance(runs[run], dict) and "faults" in runs[run]:
        return normalize_faults(runs[run]["faults"])
    return normalize_faults([f for f in doc.get("faults", []) if isinstance(f, dict) and f.get("run") == run])


def background_from_mapdir(mapdir) -> MapBackground:
    """The plot background of a built map: BEV keyframe positions, their BEV keypoints moved into
    the map frame (a sparse picture of the structure), and the object-map centroids. Parts that are
    missing or unreadable are left out (logged), never an error."""
    bg = MapBackground()
    try:
        a = mapdir.read_arrays("bev_keyframes")
        poses = np.asarray(a["poses"], float).reshape(-1, 4, 4)
        bg.keyframes_xy = poses[:, :2, 3]
        if "kp_xy_m" in a and "kp_offsets" in a:
            off = np.asarray(a["kp_offsets"], np.int64)
            kp = np.asarray(a["kp_xy_m"], float).reshape(-1, 2)
            k = np.repeat(np.arange(len(poses)), np.diff(off))
            R = poses[k][:, :2, :2]
            bg.points_xy = np.einsum("nij,nj->ni", R, kp) + poses[k][:, :2, 3]
    except Exception as e:  # noqa: BLE001 - a background is optional
        log.info("map background: no BEV keyframes (%s)", e)
    try:
        o = mapdir.read_arrays("objects")
        bg.objects_xy = np.asarray(o["obj_centroids"], float).reshape(-1, 3)[:, :2]
    except Exception as e:  # noqa: BLE001
        log.info("map background: no object map (%s)", e)
    return bg


def _f(x) -> float:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return float("nan")
    return x


def _latencies(run: RunResult) -> dict[str, list[float]]:
    """Flat ``{"engine.stage": [ms]}`` from the engine stats plus the run's own stages."""
    out: dict[str, list[float]] = {}
    for eng, st in (run.engine_stats or {}).items():
        for stage, vals in (st.get("latency_ms", {}) if isinstance(st, dict) else {}).items():
            v = [float(x) for x in vals if np.isfinite(x)]
            if v:
                out[f"{eng}.{stage}"] = v
    for stage, vals in (run.latency_ms or {}).items():
        v = [float(x) for x in vals if np.isfinite(x)]
        if v:
            out[stage] = v
    return out


def evaluate_run(run: RunResult, cfg: EvalConfig | None = None) -> dict:
    """All numbers of one run (dict of plain floats / lists); never raises on bad data: a metric that
    cannot be computed is NaN and ``problems`` says why."""
    cfg = cfg or EvalConfig()
    out: dict = {"name": run.name, "map": run.map_name, "problems": []}
    max_rad = math.radians(cfg.success_max_yaw_deg)
    try:
        est = M.Trajectory(run.est_t, run.est_T, run.est_cov, name=run.name)
        gt = M.Trajectory(run.gt_t, run.gt_T, name="ground truth")
    except (M.MetricsError, ValueError, TypeError) as e:
        out["problems"].append(f"unusable trajectory: {e}")
        return out
    out["n_est"], out["n_gt"] = len(est), len(gt)
    out["duration_s"] = float(gt.t_s.max() - gt.t_s.min()) if len(gt) else float("nan")
    out["t0_s"] = float(gt.t_s.min()) if len(gt) else 0.0
    try:
        out["coverage"] = M.coverage(est.t_s, gt.t_s)
        a = M.ate(est, gt, M.Alignment.NONE, cfg.max_dt_s)
    except M.MetricsError as e:
        out["problems"].append(f"ATE: {e}")
        return out
    out["ate"] = a
    if a.n_nonfinite:
        out["problems"].append(f"{a.n_nonfinite} estimates with NaN/inf poses left out of the metrics")
    out.update({f"ate_{k}": v for k, v in a.summary().items()})
    out["success_epochs"] = M.success_rate(a.xy_err_m, a.yaw_err_rad, cfg.success_max_m, max_rad)
    try:
        out["ate_se3_rmse_m"] = M.ate(est, gt, M.Alignment.SE3, cfg.max_dt_s).trans.rmse
    except M.MetricsError as e:
        out["ate_se3_rmse_m"] = float("nan")
        out["problems"].append(f"aligned ATE: {e}")
    try:
        r = M.rpe(est, gt, cfg.rpe_delta_m, M.DeltaUnit.METERS, max_dt_s=cfg.max_dt_s)
        out["rpe_trans_rmse_m"], out["rpe_rot_rmse_deg"] = r.trans.rmse, math.degrees(r.rot.rmse)
    except M.MetricsError as e:
        out["rpe_trans_rmse_m"] = out["rpe_rot_rmse_deg"] = float("nan")
        out["problems"].append(f"RPE: {e}")
    if est.cov6 is not None:
        d = list(cfg.nees_dims)
        P = est.cov6[a.idx_est][:, d][:, :, d]
        nr = M.nees(a.err6[:, d], P, cfg.nees_prob)
        out["nees"] = nr
        out["nees_mean"], out["nees_frac_inside"], out["nees_dof"] = nr.mean, nr.frac_inside, nr.dof
        if nr.n_invalid:
            out["problems"].append(f"NEES: {nr.n_invalid} epochs without a usable covariance")
    out["intervals"] = M.interval_stats(a.t_s, a.xy_err_m, normalize_faults(run.faults))
    out["engines"] = {}
    for eng, st in (run.engine_stats or {}).items():
        st = st if isinstance(st, dict) else {}
        row = {k: int(st.get(k, 0) or 0) for k in ("queries", "fixes", "accepted")}
        row["no_fix_reasons"] = dict(st.get("no_fix_reasons", {}) or {})
        out["engines"][eng] = row
    for eng, fx in (run.engine_fixes or {}).items():
        try:
            exy, eyaw = M.fix_errors(fx[0], fx[1], gt.t_s, gt.T, cfg.fix_max_gap_s)
        except (M.MetricsError, IndexError, TypeError, ValueError) as e:
            out["problems"].append(f"{eng} fixes: {e}")
            continue
        row = out["engines"].setdefault(eng, {"queries": len(exy), "fixes": int(np.isfinite(exy).sum()),
                                              "accepted": 0, "no_fix_reasons": {}})
        ok = (exy <= cfg.success_max_m) & (np.abs(np.nan_to_num(eyaw, nan=np.inf)) <= max_rad)
        row["correct"] = int(ok.sum())
        row["scored"] = int(len(exy))
        row["fix_xy_median_m"] = float(np.nanmedian(exy)) if np.isfinite(exy).any() else float("nan")
    if run.modes is not None and len(run.modes) == len(est) and len(est):
        m = np.asarray(run.modes).astype(str)
        out["mode_fractions"] = {k: float(np.mean(m == k)) for k in dict.fromkeys(m.tolist())}
    out["latency_ms"] = _latencies(run)
    return out


# --------------------------------------------------------------------------- markdown
def _fmt(x, nd=3) -> str:
    x = _f(x)
    if not math.isfinite(x):
        return "–"
    return f"{x:.{nd}f}" if abs(x) < 1e4 else f"{x:.0f}"


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines + [""]


def _markdown(title: str, evals: list[dict], figs: dict, cfg: EvalConfig, notes: list[str]) -> str:
    L = [f"# {title}", ""]
    L += [f"Absolute trajectory error (ATE) is computed in the map frame **without alignment** (the map "
          f"frame is the ground-truth frame: that is what a localizer promises); estimates are matched to "
          f"ground truth within {cfg.max_dt_s * 1e3:.0f} ms. An epoch is *successful* when its horizontal "
          f"error is ≤ {cfg.success_max_m:g} m and its yaw error ≤ {cfg.success_max_yaw_deg:g}°. "
          f"SE(3)-aligned ATE and RPE (pairs {cfg.rpe_delta_m:g} m of path apart) are shown for shape only. "
          f"NEES uses the reported covariance on (x, y, yaw); a consistent filter keeps "
          f"~{cfg.nees_prob:.0%} of epochs inside the chi-square bound.", ""]
    L += notes + ([""] if notes else [])
    L += ["## Metrics", ""]
    rows, with_map = [], any(e.get("map") for e in evals)
    for e in evals:
        rows.append([e["name"]] + ([e.get("map") or "–"] if with_map else []) +
                    [str(e.get("n_est", 0)), _fmt(e.get("coverage"), 2),
                     _fmt(e.get("ate_trans_rmse_m")), _fmt(e.get("ate_trans_median_m")), _fmt(e.get("ate_trans_max_m")),
                     _fmt(e.get("ate_yaw_rmse_deg"), 2), _fmt(e.get("ate_se3_rmse_m")),
                     _fmt(e.get("rpe_trans_rmse_m")), _fmt(e.get("success_epochs"), 3),
                     _fmt(e.get("nees_mean"), 2) + (f" (dof {e['nees_dof']})" if "nees_dof" in e else ""),
                     _fmt(e.get("nees_frac_inside"), 3)])
    L += _table(["run"] + (["map"] if with_map else []) +
                ["estimates", "coverage", "ATE rmse [m]", "ATE median [m]", "ATE max [m]",
                 "yaw rmse [deg]", "SE(3)-aligned ATE rmse [m]", f"RPE {cfg.rpe_delta_m:g} m rmse [m]",
                 "success (epochs)", "NEES mean", "NEES in bound"], rows)
    modes = [f"- {e['name']}: " + ", ".join(f"{k} {v:.0%}" for k, v in e["mode_fractions"].items())
             for e in evals if e.get("mode_fractions")]
    if modes:
        L += ["Share of estimates per filter mode:", ""] + modes + [""]
    iv_rows = []
    for e in evals:
        for r in e.get("intervals", []):
            t0 = e.get("t0_s", 0.0)
            span = "" if r["kind"] == "outside" else f"{r['t0_s'] - t0:.1f}–{r['t1_s'] - t0:.1f}"
            iv_rows.append([e["name"], r["kind"], span, str(r["n"]), _fmt(r["rmse"]), _fmt(r["max"])])
    if any(r[1] != "outside" for r in iv_rows):
        L += ["## Error inside fault intervals (horizontal, m)", ""]
        L += _table(["run", "interval", "t [s] (from run start)", "epochs", "rmse [m]", "max [m]"], iv_rows)
    eng_rows = []
    for e in evals:
        for eng, r in e.get("engines", {}).items():
            q = r.get("queries", 0)
            corr = r.get("correct")
            reasons = ", ".join(f"{k}: {v}" for k, v in sorted(r.get("no_fix_reasons", {}).items(),
                                                                  key=lambda kv: -kv[1])[:3])
            eng_rows.append([e["name"], eng, str(q), str(r.get("fixes", 0)), str(r.get("accepted", 0)),
                             "–" if corr is None else f"{corr} ({corr / max(r.get('scored', q), 1):.0%})",
                             _fmt(r.get("fix_xy_median_m")), reasons or "–"])
    if eng_rows:
        L += ["## Global localization engines", "",
              f"*correct*: the engine's pose within {cfg.success_max_m:g} m / {cfg.success_max_yaw_deg:g}° "
              f"of ground truth, over all queries (a query without a fix counts as a failure).", ""]
        L += _table(["run", "engine", "queries", "fixes", "accepted by filter", "correct", "fix error median [m]",
                     "top no-fix reasons"], eng_rows)
    lat_rows = []
    for e in evals:
        for stage, v in e.get("latency_ms", {}).items():
            a = np.asarray(v)
            lat_rows.append([e["name"], stage, str(a.size), _fmt(np.median(a), 1), _fmt(np.percentile(a, 95), 1),
                             _fmt(a.max(), 1)])
    if lat_rows:
        L += ["## Latency per stage (ms, wall clock on this machine)", ""]
        L += _table(["run", "stage", "calls", "median", "p95", "max"], lat_rows)
    probs = [f"- {e['name']}: {p}" for e in evals for p in e.get("problems", [])]
    if probs:
        L += ["## Problems", ""] + probs + [""]
    if figs:
        L += ["## Figures", ""]
        for caption, rel in figs.items():
            L += [f"### {caption}", "", f"![{caption}]({rel})", ""]
    return "\n".join(L)


def write_report(out_dir, runs: list[RunResult], background: MapBackground | None = None,
                 title: str = "geoloc_ros localization report", cfg: EvalConfig | None = None,
                 notes: list[str] | None = None, plots: bool = True) -> Path:
    """Write ``out_dir/report.md`` and its PNGs (``out_dir/fig_*.png``); returns the report path.

    Each figure is drawn independently: one that fails is logged and listed under Problems
    instead of losing the report.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = cfg or EvalConfig()
    runs = [dataclasses.replace(r, faults=normalize_faults(r.faults)) for r in runs]
    evals = [evaluate_run(r, cfg) for r in runs]
    figs: dict[str, str] = {}
    if plots:
        from geoloc_ros.eval import plots as P

        def draw(caption: str, fname: str, fn, *args):
            try:
                if fn(out / fname, *args):
                    figs[caption] = fname
            except Exception as e:  # noqa: BLE001 - a broken figure must not lose the report
                log.exception("figure %s failed", fname)
                evals[0].setdefault("problems", []).append(f"figure {fname} failed: {e}")

        for run, ev in zip(runs, evals):
            safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in run.name) or "run"
            draw(f"Trajectory vs ground truth: {run.name}", f"fig_traj_{safe}.png", P.plot_trajectory,
                 run, ev, run.background if run.background is not None else background, cfg)
            draw(f"Error vs time: {run.name}", f"fig_error_{safe}.png", P.plot_errors, run, ev, cfg)
        draw("Global localization success", "fig_success.png", P.plot_success, evals, cfg)
        draw("Latency per stage", "fig_latency.png", P.plot_latency, evals)
    path = out / "report.md"
    path.write_text(_markdown(title, evals, figs, cfg, list(notes or [])))
    return path
