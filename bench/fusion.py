"""Benchmark of the fusion filter (issue 6): ours vs GNSS-only, the same filter without
degradation handling ("naive") and IMU + wheel dead reckoning.

1. Simulated run (geoloc_ros.sim trajectory and IMU/wheel/GNSS generators) with injected GNSS
   denial (60 s), multipath jumps, drift, spoofing and wheel slip, plus delayed global pose fixes
   (BEV-like, 0.5 Hz, 0.8 s late): ATE without alignment (RMSE, max, per fault interval), NEES
   (x, y, yaw) inside the 95 % chi-square bound, verdict precision/recall against the injected
   GNSS fault intervals, IMU messages per second on one core.
2. The real Husky bag (../shared/realdata/rl_husky_gps) with faults injected into its /fix
   messages (20 m jump for 10 s, 60 s outage, 0.3 m/s drift for 60 s): the largest deviation of
   each variant's path from its own clean-run path.

``python -m bench.fusion [--quick]`` or ``geoloc bench fusion``.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from bench.common import print_table, write_result
from geoloc_ros.events import GnssEvent, ImuEvent, Verdict
from geoloc_ros.fusion.baselines import GnssOnly, dead_reckoning, naive_filter
from geoloc_ros.fusion.config import FusionConfig
from geoloc_ros.fusion.filter import FusionFilter
from geoloc_ros.fusion.gnss import Datum
from geoloc_ros.fusion.replay import (GnssFault, inject_gnss_faults, load_husky_events, run_events,
                                      sim_fault_scenario)
from geoloc_ros.geometry import wrap_angle

HUSKY_BAG = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "rl_husky_gps" / "husky_imu_odom_gps.bag"
CHI2_3_95 = 7.815
DATUM = Datum(48.1351, 11.5820, 520.0, 0.3)


# ---- simulated scenario: geoloc_ros.fusion.replay.sim_fault_scenario -------------------------
def _interp_gt(t, gt_t, gt_T):
    from geoloc_ros.geometry import interpolate_poses
    T, ok = interpolate_poses(t, gt_t, gt_T)
    return T, ok


def _ate(res, gt_t, gt_T, intervals):
    T_gt, ok = _interp_gt(res.t, gt_t, gt_T)
    err = np.linalg.norm(res.T[:, :2, 3] - T_gt[:, :2, 3], axis=1)
    err = err[ok]
    tt = res.t[ok]
    out = {"rmse": float(np.sqrt(np.mean(err ** 2))), "max": float(err.max())}
    for name, a, b in intervals:
        m = (tt >= a) & (tt <= b + 10.0)
        out[name] = float(np.sqrt(np.mean(err[m] ** 2))) if m.any() else float("nan")
    return out, err, T_gt[ok], ok


def _nees_in_bound(res, T_gt, ok, every=20):
    """Fraction of sampled epochs whose (x, y, yaw) NEES is inside the 95 % chi-square bound."""
    idx = np.flatnonzero(ok)
    vals = []
    for j in range(0, len(idx), every):
        i = idx[j]
        e = np.array([res.T[i, 0, 3] - T_gt[j, 0, 3], res.T[i, 1, 3] - T_gt[j, 1, 3],
                      wrap_angle(np.arctan2(res.T[i, 1, 0], res.T[i, 0, 0])
                                 - np.arctan2(T_gt[j, 1, 0], T_gt[j, 0, 0]))])
        C = res.cov6[i][np.ix_([0, 1, 5], [0, 1, 5])]
        vals.append(float(e @ np.linalg.solve(C, e)))
    vals = np.array(vals)
    return float(np.mean(vals < CHI2_3_95)), vals


def _verdict_pr(res, events, gt_t, gt_T, intervals, datum):
    """Per GNSS epoch: positive = the fix is off the truth by > 3 m inside an injected GNSS fault."""
    gnss = {e.t: e for e in events if isinstance(e, GnssEvent)}
    tp = fp = fn = 0
    for t, verdict, _ in res.verdicts:
        e = gnss.get(t)
        if e is None:
            continue
        T, ok = _interp_gt(np.array([t]), gt_t, gt_T)
        off = np.linalg.norm(datum.to_map(e.lat_deg, e.lon_deg, e.alt_m)[:2] - T[0, :2, 3])
        in_fault = any(a <= t <= b for n, a, b in intervals if n in ("multipath", "drift", "spoofing"))
        pos = in_fault and off > 3.0
        flagged = verdict in (Verdict.REJECTED.value, Verdict.DEGRADED.value, Verdict.DENIED.value)
        tp += pos and flagged
        fp += (not pos) and flagged and not in_fault
        fn += pos and not flagged
    return (tp / max(tp + fp, 1), tp / max(tp + fn, 1))


def run_sim(quick: bool, metrics: dict, rows: list):
    duration = 400.0 if quick else 700.0
    events, gt_t, gt_T, intervals = sim_fault_scenario(duration, datum=DATUM)
    from geoloc_ros.sim.sensors import DEFAULT_EXTRINSICS
    # the simulator's antenna sits at DEFAULT_EXTRINSICS["gnss"] (-0.1, 0, 0.2) m in base_link: a
    # filter told 0 sees a 0.1 m heading-dependent bias it is sure is not there (NEES)
    cfg = FusionConfig(gnss_use_altitude=True, gnss_lever_m=[float(x) for x in DEFAULT_EXTRINSICS["gnss"][:3, 3]])
    variants = {"ours": lambda: FusionFilter(cfg, DATUM), "naive": lambda: naive_filter(cfg, DATUM),
                "dead_reckoning": lambda: dead_reckoning(cfg, DATUM), "gnss_only": lambda: GnssOnly(cfg, DATUM)}
    for name, make in variants.items():
        filt = make()
        if name == "gnss_only":
            res = _run_gnss_only(filt, events)
        else:
            res = run_events(filt, events)
        ate, err, T_gt, ok = _ate(res, gt_t, gt_T, intervals)
        metrics[f"{name}.ate_rmse_m.degraded"] = ate["rmse"]
        metrics[f"{name}.ate_max_m.degraded"] = ate["max"]
        for n, _, _ in intervals:
            metrics[f"{name}.ate_rmse_m.{n}"] = ate[n]
        row = [name, ate["rmse"], ate["max"]] + [ate[n] for n, _, _ in intervals]
        if name in ("ours", "naive", "dead_reckoning"):
            frac, _ = _nees_in_bound(res, T_gt, ok)
            metrics[f"{name}.nees_in_bound"] = frac
            metrics[f"{name}.imu_msgs_per_s"] = res.n_imu / max(res.seconds, 1e-9)
            row += [frac, res.n_imu / max(res.seconds, 1e-9)]
        else:
            row += [float("nan"), float("nan")]
        if name == "ours":
            prec, rec = _verdict_pr(res, events, gt_t, gt_T, intervals, DATUM)
            metrics["ours.verdict_precision"] = prec
            metrics["ours.verdict_recall"] = rec
            metrics["ours.late_measurements"] = float(res.last.counters.get("late_measurements", 0))
            metrics["ours.wheel_slip_epochs"] = float(res.last.counters.get("wheel.slip", 0))
        rows.append(row)
    return [n for n, _, _ in intervals]


def _run_gnss_only(filt, events):
    """GNSS-only estimates sampled at the IMU stamps (held between fixes)."""
    from geoloc_ros.fusion.replay import RunResult
    ts, Ts, Cs = [], [], []
    t0 = time.perf_counter()
    n = 0
    for e in events:
        filt.process(e)
        if isinstance(e, ImuEvent):
            n += 1
            if filt.initialized and n % 4 == 0:
                est = filt.estimate()
                ts.append(e.t)
                Ts.append(est.T_map_base)
                Cs.append(est.cov6)
    return RunResult(np.array(ts), np.array(Ts), np.array(Cs), [], None, time.perf_counter() - t0, n)


# ---- real Husky bag with injected faults ----------------------------------------------------
def husky_faults(t0: float):
    return {"jump": [GnssFault("jump", t0 + 150, t0 + 160, offset_m=(20.0, 0.0, 0.0))],
            "outage": [GnssFault("outage", t0 + 150, t0 + 210)],
            "drift": [GnssFault("drift", t0 + 150, t0 + 210, rate_mps=0.3, direction=(0.0, 1.0))]}


def husky_cfg() -> FusionConfig:
    """The Husky's GPS altitude wanders by 30 m (README): horizontal GNSS only; its horizontal
    error wanders several metres within 20 s while it reports ~0.9 m ('approximated' covariance):
    the window checks use 9x its reported variance, and the map<-odom heading fitted over 120 s of
    accepted track (its filter heading wobbles by +-15 deg under that correlated error). That error
    also pulls the filter's yaw-rate bias to -5 mrad/s (the gyro reads -0.34 mrad/s at rest), and a
    drift pulls it further: the dead reckoning the checks use keeps the bias of initialization.
    Its wander is too large for a window check against one reference epoch to see a 0.3 m/s drift
    before ~50 s; the track check (the odom track fitted to minutes of accepted GNSS, residual
    ~2-3 m rms here) sees it after ~25 s."""
    return FusionConfig(gnss_use_altitude=False, gnss_window_cov_scale=9.0, gnss_fit_s=120.0,
                        odom_gyro_bias="initial", gnss_track_m=7.0)


def gnss_agreement(res, gnss, datum) -> tuple[float, float]:
    """How the fused path ``res`` agrees with the GNSS epochs ``gnss`` (GnssEvent list) inside its
    time span: the fraction of epochs whose horizontal distance to the path is within 3x the fix's
    reported 2-D std, and the median distance over the median reported 2-D std."""
    t = np.array([e.t for e in gnss])
    z = datum.to_map(np.array([e.lat_deg for e in gnss]), np.array([e.lon_deg for e in gnss]),
                     np.array([e.alt_m for e in gnss]))
    sig = np.sqrt(np.array([e.cov_enu_m2[0, 0] + e.cov_enu_m2[1, 1] for e in gnss]))
    m = (t > res.t[0]) & (t < res.t[-1])
    d = np.hypot(np.interp(t[m], res.t, res.T[:, 0, 3]) - z[m, 0],
                 np.interp(t[m], res.t, res.T[:, 1, 3]) - z[m, 1])
    return float(np.mean(d < 3.0 * sig[m])), float(np.median(d) / np.median(sig[m]))


def path_deviation(ref, res, t_a, t_b) -> float:
    """Largest horizontal distance (m) of ``res`` from ``ref`` over [t_a, t_b] (matched by time)."""
    m = (res.t >= t_a) & (res.t <= t_b)
    x = np.interp(res.t[m], ref.t, ref.T[:, 0, 3])
    y = np.interp(res.t[m], ref.t, ref.T[:, 1, 3])
    return float(np.hypot(res.T[m, 0, 3] - x, res.T[m, 1, 3] - y).max())


class HuskyGnssWander:
    """The receiver's own wander as the jump/drift checks see it on the clean bag: the GNSS
    displacement minus the dead-reckoned one over the 20 s and 60 s windows, and the track check's
    distance off the fitted dead-reckoned track, p95 and max (m), from 60 s on (after the map<-odom
    heading fit has settled). A drift is caught only once its offset stands out of this: at 0.3 m/s
    that takes some 40 s for the 60 s window on this bag, some 25 s for the track check. Pass as
    ``on_gnss`` to :func:`run_events` on the clean run."""

    WINDOWS = ("window20", "window60", "track")

    def __init__(self):
        self.t_first = None
        self.vals: dict = {k: [] for k in self.WINDOWS}

    def __call__(self, filt, e) -> None:
        if filt.monitor.last is None:
            return
        self.t_first = e.t if self.t_first is None else self.t_first
        if e.t - self.t_first < 60.0:
            return
        for k, v in self.vals.items():
            m = (filt.monitor.last.checks or {}).get(f"{k}_mismatch_m")
            if m is not None and np.isfinite(m):
                v.append(m)

    def metrics(self) -> dict:
        out = {}
        for k, v in self.vals.items():
            if v:
                out[f"husky.clean_{k}_mismatch_p95_m"] = float(np.percentile(v, 95))
                out[f"husky.clean_{k}_mismatch_max_m"] = float(np.max(v))
        return out


def first_rejection_s(res, t_a: float) -> float:
    """Seconds from ``t_a`` to the first REJECTED GNSS verdict at or after it (NaN: none)."""
    ts = [t for t, v, _ in res.verdicts if t >= t_a and v == Verdict.REJECTED.value]
    return float(ts[0] - t_a) if ts else float("nan")


def run_husky(quick: bool, metrics: dict, rows: list):
    if not HUSKY_BAG.is_file():
        print(f"husky bag not found at {HUSKY_BAG}: skipping the real-data part")
        return
    events = load_husky_events(HUSKY_BAG)
    g0 = next(e for e in events if isinstance(e, GnssEvent))
    datum = Datum(g0.lat_deg, g0.lon_deg, g0.alt_m)
    cfg = husky_cfg()
    faults = husky_faults(g0.t)
    for name, make in (("ours", lambda: FusionFilter(cfg, datum)), ("naive", lambda: naive_filter(cfg, datum))):
        wander = HuskyGnssWander() if name == "ours" else None
        clean = run_events(make(), events, sample_every=3, on_gnss=wander)
        if wander is not None:
            metrics.update(wander.metrics())
            gnss = [e for e in events if isinstance(e, GnssEvent)]
            metrics["husky.clean_in_3sigma"], metrics["husky.clean_median_over_sigma"] = \
                gnss_agreement(clean, gnss, datum)
        row = [name]
        for fname, fl in faults.items():
            res = run_events(make(), inject_gnss_faults(events, fl, datum), sample_every=3)
            dev = path_deviation(clean, res, g0.t + 140.0, g0.t + 280.0)
            prefix = "husky" if name == "ours" else "naive.husky"
            metrics[f"{prefix}.{fname}_deviation_m"] = dev
            if name == "ours" and fname == "drift":
                metrics["husky.drift_detect_s"] = first_rejection_s(res, fl[0].t0_s)
            row.append(dev)
        rows.append(row)


def run(out_dir: Path = Path("bench_out"), quick: bool = False) -> dict:
    import torch
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    metrics: dict = {}
    rows: list = []
    names = run_sim(quick, metrics, rows)
    print_table(["variant", "ate_rmse_m", "ate_max_m"] + [f"rmse_{n}" for n in names]
                + ["nees_in_95%", "imu_msg/s"], rows, title="fusion: simulated degraded run (no alignment)")
    hrows: list = []
    run_husky(quick, metrics, hrows)
    if hrows:
        print_table(["variant", "jump_dev_m", "outage_dev_m", "drift_dev_m"], hrows,
                    title="fusion: real Husky bag, deviation from own clean-run path under injected /fix faults")
        print(f"husky clean run: {100 * metrics.get('husky.clean_in_3sigma', np.nan):.1f} % of fixes within 3 "
              f"reported sigma of the fused path, median distance "
              f"{metrics.get('husky.clean_median_over_sigma', np.nan):.2f} x the reported sigma")
        print(f"husky: drift first rejected {metrics.get('husky.drift_detect_s', np.nan):.1f} s after it "
              f"started; the clean bag's GNSS-minus-dead-reckoning mismatch (the floor a drift must "
              f"beat): 20 s window p95 {metrics.get('husky.clean_window20_mismatch_p95_m', np.nan):.1f} / "
              f"max {metrics.get('husky.clean_window20_mismatch_max_m', np.nan):.1f} m, 60 s window p95 "
              f"{metrics.get('husky.clean_window60_mismatch_p95_m', np.nan):.1f} / "
              f"max {metrics.get('husky.clean_window60_mismatch_max_m', np.nan):.1f} m, track check p95 "
              f"{metrics.get('husky.clean_track_mismatch_p95_m', np.nan):.1f} / "
              f"max {metrics.get('husky.clean_track_mismatch_max_m', np.nan):.1f} m")
    go = metrics.get("gnss_only.ate_rmse_m.degraded", np.nan)
    nv = metrics.get("naive.ate_rmse_m.degraded", np.nan)
    ours = metrics.get("ours.ate_rmse_m.degraded", np.nan)
    metrics["ours.ate_ratio_vs_gnss_only"] = ours / go if go else float("nan")
    metrics["ours.ate_ratio_vs_naive"] = ours / nv if nv else float("nan")
    secs = time.perf_counter() - t_start
    cmd = "geoloc bench fusion" + (" --quick" if quick else "")
    write_result("fusion", metrics, cmd, secs, out_dir)
    return metrics


if __name__ == "__main__":
    run(Path("bench_out"), quick="--quick" in sys.argv)
