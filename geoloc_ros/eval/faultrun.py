"""Replaying faulted runs through the pipeline and scoring them (the engine of ``geoloc bench faults``
and of ``test/test_faults_*.py``).

A :class:`FaultScene` is a short simulated run held in memory: the ``tiny`` town (100 m), a BEV map
of its mapping run in a :class:`~geoloc_ros.maps.mapdir.MapDir` with the datum, and one
localization run's clean events (IMU, wheel, GNSS, levelled LiDAR sweeps at ``scan_rate_hz``).
:func:`run_case` feeds the clean events, with :mod:`geoloc_ros.eval.inject` faults applied, to a
:class:`~geoloc_ros.pipeline.Localizer` and returns a :class:`CaseResult`; :func:`score` turns it
into the numbers of the fault table (crashes, detected, ATE during and 10 s after the fault, time
to recover to the pre-fault error level, fraction of epochs outside the published 3-sigma bound).
"""
from __future__ import annotations

import copy
import logging
import re
import shutil
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geoloc_ros.eval.inject import FaultLog, StreamFault, inject, true_stamp

log = logging.getLogger("geoloc_ros.eval.faultrun")

__all__ = ["FaultScene", "make_scene", "CaseResult", "run_case", "score", "alarm_counters", "truth_error",
           "far_initial_pose", "outside_map", "EXPECTED", "CHI2_2_3SIGMA", "AFTER_S"]

CHI2_2_3SIGMA = 11.829   # chi-square, 2 dof, 99.73 % (the 3-sigma probability) for the x, y error
AFTER_S = 10.0           # the window after a fault in which recovery is judged (s)
#: kind -> the alarms that count as this fault being detected (regex over alarm names)
EXPECTED = {
    "nan_fields": r"NaN|nan_scans|non-finite|unusable scan",   # scans, not their points
    "nan_points": r"nan_scans",
    "empty_cloud": r"unusable scan|empty",
    "tiny_cloud": r"unusable scan|usable points",
    "lidar_dropout": r"scan\.gaps",
    "imu_gap": r"imu\.(gap|rejected)",
    "imu_out_of_order": r"imu\.rejected",
    "imu_duplicate": r"imu\.rejected",
    "clock_back": r"jumped_backwards",
    "clock_forward": r"jumped_forwards",
    "gnss_denial": r"DENIED",
    "gnss_multipath": r"gnss\.(verdict\.)?(REJECTED|DEGRADED)",
    "gnss_drift": r"gnss\.(verdict\.)?(REJECTED|DEGRADED)",
    "gnss_spoof": r"gnss\.(verdict\.)?(REJECTED|DEGRADED)",
    "gnss_nofix_stale": r"NO_FIX|DENIED",
    "wheel_slip": r"wheel[._]slip",
    "wheel_frozen": r"wheel[._]slip|wheel\.rejected",
    "wrong_frame": r"wrong frame",
    "imu_flood": r"drop|queue|flood",
}
_ALARM = re.compile(r"rejected|verdict\.(DEGRADED|REJECTED|DENIED)|slip|resets|covariance_resets|gaps")


@dataclass
class FaultScene:
    """A simulated run in memory: clean events, truth, the map (BEV + datum) and the setup."""
    events: list             # clean events of the localization run, time ordered
    traj: object             # geoloc_ros.sim.trajectory.Trajectory (truth, map frame)
    mapdir: object           # geoloc_ros.maps.mapdir.MapDir (opened for reading)
    datum: object            # geoloc_ros.fusion.gnss.Datum
    setup: object            # geoloc_ros.sim.scenario.SimSetup
    run: str = "loc_same"

    def config(self):
        """The GeolocConfig of the scene: object engine off (no camera), the simulated antenna
        lever arm."""
        from geoloc_ros.config import GeolocConfig
        from geoloc_ros.sim.sensors import DEFAULT_EXTRINSICS
        cfg = GeolocConfig()
        cfg.enable_objects = False
        cfg.fusion.gnss_lever_m = [float(x) for x in DEFAULT_EXTRINSICS["gnss"][:3, 3]]
        return cfg

    @property
    def t_start(self) -> float:
        return float(self.traj.t0)

    @property
    def t_end(self) -> float:
        return float(self.traj.t1)

    def truth_xy(self, t: np.ndarray) -> np.ndarray:
        """(M, 2) true base_link position in map at true stamps ``t`` (M,)."""
        return self.traj.poses(np.clip(np.asarray(t, float), self.traj.t0, self.traj.t1))[:, :2, 3]


def _scans(world, traj, rate_hz: float, seed: int) -> list:
    """Levelled 32-ring sweeps (geoloc_ros.bev.simdata) at the trajectory poses."""
    from geoloc_ros.bev import simdata
    rng = np.random.default_rng(seed)
    ts = np.arange(traj.t0 + 0.05, traj.t1, 1.0 / rate_hz)
    return [simdata.scan_event(simdata.cast_scan(world, T, rng), t=float(t))
            for t, T in zip(ts, traj.poses(ts))]


def make_scene(out_dir: str | Path, seed: int = 0, duration_s: float = 60.0, scan_rate_hz: float = 1.0,
               imu_rate_hz: float = 100.0, run: str = "loc_same", map_scan_spacing_s: float = 0.7,
               world_seed: int | None = None) -> FaultScene:
    """Simulate the scene (``tiny``-sized town, ``duration_s`` localization run) and build its BEV
    map into ``out_dir/map``. ``world_seed`` other than ``seed`` drives the localization run in a
    different town than the mapped one (the robot starts outside the map)."""
    import torch

    from geoloc_ros.bev.config import BevConfig
    from geoloc_ros.bev.database import build_database
    from geoloc_ros.bev.rein import load_rein
    from geoloc_ros.maps.mapdir import MapDir
    from geoloc_ros.sim import sensors
    from geoloc_ros.sim.config import SimConfig
    from geoloc_ros.sim.scenario import Scenario, prepare

    torch.set_num_threads(1)
    cfg = SimConfig()
    cfg.imu_rate_hz = float(imu_rate_hz)
    sc = Scenario("faults", 100.0, {"mapping": 80.0, "loc_same": duration_s, "loc_reverse": duration_s,
                                    "loc_lateral": duration_s}, camera_rate_hz=0.0)
    su = prepare(sc, seed, cfg)
    out = Path(out_dir)
    mroot = out / "map"
    if not _map_usable(mroot):
        if mroot.exists():
            shutil.rmtree(mroot)
        bc = BevConfig()
        mp = su.runs["mapping"]
        ts = np.arange(mp.t0, mp.t1, map_scan_spacing_s)
        rng = np.random.default_rng(seed + 1)
        from geoloc_ros.bev import simdata
        posed = [(simdata.scan_event(simdata.cast_scan(su.world, T, rng), t=float(t)), T)
                 for t, T in zip(ts, mp.poses(ts))]
        db = build_database(posed, bc, load_rein(bc), spacing_m=2.0)
        md = MapDir.create(mroot, meta={"scene": "faults", "seed": seed})
        db.save(md)
        su.datum.save(md)
        md.close()
    if world_seed is not None and world_seed != seed:
        other = prepare(sc, world_seed, cfg)
        world, traj = other.world, other.runs[run]
    else:
        world, traj = su.world_of(run), su.runs[run]
    ev = list(sensors.imu(traj, cfg=su.cfg, seed=seed))
    ev += list(sensors.wheel(traj, [], cfg=su.cfg, seed=seed))
    ev += list(sensors.gnss(traj, su.datum, [], cfg=su.cfg, seed=seed))
    ev += _scans(world, traj, scan_rate_hz, seed + 2)
    ev.sort(key=lambda e: e.t)
    return FaultScene(ev, traj, MapDir.open(mroot), su.datum, su, run)


def _map_usable(root: Path) -> bool:
    """A scene map from an earlier call that the current BEV configuration still reads."""
    from geoloc_ros.bev.config import BevConfig
    from geoloc_ros.bev.database import BevDatabase
    from geoloc_ros.maps.mapdir import MapDir
    if not (root / "manifest.json").is_file():
        return False
    try:
        BevDatabase.load(MapDir.open(root), BevConfig())
        return True
    except Exception:  # noqa: BLE001 - stale or broken cache: rebuilt
        return False


# ---- running -----------------------------------------------------------------------------------
def alarm_counters(loc) -> Counter:
    """Everything the pipeline counts as a rejection, an alarm or a reset (flat names)."""
    c = Counter()
    for k, v in getattr(loc.filter, "counters", {}).items():
        if _ALARM.search(k) and not k.endswith(".rejected"):
            c[f"fusion.{k}"] += int(v)
    c["fusion.resets"] = int(getattr(loc.filter, "counters", {}).get("resets", 0))
    for name, st in loc.stats.items():
        for r, v in st.no_fix_reasons.items():
            c[f"{name}.no_fix.{r}"] += int(v)
    c["pipeline.resets"] = int(getattr(loc, "resets", 0))
    for k, v in getattr(loc, "counters", {}).items():   # the pipeline's input checks
        c[f"pipeline.{k}"] += int(v)
    return c


def _estimate_alarms(est) -> Counter:
    """What one published estimate flags: a GNSS verdict other than OK, wheel slip, a mode other
    than localized (counted per recorded epoch, names ``estimate.*``)."""
    c = Counter()
    v = getattr(est.gnss_verdict, "value", est.gnss_verdict)
    if v and v != "OK":
        c[f"estimate.gnss.{v}"] += 1
    if est.wheel_slip:
        c["estimate.wheel_slip"] += 1
    if est.mode != "localized":
        c[f"estimate.mode.{est.mode}"] += 1
    return c


@dataclass
class CaseResult:
    """What one faulted (or clean) replay produced. Times are true (clean-stream) stamps."""
    name: str
    t: np.ndarray            # (M,) s
    xy: np.ndarray           # (M, 2) estimated position, m
    cov_xy: np.ndarray       # (M, 2, 2) published covariance, m^2
    mode: np.ndarray         # (M,) str
    faults: FaultLog
    crashes: int = 0
    crash_messages: list = field(default_factory=list)
    alarm_series: list = field(default_factory=list)  # [(true t s, Counter of alarms so far)]
    localizer: object = None

    def alarms_between(self, t0: float, t1: float) -> Counter:
        """Alarms counted between true stamps ``t0`` and ``t1`` (1 s resolution)."""
        if not self.alarm_series:
            return Counter()
        a = next((c for t, c in self.alarm_series if t >= t0), self.alarm_series[-1][1])
        b = next((c for t, c in self.alarm_series if t >= t1), self.alarm_series[-1][1])
        return Counter({k: b[k] - a.get(k, 0) for k in b if b[k] - a.get(k, 0) > 0})

    @property
    def alarms_total(self) -> Counter:
        return self.alarm_series[-1][1] if self.alarm_series else Counter()


def run_case(scene: FaultScene, faults: list[StreamFault], name: str = "", cfg=None, seed: int = 0,
             period_s: float = 0.1, extra_events: list | None = None, drop=None,
             localizer=None) -> CaseResult:
    """Replay the scene's clean events with ``faults`` injected through a Localizer.

    A crash is an exception out of ``Localizer.process`` (counted, replay continues). ``drop``:
    event classes left out of the stream (e.g. GnssEvent for a run without GNSS);
    ``extra_events``: events merged in by stamp (e.g. an initial pose).
    """
    from geoloc_ros.pipeline import Localizer
    cfg = cfg if cfg is not None else scene.config()
    loc = localizer or Localizer(copy.deepcopy(cfg), scene.mapdir, datum=scene.datum)
    events = [e for e in scene.events if not (drop and isinstance(e, drop))]
    if extra_events:
        events = sorted(events + list(extra_events), key=lambda e: e.t)
    flog = FaultLog()
    stream = inject(events, faults, flog, seed=seed)
    t_l, xy_l, cov_l, mode_l = [], [], [], []
    crashes, msgs = 0, []
    est_alarms: Counter = Counter()   # per recorded estimate: what it says about its inputs
    series: list = []                 # (true t, alarm counters) every second
    for e in stream:
        tt = true_stamp(e)
        if not series or tt >= series[-1][0] + 1.0:
            series.append((tt, alarm_counters(loc) + est_alarms))
        try:
            est = loc.process(e)
        except Exception as ex:  # noqa: BLE001 - a crash is what this suite counts
            crashes += 1
            if len(msgs) < 5:
                msgs.append(f"{type(e).__name__} t={e.t:.3f}: {type(ex).__name__}: {ex}\n"
                            + traceback.format_exc(limit=3))
            continue
        if est is None:
            continue
        t_est = tt + (float(est.t) - float(e.t))
        if t_l and t_est - t_l[-1] < period_s and t_est >= t_l[-1]:
            continue
        est_alarms.update(_estimate_alarms(est))
        t_l.append(t_est)
        xy_l.append(np.asarray(est.T_map_base, float)[:2, 3])
        cov_l.append(np.asarray(est.cov6, float)[:2, :2])
        mode_l.append(est.mode)
    series.append((np.inf, alarm_counters(loc) + est_alarms))
    n = len(t_l)
    return CaseResult(name or "+".join(f.kind for f in faults) or "clean", np.asarray(t_l, float),
                      np.asarray(xy_l, float).reshape(n, 2), np.asarray(cov_l, float).reshape(n, 2, 2),
                      np.asarray(mode_l, dtype="U16"), flog, crashes, msgs, series, loc)


# ---- scoring -----------------------------------------------------------------------------------
def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x ** 2))) if len(x) else float("nan")


def score(scene: FaultScene, res: CaseResult, clean: CaseResult | None = None) -> dict:
    """The fault-table row of ``res`` (its first fault interval; times true stamps).

    ``ate_pre_m``: RMS error over the 15 s before the fault; ``ate_during_m`` / ``ate_after_m``:
    over the fault and the ``AFTER_S`` after it; ``recovery_s``: from the fault's end to the
    first epoch after which the error stays under max(2 x pre-fault p95, pre p95 + 0.5 m) for 3 s
    (NaN: never within the run); ``outside_3sigma``: fraction of epochs from the fault's start to
    ``AFTER_S`` after it whose x, y error is outside the published 3-sigma ellipse;
    ``detected``: alarms of the fault's kind (:data:`EXPECTED`) counted in that window beyond
    those of the clean run over the same window; ``alarms``: which counters moved.
    """
    if not res.faults.intervals:
        raise ValueError("score: the case has no fault interval")
    iv = res.faults.intervals[0]
    t0, t1 = iv.t0, max(i.t1 for i in res.faults.intervals)
    err_vec = res.xy - scene.truth_xy(res.t) if len(res.t) else np.zeros((0, 2))
    err = np.linalg.norm(err_vec, axis=1)
    pre = (res.t >= t0 - 15.0) & (res.t < t0)
    dur = (res.t >= t0) & (res.t < t1)
    aft = (res.t >= t1) & (res.t < t1 + AFTER_S)
    p95 = float(np.percentile(err[pre], 95)) if pre.any() else float("nan")
    thr = max(2.0 * p95, p95 + 0.5) if np.isfinite(p95) else 2.0
    recovery = float("nan")
    post = np.flatnonzero(res.t >= t1)
    for i in post:
        hold = (res.t >= res.t[i]) & (res.t < res.t[i] + 3.0)
        if res.t[i] + 3.0 <= res.t[-1] and np.all(err[hold] <= thr):
            recovery = float(max(0.0, res.t[i] - t1))
            break
    win = (res.t >= t0) & (res.t < t1 + AFTER_S)
    outside = float("nan")
    if win.any():
        d2 = []
        for e, C in zip(err_vec[win], res.cov_xy[win]):
            try:
                d2.append(float(e @ np.linalg.solve(C, e)))
            except np.linalg.LinAlgError:
                d2.append(np.inf)
        outside = float(np.mean(np.asarray(d2) > CHI2_2_3SIGMA))
    alarms = res.alarms_between(t0, t1 + AFTER_S)
    if clean is not None:
        base = clean.alarms_between(t0, t1 + AFTER_S)
        alarms = Counter({k: v - base.get(k, 0) for k, v in alarms.items() if v - base.get(k, 0) > 0})
    pat = re.compile(EXPECTED.get(iv.kind, r"."))
    alarms = Counter({k: v for k, v in alarms.items() if pat.search(k)})
    return {"fault": res.name, "injected": int(res.faults.injected), "detected": int(sum(alarms.values())),
            "crashes": int(res.crashes), "ate_pre_m": _rms(err[pre]), "ate_during_m": _rms(err[dur]),
            "ate_after_m": _rms(err[aft]), "recovery_s": recovery, "recover_threshold_m": thr,
            "outside_3sigma": outside, "estimates": int(len(res.t)),
            "localized_fraction": float(np.mean(res.mode[win] == "localized")) if win.any() else float("nan"),
            "alarms": dict(sorted(alarms.items(), key=lambda kv: -kv[1])[:4])}


def truth_error(scene: FaultScene, res: CaseResult) -> np.ndarray:
    """(M,) horizontal error (m) of every recorded estimate."""
    return np.linalg.norm(res.xy - scene.truth_xy(res.t), axis=1) if len(res.t) else np.zeros(0)



# ---- global localization rows ---------------------------------------------------------------
def far_initial_pose(scene: FaultScene, offset_m: float = 30.0, t_service_s: float = 15.0,
                     cfg=None) -> dict:
    """The robot is told it is ``offset_m`` away from where it is (no GNSS). After
    ``t_service_s`` the ``global_localize`` service runs: its best candidate, fed back as an
    initial pose, must put the estimate back on the truth.

    Returns ``error_before_m`` (just before the service), ``candidate_error_m`` (best candidate
    vs truth), ``candidates``, ``error_after_m`` (RMS over the last 10 s), ``crashes``.
    """
    from geoloc_ros.events import CandidateStatus, GnssEvent, PoseFixEvent
    from geoloc_ros.pipeline import Localizer
    cfg = copy.deepcopy(cfg if cfg is not None else scene.config())
    cfg.fusion.init_from_gnss = False
    loc = Localizer(cfg, scene.mapdir, datum=scene.datum)
    t_init = scene.t_start + 0.5
    T0 = scene.traj.poses(np.array([t_init]))[0].copy()
    T0[:2, 3] += offset_m * np.array([np.cos(0.7), np.sin(0.7)])
    init = PoseFixEvent(t_init, T0, np.diag([0.25, 0.25, 0.25, 0.01, 0.01, 0.01]), source="initialpose")
    events = sorted([e for e in scene.events if not isinstance(e, GnssEvent)] + [init], key=lambda e: e.t)
    t_srv = scene.t_start + t_service_s
    out = {"crashes": 0, "candidates": 0, "candidate_error_m": float("nan")}
    errs_before, errs_after = [], []
    served = False
    for e in events:
        if not served and e.t >= t_srv and loc.last_scan is not None:
            served = True
            cands = [c for c in loc.global_localize() if c.status == CandidateStatus.OK]
            out["candidates"] = len(cands)
            if cands:
                ts = loc.last_scan.t_middle
                best = cands[0]
                out["candidate_error_m"] = float(np.linalg.norm(best.T_map_base[:2, 3] - scene.truth_xy([ts])[0]))
                loc.process(PoseFixEvent(ts, best.T_map_base, best.cov6, source="initialpose"))
        try:
            est = loc.process(e)
        except Exception:  # noqa: BLE001
            out["crashes"] += 1
            continue
        if est is None:
            continue
        err = float(np.linalg.norm(est.T_map_base[:2, 3] - scene.truth_xy([est.t])[0]))
        if not served and est.t >= t_srv - 1.0:
            errs_before.append(err)
        if est.t >= scene.t_end - 10.0:
            errs_after.append(err)
    out["error_before_m"] = float(np.mean(errs_before)) if errs_before else float("nan")
    out["error_after_m"] = _rms(np.asarray(errs_after)) if errs_after else float("nan")
    return out


def outside_map(scene: FaultScene, cfg=None, wheels: bool = True) -> dict:
    """The robot drives a town that is not the mapped one, without GNSS (and, ``wheels=False``,
    without wheel odometry: IMU only, as a handheld rig): the pipeline must not publish a
    confident pose. Returns ``estimates``, ``localized_fraction`` (epochs in mode
    ``localized``: each one is a confident wrong pose), ``bev_fixes_accepted``, ``bev_ok``
    (OK answers the BEV engine gave: all wrong), ``crashes``, and ``service_candidates`` (OK
    candidates of ``global_localize`` at the end: wrong by construction)."""
    from geoloc_ros.events import CandidateStatus, GnssEvent, WheelEvent
    res = run_case(scene, [], "outside_map", cfg=cfg, drop=(GnssEvent,) if wheels else (GnssEvent, WheelEvent))
    loc = res.localizer
    cands = [c for c in loc.global_localize() if c.status == CandidateStatus.OK]
    return {"estimates": int(len(res.t)), "crashes": res.crashes,
            "localized_fraction": float(np.mean(res.mode == "localized")) if len(res.t) else 0.0,
            "bev_fixes_accepted": int(loc.stats["bev"].accepted), "bev_ok": int(loc.stats["bev"].fixes),
            "service_candidates": len(cands),
            "modes": dict(Counter(res.mode.tolist()))}
