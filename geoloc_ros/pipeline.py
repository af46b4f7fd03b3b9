"""The localization pipeline: one object, one ``process`` step, the same for ROS and replay.

``Localizer.process(event)`` reads as the list of steps the pipeline takes:

1. check the event's stamp against the newest one (a jump backwards or forwards resets the
   filter), its frame id, and watch for a LiDAR silence ("no scan for N s"); scans lose their
   non-finite points (counted; :mod:`geoloc_ros.input_checks`);
2. a LiDAR scan feeds the object engine's submap and, at most every ``bev_period_s``, a BEV
   global query; accepted candidates become pose fixes of the filter;
3. a camera frame feeds the object engine;
4. IMU, wheel, GNSS and operator pose fixes go to the fusion filter; engine fixes from another
   process (``PoseFixEvent`` with source ``bev``/``objects``: the split layout) take the engine
   candidates' path of step 2, confirmation included;
5. the filter's newest estimate is returned, labelled with the engines' state.

Nothing here imports ROS; ``geoloc_ros.nodes`` and ``geoloc replay`` both drive this class.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
import re
import time
from bisect import bisect_right
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field

import numpy as np

from geoloc_ros.config import GeolocConfig
from geoloc_ros.events import (Candidate, CandidateStatus, GnssEvent, ImageEvent, ImuEvent,
                               PoseEstimate, PoseFixEvent, ScanEvent, VelocityEvent, WheelEvent)
from geoloc_ros.geometry import se2, se2_from_matrix, se3_inverse, wrap_angle, yaw_of
from geoloc_ros.input_checks import InputChecks

log = logging.getLogger("geoloc_ros.pipeline")

__all__ = ["Localizer", "EngineStats", "ENGINE_SOURCES"]

#: uncalibrated gyro bias allowed when fixes are confirmed through the gyro's heading change (rad/s)
GYRO_BIAS_ALLOWANCE_RPS = 0.01


@dataclass
class EngineStats:
    """Counts and per-stage latencies (ms) of one engine, for diagnostics and the report."""
    queries: int = 0
    fixes: int = 0
    accepted: int = 0
    no_fix_reasons: dict = field(default_factory=lambda: defaultdict(int))
    latency_ms: dict = field(default_factory=lambda: defaultdict(list))
    last_candidate: Candidate | None = None
    answers_t: list = field(default_factory=list)   # stamp of every query (s)
    answers_T: list = field(default_factory=list)   # its pose, NaN when no fix (4x4)

    def record(self, t: float, cand: Candidate | None, keep: int = 20000) -> None:
        """Keep every query's answer (for scoring against ground truth)."""
        ok = cand is not None and cand.status == CandidateStatus.OK and cand.T_map_base is not None
        self.answers_t.append(float(t))
        self.answers_T.append(np.asarray(cand.T_map_base, float) if ok else np.full((4, 4), np.nan))
        if len(self.answers_t) > keep:
            del self.answers_t[0], self.answers_T[0]

    def fixes_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.answers_t)
        return np.asarray(self.answers_t, float), np.asarray(self.answers_T, float).reshape(n, 4, 4)

    def add_latency(self, stage: str, ms: float, keep: int = 5000) -> None:
        lst = self.latency_ms[stage]
        lst.append(float(ms))
        if len(lst) > keep:
            del lst[: len(lst) - keep]


def reason_key(reason: str) -> str:
    """A reason without its numbers and details, so that counts group ("only 6 matches" ~ "only 9 matches")."""
    return re.sub(r"\d+(\.\d+)?", "N", reason or "no fix").strip() or "no fix"


#: pose-fix sources that are engine answers (confirmed before they may initialize the filter)
ENGINE_SOURCES = ("bev", "objects")


def _well_formed(fix: PoseFixEvent) -> bool:
    """A finite (4, 4) pose and (6, 6) covariance (anything else is the filter's to reject and count)."""
    T, C = np.asarray(fix.T_map_base), np.asarray(fix.cov6)
    return (T.shape == (4, 4) and C.shape == (6, 6) and np.issubdtype(T.dtype, np.number)
            and np.issubdtype(C.dtype, np.number) and bool(np.isfinite(T).all() and np.isfinite(C).all()))


def _candidate_to_fix(c: Candidate, t: float) -> PoseFixEvent:
    dof = "xyzyaw" if c.source == "objects" else "xyyaw"
    return PoseFixEvent(t=t, T_map_base=c.T_map_base, cov6=c.cov6, source=c.source or "engine",
                        frame_id="map", dof=dof)


class Localizer:
    """Feeds time-stamped events to the engines and the filter; returns map-frame estimates.

    Parameters
    ----------
    cfg : GeolocConfig
    mapdir : geoloc_ros.maps.mapdir.MapDir or None
        The prior map. Without one the engines are off and the filter runs on IMU/wheel/GNSS
        (GNSS needs a datum: from the map, or ``datum``).
    datum : geoloc_ros.fusion.gnss.Datum or None
        Overrides the map's datum.
    profile : geoloc_ros.io.profiles.Profile or None
        The sensor profile (default: ``cfg.profile``); its GNSS antenna extrinsic becomes the
        filter's lever arm.
    """

    def __init__(self, cfg: GeolocConfig | None = None, mapdir=None, datum=None, profile=None):
        from geoloc_ros.fusion.filter import FusionFilter
        from geoloc_ros.fusion.gnss import Datum

        self.cfg = copy.deepcopy(cfg) if cfg is not None else GeolocConfig()
        if profile is None and self.cfg.profile:
            from geoloc_ros.io.profiles import load_profile
            profile = load_profile(self.cfg.profile)   # ProfileError names the field or file
        if profile is not None and "gnss" in getattr(profile, "roles", {}):
            self.cfg.fusion.gnss_lever_m = [float(x) for x in profile.roles["gnss"].T_base_sensor[:3, 3]]
        self.mapdir = mapdir
        if datum is None and mapdir is not None and mapdir.has("datum.json"):
            datum = Datum.load(mapdir)
        self.datum = datum
        self.filter = FusionFilter(self.cfg.fusion, datum=datum)
        self.bev = None
        self.objects = None
        self.stats = {"bev": EngineStats(), "objects": EngineStats(), "filter": EngineStats()}
        if mapdir is not None:
            self._load_engines(mapdir)
        from geoloc_ros.odometry.lidar import LidarOdometry, odometry_enabled
        self.lidar_odom = LidarOdometry(self.cfg.odometry) if odometry_enabled(self.cfg.odometry, profile) else None
        if self.lidar_odom is not None:
            self.stats["odometry"] = EngineStats()
        self.last_scan: ScanEvent | None = None
        self.last_image: ImageEvent | None = None
        self.last_estimate: PoseEstimate | None = None
        self._t_last = -np.inf
        self._t_last_bev = -np.inf
        self._pending: list[tuple[float, Candidate, np.ndarray | None, float | None]] = []
        self.resets = 0
        #: (t_s, x_m, y_m, yaw_rad) of the odometry (:meth:`_odom_xyyaw`), newest last: a fix
        #: stamped in the past (from another process, late) is confirmed against the odometry then
        self._odom_hist: deque = deque(maxlen=600)
        self.checks = InputChecks(self.cfg)   # frames, NaN points, LiDAR gaps, floods (counted)
        self._reset_input_watch()

    # ---- set-up --------------------------------------------------------------------------
    def _load_engines(self, mapdir) -> None:
        if self.cfg.enable_bev and mapdir.has("bev_meta.json"):
            from geoloc_ros.bev.database import BevDatabase
            from geoloc_ros.bev.engine import BevLocalizer
            self.bev = BevLocalizer(self.cfg.bev, BevDatabase.load(mapdir, self.cfg.bev))
        elif self.cfg.enable_bev:
            log.warning("map %s has no BEV database: BEV engine off", mapdir.root)
        if self.cfg.enable_objects and mapdir.has("objects.npz"):
            from geoloc_ros.objects.engine import ObjectLocalizer
            from geoloc_ros.objects.map import ObjectMap
            self.objects = ObjectLocalizer(self.cfg.objects, ObjectMap.load(mapdir))
        elif self.cfg.enable_objects:
            log.warning("map %s has no object map: object engine off", mapdir.root)

    def reset(self) -> None:
        """Forget the filter state and the engines' partial submaps (the map stays)."""
        self.filter.reset()
        if self.objects is not None and hasattr(self.objects, "reset"):
            self.objects.reset()
        if self.lidar_odom is not None:
            self.lidar_odom.reset()
        self._t_last = -np.inf
        self._t_last_bev = -np.inf
        self._pending.clear()
        self._odom_hist.clear()
        self.last_estimate = None
        self.resets += 1
        self._reset_input_watch()

    # ---- the step ------------------------------------------------------------------------
    def process(self, event) -> PoseEstimate | None:
        """Consume one event; return the newest estimate when the filter produced one."""
        if not self._check_clock(event.t):
            return None
        event = self.checks.admit(event)
        if event is None:
            return None
        if isinstance(event, ScanEvent):
            self._on_scan(event)
            est = self.filter.estimate() if self.filter_initialized() else None
        elif isinstance(event, ImageEvent):
            self._on_image(event)
            est = None
        elif isinstance(event, PoseFixEvent) and event.source in ENGINE_SOURCES \
                and _well_formed(event):
            # an engine's answer from another process (split layout: fusion_node gets
            # bev_localizer's geoloc/bev_fix) takes the path of the in-process candidates: while
            # unlocalized it initializes the filter only once confirmed (an operator's
            # initialpose, or a malformed fix the filter rejects and counts, goes straight on)
            cand = Candidate(T_map_base=np.asarray(event.T_map_base, float),
                             cov6=np.asarray(event.cov6, float), score=float("nan"),
                             status=CandidateStatus.OK, reason="fix from another node",
                             source=event.source)
            accepted = self._offer(cand, event.t, event.source, fix=event)
            est = self.filter.estimate() if accepted and self.filter_initialized() else None
        elif isinstance(event, (ImuEvent, WheelEvent, VelocityEvent, GnssEvent, PoseFixEvent)):
            est = self.filter.process(event)
            if isinstance(event, ImuEvent):
                self._track_heading(event)
        else:
            raise TypeError(f"Localizer.process: unsupported event type {type(event).__name__}")
        if isinstance(event, (WheelEvent, VelocityEvent, ScanEvent)):
            self._record_odom(float(event.t))
        if est is not None:
            if self.counters:   # the pipeline's own checks travel with the estimate (diagnostics)
                est.counters = {**(est.counters or {}),
                                **{f"pipeline.{k}": v for k, v in self.counters.items()}}
            self.last_estimate = est
        return est

    @property
    def time_jump_reset_s(self) -> float:
        """A stamp this far behind the newest resets the filter (s)."""
        return self.cfg.time_jump_reset_s

    def filter_initialized(self) -> bool:
        return bool(getattr(self.filter, "initialized", True))

    # ---- input checks (before anything reaches an engine or the filter) -----------------------
    @property
    def counters(self) -> Counter:
        """What the input checks and the clock rejected or noticed, and how often (flat names)."""
        return self.checks.counters

    @property
    def reasons(self) -> dict[str, str]:
        """The latest reason per input behind :attr:`counters`."""
        return self.checks.reasons

    def _reset_input_watch(self) -> None:
        """Forget the stream state of the input checks and the heading tracker (after a reset the
        time base changed)."""
        self.checks.reset_streams()
        self._t_imu: float | None = None
        self._g_dir: list | None = None         # [3] low-passed gravity direction in base_link
        self._yaw_gyro = 0.0                    # heading integrated from the gyro about gravity (rad)

    def _track_heading(self, imu: ImuEvent) -> None:
        """Integrate the gyro about the (low-passed) gravity direction: the heading change that
        confirms global fixes where there is no wheel odometry (any tilt, a handheld rig too).
        Plain floats: this runs for every IMU sample."""
        try:
            ax, ay, az = np.asarray(imu.acc_mps2, float).tolist()
            wx, wy, wz = np.asarray(imu.gyr_rps, float).tolist()
        except (TypeError, ValueError):
            return
        n = math.sqrt(ax * ax + ay * ay + az * az)
        if not (math.isfinite(n) and n > 1.0 and math.isfinite(wx + wy + wz)):
            return
        g = self._g_dir
        if g is None:
            g = self._g_dir = [ax / n, ay / n, az / n]
        else:
            g[0] += 0.02 * (ax / n - g[0])
            g[1] += 0.02 * (ay / n - g[1])
            g[2] += 0.02 * (az / n - g[2])
        t = float(imu.t)
        if self._t_imu is not None and 0.0 < t - self._t_imu < 1.0:
            gn = math.sqrt(g[0] * g[0] + g[1] * g[1] + g[2] * g[2])
            self._yaw_gyro += (wx * g[0] + wy * g[1] + wz * g[2]) / gn * (t - self._t_imu)
        if self._t_imu is None or t > self._t_imu:
            self._t_imu = t

    def _check_clock(self, t: float) -> bool:
        if not np.isfinite(t):
            self.stats["filter"].no_fix_reasons["non-finite stamp"] += 1
            self.checks.count("clock.non_finite_stamp", "event with a non-finite stamp dropped")
            return False
        if t < self._t_last - self.time_jump_reset_s:
            self.checks.count("clock.jumped_backwards", f"time jumped backwards by {self._t_last - t:.2f} s "
                        "(bag loop?): resetting the filter")
            self.reset()
            self.stats["filter"].no_fix_reasons["reset: time jumped backwards"] += 1
        elif np.isfinite(self._t_last) and t > self._t_last + self.cfg.time_jump_forward_s:
            self.checks.count("clock.jumped_forwards", f"time jumped forwards by {t - self._t_last:.1f} s (clock "
                        "jump or restarted recorder): resetting the filter instead of integrating the gap")
            self.reset()
            self.stats["filter"].no_fix_reasons["reset: time jumped forwards"] += 1
        self._t_last = max(self._t_last, t)
        return True

    def _odom_pose(self) -> np.ndarray | None:
        """T_odom_base from the filter's newest estimate (continuous frame), None before init."""
        est = self.last_estimate
        if est is None:
            return None
        if est.T_map_odom is not None:
            return se3_inverse(est.T_map_odom) @ est.T_map_base
        return est.T_map_base

    def _on_scan(self, scan: ScanEvent) -> None:
        self.last_scan = scan
        if self.lidar_odom is not None:
            self._lidar_odometry(scan)
        if self.objects is not None:
            T_odom_base = self._odom_pose()
            if T_odom_base is not None:
                t0 = time.perf_counter()
                cand = self._guarded("objects", lambda: (self.objects.add_scan(scan, T_odom_base),
                                                         self.objects.step())[1])
                self.stats["objects"].add_latency("total", 1e3 * (time.perf_counter() - t0))
                if cand is not None:
                    self._offer(cand, scan.t, "objects")
        if self.bev is not None and scan.t - self._t_last_bev >= self.cfg.bev_period_s:
            self._t_last_bev = scan.t
            self._bev_query(scan)

    def _lidar_odometry(self, scan: ScanEvent) -> None:
        """LiDAR odometry on the scan; its body velocity goes to the filter (``stats['odometry']``:
        queries = scans, fixes = velocities, accepted = velocities the filter took)."""
        st = self.stats["odometry"]
        res = self._guarded("odometry", lambda: self.lidar_odom.step(scan))
        if res is None:
            return
        st.queries += 1
        st.add_latency("total", res.info.get("latency_ms", float("nan")))
        if not res.ok:
            st.no_fix_reasons[reason_key(res.reason)] += 1
            return
        if res.velocity is not None:
            st.fixes += 1
            vel = res.velocity
            if not self.cfg.odometry.use_angular_rate:
                vel = dataclasses.replace(vel, w_rps=None, cov_w=None)
            if self.filter.process(vel) is not None:
                st.accepted += 1

    def _on_image(self, img: ImageEvent) -> None:
        self.last_image = img
        if self.objects is not None:
            T_odom_base = self._odom_pose()
            if T_odom_base is not None:
                self._guarded("objects", lambda: self.objects.add_image(img, T_odom_base))

    def _bev_query(self, scan: ScanEvent) -> list[Candidate]:
        st = self.stats["bev"]
        t0 = time.perf_counter()
        cands = self._guarded("bev", lambda: self.bev.localize(scan)) or []
        st.add_latency("total", 1e3 * (time.perf_counter() - t0))
        for stage, ms in (cands[0].info.get("latency_ms", {}) if cands else {}).items():
            st.add_latency(stage, ms)
        if cands:
            self._offer(cands[0], scan.t_middle, "bev")      # the image shows the robot mid-sweep
        else:
            st.queries += 1
            st.record(scan.t_middle, None)
            st.no_fix_reasons["no candidate"] += 1
        return cands

    def _guarded(self, engine: str, fn):
        """Run an engine step; an exception inside an engine is counted and logged, never fatal."""
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - the localizer must survive any engine failure
            self.stats[engine].no_fix_reasons[f"engine error: {type(e).__name__}"] += 1
            log.error("%s engine failed (%s: %s); continuing without its answer", engine,
                      type(e).__name__, e, exc_info=log.isEnabledFor(logging.DEBUG))
            return None

    def _odom_xyyaw(self) -> np.ndarray | None:
        """(x, y, yaw) of the filter's continuous wheel odometry; without wheels, of the LiDAR
        odometry when it runs; None without either."""
        xyyaw = self.filter.odom_xyyaw()
        if xyyaw is None and self.lidar_odom is not None:
            xyyaw = self.lidar_odom.odom_xyyaw()
        return xyyaw

    def _record_odom(self, t: float) -> None:
        o = self._odom_xyyaw()
        if o is not None and (not self._odom_hist or t > self._odom_hist[-1][0]):
            self._odom_hist.append((t, float(o[0]), float(o[1]), float(o[2])))

    def _odom_at(self, t: float) -> np.ndarray | None:
        """(x, y, yaw) of the odometry at stamp ``t``: the newest when ``t`` is not older than
        the history's newest entry (an in-process fix), else interpolated in the history (a fix
        that arrived late from another process), the oldest entry when ``t`` is older still."""
        odom = self._odom_xyyaw()
        h = self._odom_hist
        if odom is None or not h or t >= h[-1][0]:
            return odom
        i = bisect_right([e[0] for e in h], t)
        if i == 0:
            return np.array(h[0][1:])
        (t0, x0, y0, a0), (t1, x1, y1, a1) = h[i - 1], h[i]
        f = (t - t0) / (t1 - t0)
        return np.array([x0 + f * (x1 - x0), y0 + f * (y1 - y0), a0 + f * float(wrap_angle(a1 - a0))])

    def _confirmed(self, cand: Candidate, t: float) -> bool:
        """A global fix may initialize an unlocalized filter only when ``confirm_fixes`` fixes
        agree, each carried forward by the odometry between them (wheels, else LiDAR odometry),
        over at least ``confirm_travel_m`` (a single place-recognition answer in a repetitive
        street is too easily confidently wrong). Without either, fixes agree when their difference is
        within what the robot can have moved (``confirm_max_speed_mps``), their heading change is
        the gyro's (within ``confirm_yaw_rad`` plus :data:`GYRO_BIAS_ALLOWANCE_RPS` per second;
        without IMU, half a radian per second), and they span that travel in the map."""
        cfg = self.cfg
        if cfg.confirm_fixes <= 1:
            return True
        odom = self._odom_at(t)
        self._pending = [p for p in self._pending if t - p[0] <= cfg.confirm_window_s]
        x, y, th = se2_from_matrix(cand.T_map_base)
        yaw_g = self._yaw_gyro if self._t_imu is not None and t - self._t_imu < 1.0 else None
        agree, span = 0, 0.0
        for t0, c0, o0, g0 in self._pending:
            x0, y0, th0 = se2_from_matrix(c0.T_map_base)
            if odom is not None and o0 is not None:
                rel = np.linalg.inv(se2(*o0)) @ se2(*odom)
                travel = float(np.hypot(*rel[:2, 2]))
                px, py, pth = se2_from_matrix(se2(x0, y0, th0) @ rel)
                ok = (np.hypot(px - x, py - y) < cfg.confirm_dist_m + 0.05 * travel
                      and abs(float(wrap_angle(pth - th))) < cfg.confirm_yaw_rad)
            else:
                dt = abs(t - t0)
                travel = float(np.hypot(x - x0, y - y0))
                if yaw_g is not None and g0 is not None:   # the gyro says how much the heading turned
                    yaw_ok = abs(float(wrap_angle(th - th0 - (yaw_g - g0)))) < \
                        cfg.confirm_yaw_rad + GYRO_BIAS_ALLOWANCE_RPS * dt
                else:
                    yaw_ok = abs(float(wrap_angle(th - th0))) < cfg.confirm_yaw_rad + 0.5 * dt
                ok = travel < cfg.confirm_dist_m + cfg.confirm_max_speed_mps * dt and yaw_ok
            if ok:
                agree += 1
                span = max(span, travel)
        self._pending.append((t, cand, odom, yaw_g))
        return agree + 1 >= cfg.confirm_fixes and span >= cfg.confirm_travel_m

    def _localized(self) -> bool:
        est = self.last_estimate
        return est is not None and est.mode == "localized"

    def _offer(self, cand: Candidate, t: float, source: str, fix: PoseFixEvent | None = None) -> bool:
        """Feed an engine candidate to the filter: unlocalized, only once confirmed by others;
        localized, the filter's own NIS gate decides. ``fix``: the candidate as the pose fix
        another process sent (its dof kept); by default made from the candidate."""
        st = self.stats[source]
        st.queries += 1
        st.last_candidate = cand
        st.record(t, cand)
        if cand.status != CandidateStatus.OK or cand.T_map_base is None:
            st.no_fix_reasons[reason_key(cand.reason)] += 1
            return False
        st.fixes += 1
        cand.source = cand.source or source
        if not self._localized() and not self._confirmed(cand, t):
            st.no_fix_reasons["awaiting fixes that agree through odometry"] += 1
            return False
        if fix is None:
            fix = _candidate_to_fix(cand, t)
        if self.filter.process(fix) is None and self.filter_initialized():
            if self._confirmed(cand, t):
                # fixes that agree with each other but not with the filter: the filter is lost
                # (dead reckoning drifted past its own covariance); never lock out forever
                log.warning("%d %s fixes agree with each other but not with the filter: "
                            "re-initializing from them", self.cfg.confirm_fixes, source)
                self._pending.clear()
                fix = dataclasses.replace(fix, source="initialpose")   # the filter re-initializes at it, keeping its IMU/wheel state
                self.filter.process(fix)
                st.no_fix_reasons["re-initialized the filter (it disagreed with agreeing fixes)"] += 1
                st.accepted += 1
                return True
            st.no_fix_reasons["rejected by the filter's gate"] += 1
            return False
        st.accepted += 1
        return True

    # ---- on demand -----------------------------------------------------------------------
    def global_localize(self) -> list[Candidate]:
        """Run the BEV engine on the latest scan (any heading, no prior) and return ranked candidates."""
        out: list[Candidate] = []
        if self.bev is not None and self.last_scan is not None:
            out += [c for c in self.bev.localize(self.last_scan) if c.status == CandidateStatus.OK]
        if self.objects is not None and hasattr(self.objects, "global_localize"):
            c = self.objects.global_localize()
            if c is not None and c.status == CandidateStatus.OK:
                out.append(c)
        out.sort(key=lambda c: -c.score)
        return out
