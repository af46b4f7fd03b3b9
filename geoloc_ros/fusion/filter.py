"""FusionFilter: the ESKF behind one ``process(event)`` step, with input checks, initialization,
the GNSS degradation monitor, wheel-slip detection, late measurements and map->odom.

``FusionFilter.process(event)`` reads as the list of steps:

1. check the event (finite numbers, positive covariances, frame) -- a bad one is counted with
   its reason and dropped, the estimate keeps going;
2. check its stamp: a jump backwards beyond ``reset_on_time_jump_s`` resets the filter (bag
   loop), a stale IMU sample or a measurement older than ``history_s`` is dropped;
3. before initialization, collect what initialization needs (gravity direction, dead-reckoned
   track, GNSS track) and initialize from an initial pose / trusted global fix / GNSS + motion;
4. IMU: propagate the ESKF and the continuous odom frame;
5. wheel: zero-velocity update when stationary, else slip check then speed + non-holonomic update;
6. GNSS: datum conversion, degradation verdict, update with the verdict's noise (or skip);
7. pose fix: chi-square gate, update, and feed the monitor's spoof/datum check;
   a measurement older than the state is applied at its own stamp (rewind + replay).
"""
from __future__ import annotations

import logging
import math
from collections import Counter, deque

import numpy as np

from geoloc_ros.events import (FixStatus, GnssEvent, ImuEvent, PoseEstimate, PoseFixEvent, VelocityEvent,
                               Verdict, WheelEvent)
from geoloc_ros.fusion.anchor import Anchor, reanchor
from geoloc_ros.fusion.deadreckon import OdomTrack
from geoloc_ros.fusion.config import FusionConfig
from geoloc_ros.fusion.eskf import KS_, BodyVelocity, ErrorStateKF, GnssPosition, PoseFix, WheelSpeed, ZeroVelocity
from geoloc_ros.fusion.gnss import Datum, GnssAssessment, GnssMonitor
from geoloc_ros.fusion.slip import WheelSlipDetector
from geoloc_ros.fusion.init import gnss_motion_heading, initial_covariance, tilt_from_acc
from geoloc_ros.geometry import rot_z, wrap_angle

log = logging.getLogger("geoloc_ros.fusion")

__all__ = ["FusionFilter"]

_KINDS = ((ImuEvent, "imu"), (WheelEvent, "wheel"), (GnssEvent, "gnss"), (PoseFixEvent, "fix"),
          (VelocityEvent, "velocity"))
# body-velocity (LiDAR odometry) chi-square gate: 99.99 % for 3 and 6 dof; after this many
# consecutive gated velocities the next is applied anyway (a lost filter is never locked out)
_VEL_GATE = {3: 21.11, 6: 27.86}
_VEL_MAX_GATED = 10


def _finite(*xs) -> bool:
    for x in xs:
        if isinstance(x, (float, int)):       # the common case (stamps): no array round trip
            if not math.isfinite(x):
                return False
        elif x is None or not np.all(np.isfinite(np.asarray(x, float))):
            return False
    return True


class FusionFilter:
    """GNSS-degradation-aware error-state filter over IMU, wheel, GNSS and global pose fixes.

    Parameters
    ----------
    cfg : FusionConfig
    datum : Datum or None
        Map datum for GNSS; without one the first valid fix defines it (map = local ENU).
    """

    def __init__(self, cfg: FusionConfig | None = None, datum: Datum | None = None):
        self.cfg = cfg or FusionConfig()
        self.datum0 = datum
        self.kf = ErrorStateKF(self.cfg)
        self.monitor = GnssMonitor(self.cfg)
        self.slip = WheelSlipDetector(self.cfg)
        R_bw = rot_z(self.cfg.wheel_yaw_rad)
        self._R_base_wheel = R_bw
        self._wheel_lever = np.asarray(self.cfg.wheel_lever_m, float)
        self._gnss_lever = np.asarray(self.cfg.gnss_lever_m, float)
        self.reset()

    # ---- public API -------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the state (the datum given at construction stays)."""
        self.datum = self.datum0
        self.kf.reset()
        self.monitor.reset()
        self.slip = WheelSlipDetector(self.cfg)
        self.counters: Counter = Counter()
        self.reasons: dict[str, str] = {}
        self.newest_t = None
        self.last_imu_t = None
        self.wheel_v = 0.0
        self.wheel_t = None
        self.wheel_slip = False
        self._acc_buf: deque = deque(maxlen=64)
        self._init_track: list = []
        # continuous odom frame: x, y, yaw (m, m, rad) + path length; history for late lookups
        self.odom = OdomTrack.from_config(self.cfg)
        self._last_est = None
        self._nis_only_since = None
        self._fix_used = False
        # the newest pose fix the filter took: (stamp s, x, y m, yaw rad, odom pose then (3,))
        self._last_fix = None

    @property
    def initialized(self) -> bool:
        return self.kf.initialized

    def process(self, event):
        """Consume one event; return the newest estimate (None before initialization or on reject)."""
        kind = next((k for cls, k in _KINDS if isinstance(event, cls)), None)
        if kind is None:
            return self._reject("input", f"unsupported event type {type(event).__name__}")
        t = getattr(event, "t", None)
        if not _finite(t):
            return self._reject(kind, "non-finite stamp")
        t = float(t)
        if not self._check_time(kind, t):
            return None
        handler = getattr(self, "_on_" + kind)
        ok = handler(event, t)
        if not ok or not self.kf.initialized:
            return None
        self.counters[kind + ".accepted"] += 1
        return self.estimate()

    def odom_xyyaw(self) -> np.ndarray | None:
        """(x, y, yaw) of the continuous odom frame (integrated before initialization too);
        None until wheel odometry has arrived (IMU alone cannot move it before init)."""
        return None if self.wheel_t is None else np.array(self.odom.xyyaw[:3], float)

    def estimate(self) -> PoseEstimate:
        """The current estimate (identity with a huge covariance before initialization)."""
        kf = self.kf
        t_now = self.newest_t if self.newest_t is not None else 0.0
        gnss = self.monitor.current(t_now)
        counters = dict(self.counters)
        if not kf.initialized:
            return PoseEstimate(t=t_now, T_map_base=np.eye(4), cov6=np.eye(6) * 1e6,
                                mode="not_localized", gnss_verdict=gnss.verdict,
                                gnss_reason=gnss.reason, counters=counters)
        cov6 = kf.pose_cov6()
        var_h = max(cov6.item(0), cov6.item(7))      # .item: Python floats (once per IMU sample)
        std_h = math.sqrt(var_h) if var_h >= 0.0 else math.nan
        mode = ("localized" if std_h < self.cfg.localized_pos_std_m else
                "dead_reckoning" if std_h < self.cfg.max_pos_std_m else "not_localized")
        T = kf.pose()
        T_map_odom = None
        if self.cfg.track_odom:   # = T_map_base @ inv(T_odom_base): a yaw + xy transform
            ox, oy, oyaw = self.odom.xyyaw.tolist()
            R, p = kf.R, kf.p
            d = math.atan2(R.item(3), R.item(0)) - oyaw
            c, s = math.cos(d), math.sin(d)
            T_map_odom = np.array([[c, -s, 0.0, p.item(0) - c * ox + s * oy],
                                   [s, c, 0.0, p.item(1) - s * ox - c * oy],
                                   [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
        return PoseEstimate(t=kf.t, T_map_base=T, cov6=cov6, twist=kf.twist(), mode=mode,
                            gnss_verdict=gnss.verdict, gnss_reason=gnss.reason,
                            wheel_slip=self.wheel_slip, wheel_scale=float(kf.ks),
                            wheel_scale_std=math.sqrt(max(kf.P.item(KS_, KS_), 0.0)),
                            counters=counters, T_map_odom=T_map_odom)

    # ---- step 1-2: checks --------------------------------------------------------------------
    def _reject(self, kind: str, reason: str):
        head = reason.split(" (")[0].split(":")[0]
        key = f"{kind}.rejected." + " ".join(w for w in head.split() if not any(c.isdigit() for c in w))
        self.counters[key] += 1
        self.counters[kind + ".rejected"] += 1
        self.reasons[kind] = reason
        if self.counters[key] <= 3:
            log.info("%s rejected: %s", kind, reason)
        return None

    def _check_time(self, kind: str, t: float) -> bool:
        if self.newest_t is not None and t < self.newest_t - self.cfg.reset_on_time_jump_s:
            log.warning("time jumped backwards by %.2f s (bag loop?): resetting the filter",
                        self.newest_t - t)
            n_resets = self.counters["resets"] + 1
            self.reset()
            self.counters["resets"] = n_resets
            self.reasons["reset"] = f"time jumped backwards to {t:.3f}"
        if kind == "imu" and self.last_imu_t is not None and t <= self.last_imu_t:
            self._reject("imu", f"stale or out-of-order IMU stamp ({t - self.last_imu_t:+.4f} s)")
            return False
        if self.newest_t is not None and t < self.newest_t - self.cfg.history_s:
            self._reject(kind, f"too late ({self.newest_t - t:.2f} s behind, history "
                               f"{self.cfg.history_s:g} s)")
            return False
        if self.kf.initialized and t < self.kf.t and not self.kf.can_rewind(t):
            self._reject(kind, f"too late (before the state history, {self.kf.t - t:.2f} s)")
            return False
        return True

    def _advance_clock(self, t: float) -> None:
        self.newest_t = t if self.newest_t is None else max(self.newest_t, t)

    # ---- step 4: IMU -------------------------------------------------------------------------
    def _on_imu(self, ev: ImuEvent, t: float):
        try:
            acc = np.asarray(ev.acc_mps2, float).reshape(3)
            gyr = np.asarray(ev.gyr_rps, float).reshape(3)
        except (TypeError, ValueError):
            return self._reject("imu", "NaN/inf or malformed sample")
        a2, w2 = float(acc @ acc), float(gyr @ gyr)
        if not (math.isfinite(a2) and math.isfinite(w2)):
            return self._reject("imu", "NaN/inf or malformed sample")
        if a2 > self.cfg.imu_acc_max_mps2 ** 2 or w2 > self.cfg.imu_gyr_max_rps ** 2:
            return self._reject("imu", "sample over the sensor range")
        self._advance_clock(t)
        gap = None if self.last_imu_t is None else t - self.last_imu_t
        self.last_imu_t = t
        kf = self.kf
        if kf.initialized and gap is not None and gap > self.cfg.imu_max_dt_s:
            # bridged on the last sample held (the covariance grows with the gap), but counted
            self.counters["imu.gaps"] += 1
            self.reasons["imu"] = (f"IMU gap of {gap:.2f} s (> imu_max_dt_s {self.cfg.imu_max_dt_s:g} s): "
                                   "propagated on the last sample")
            if self.counters["imu.gaps"] <= 3:
                log.warning("%s", self.reasons["imu"])
            self.monitor.break_dead_reckoning()
        if kf.initialized:
            if t < kf.t:   # IMU older than a measurement already applied: re-run history
                steps = kf.rewind(t)
                kf.propagate(t, acc, gyr)
                kf.replay(steps)
            else:
                kf.propagate(t, acc, gyr)
        else:
            self._acc_buf.append(acc)
            kf.acc, kf.gyr = acc, gyr
        self._integrate_odom(t, gyr)
        return True

    def _integrate_odom(self, t: float, gyr) -> None:
        """Continuous odom frame from body speed and yaw rate (never jumps); the gyro bias is the
        one ``odom_gyro_bias`` names (:mod:`geoloc_ros.fusion.deadreckon`)."""
        kf = self.kf
        if not kf.initialized:
            self.odom.step(t, self.wheel_v, 0.0, float(gyr[2]))
            return
        r20, r21, r22 = kf.R[2].tolist()         # map-frame yaw rate: (R (gyr - bias))_z
        w0, w1, w2 = (gyr - self.odom.lagged_bias(t, kf.bg)).tolist()
        wz = r20 * w0 + r21 * w1 + r22 * w2
        if self.wheel_t is not None and t - self.wheel_t < 0.5 and not self.wheel_slip:
            self.odom.step(t, self.wheel_v / kf.ks, 0.0, wz)      # with the estimated wheel scale
        else:      # no usable wheels: the filter's own velocity
            yaw = np.arctan2(kf.R[1, 0], kf.R[0, 0])
            c, s = np.cos(yaw), np.sin(yaw)
            self.odom.step(t, c * kf.v[0] + s * kf.v[1], -s * kf.v[0] + c * kf.v[1], wz)

    # ---- step 5: wheel -----------------------------------------------------------------------
    def _on_wheel(self, ev: WheelEvent, t: float):
        if not _finite(ev.v_mps, ev.yaw_rate_rps, ev.var_v, ev.var_yaw_rate):
            return self._reject("wheel", "NaN/inf in wheel odometry")
        if ev.var_v <= 0 or ev.var_yaw_rate <= 0:
            return self._reject("wheel", "zero or negative covariance")
        self._advance_clock(t)
        v = float(ev.v_mps) * self.cfg.wheel_scale
        self.wheel_v, self.wheel_t = v, t
        kf = self.kf
        if not kf.initialized:
            return True
        cfg = self.cfg
        stationary = abs(v) < cfg.zupt_speed_mps and np.linalg.norm(kf.gyr - kf.bg) < cfg.zupt_gyr_rps
        if stationary:
            meas = ZeroVelocity(t, cfg.zupt_std_mps)
            # a wheel reading 0 while the IMU-propagated filter moves is a frozen/stuck encoder,
            # not a stop: the same slip test as a moving wheel decides
            meas.wheel = WheelSpeed(t, v, max(cfg.wheel_speed_std_mps ** 2, float(ev.var_v)), 1.0,
                                    self._R_base_wheel, self._wheel_lever, nhc=False)
        else:
            std = max(cfg.wheel_speed_std_mps, cfg.wheel_speed_rel_std * abs(v), np.sqrt(ev.var_v))
            yr = None
            if cfg.use_wheel_yaw_rate and cfg.wheel_yaw_rate_std_rps > 0:
                yr = float(ev.yaw_rate_rps)
            meas = WheelSpeed(t, v, std * std, cfg.nhc_std_mps ** 2, self._R_base_wheel,
                              self._wheel_lever, yr,
                              max(cfg.wheel_yaw_rate_std_rps ** 2, float(ev.var_yaw_rate)))
            meas.var_white = max(cfg.wheel_speed_std_mps ** 2, float(ev.var_v))   # for the slip test
        return self._apply_late_aware(meas, self._wheel_decide)

    def _wheel_decide(self, meas) -> bool:
        """Slip check on the forward speed against the IMU-propagated velocity (skip when slipping)."""
        self.wheel_slip = False
        zupt = isinstance(meas, ZeroVelocity)
        if not self.cfg.degradation_handling:
            if zupt:
                self.counters["wheel.zupt"] += 1
            return True
        w = meas.wheel if zupt else WheelSpeed(meas.t, meas.v, meas.var_white, 1.0, meas.Rbw, meas.lever, nhc=False)
        inn = self.kf.innovation(w)
        slipping = self.slip.check(w.v, w.v - float(inn.residual[0]), float(inn.S[0, 0]), meas.t,
                                    moving=not zupt)
        if not slipping:
            if zupt:
                self.counters["wheel.zupt"] += 1
            return True
        self.wheel_slip = True
        self.counters["wheel.slip"] += 1
        self.reasons["wheel"] = (f"slip{' (wheel reads a stop: frozen encoder?)' if zupt else ''}: wheel "
                                 f"{w.v:.2f} m/s vs predicted {w.v - inn.residual[0]:.2f} m/s")
        return False

    # ---- body velocity (LiDAR odometry) -------------------------------------------------------
    def _on_velocity(self, ev: VelocityEvent, t: float):
        """Body-frame velocity (and angular rate, when ``w_rps`` and ``cov_w`` are given) of
        base_link; chi-square gated, applied at its own stamp (rewind when late)."""
        try:
            v = np.asarray(ev.v_mps, float).reshape(3)
            cv = np.asarray(ev.cov_v, float).reshape(3, 3)
            use_w = ev.w_rps is not None and ev.cov_w is not None
            w = np.asarray(ev.w_rps, float).reshape(3) if use_w else None
            cw = np.asarray(ev.cov_w, float).reshape(3, 3) if use_w else None
        except (TypeError, ValueError):
            return self._reject("velocity", "malformed body velocity or covariance")
        if not _finite(v, cv) or (use_w and not _finite(w, cw)):
            return self._reject("velocity", "NaN/inf in body velocity")
        cv = 0.5 * (cv + cv.T)
        if np.linalg.eigvalsh(cv).min() <= 0 or (use_w and np.linalg.eigvalsh(0.5 * (cw + cw.T)).min() <= 0):
            return self._reject("velocity", "zero or negative covariance")
        self._advance_clock(t)
        if not self.kf.initialized:
            return True
        if use_w:   # the model compares with the held gyro sample: add that sample's noise
            n_imu = self.counters["imu.accepted"]
            t_prev, n_prev = getattr(self, "_vel_imu_mark", (None, 0))
            rate = (n_imu - n_prev) / (t - t_prev) if t_prev is not None and t > t_prev else 0.0
            self._vel_imu_mark = (t, n_imu)
            rate = rate if rate > 0 else 200.0
            cw = 0.5 * (cw + cw.T) + np.eye(3) * self.cfg.gyr_noise ** 2 * rate
        meas = BodyVelocity(t, v, cv, w, cw)
        return self._apply_late_aware(meas, self._velocity_decide)

    def _velocity_decide(self, meas: BodyVelocity) -> bool:
        nis = self.kf.innovation(meas).nis
        gate = _VEL_GATE[3 if meas.w is None else 6]
        n_gated = self.counters.get("velocity.gated_in_a_row", 0)
        if nis <= gate or n_gated >= _VEL_MAX_GATED:
            if nis > gate:
                self.counters["velocity.gate_overridden"] += 1
                self.reasons["velocity"] = f"{n_gated} velocities over the gate in a row: applied anyway"
            self.counters["velocity.gated_in_a_row"] = 0
            return True
        self.counters["velocity.gated_in_a_row"] = n_gated + 1
        self.counters["velocity.gated"] += 1
        self.reasons["velocity"] = f"NIS {nis:.1f} over gate {gate:g}"
        return False

    # ---- late-aware application ---------------------------------------------------------------
    def _apply_late_aware(self, meas, decide) -> bool:
        """Rewind when ``meas`` is older than the state, decide (may skip), update, replay."""
        kf = self.kf
        steps = kf.rewind(meas.t) if meas.t < kf.t else []
        if steps:
            self.counters["late_measurements"] += 1
        if meas.t > kf.t:
            kf.propagate(meas.t)
        use = decide(meas)
        if use:
            kf.update(meas)
        kf.replay(steps)
        return True

    # ---- step 6: GNSS ------------------------------------------------------------------------
    def _on_gnss(self, ev: GnssEvent, t: float):
        if not _finite(ev.lat_deg, ev.lon_deg, ev.alt_m) or abs(ev.lat_deg) > 90 or abs(ev.lon_deg) > 180:
            return self._reject("gnss", "NaN/inf or out-of-range position")
        if ev.status == FixStatus.NO_FIX:
            self._advance_clock(t)
            self.monitor.deny(t, "receiver reports NO_FIX")
            return self._reject("gnss", "status NO_FIX")
        if ev.cov_enu_m2 is None:
            self.monitor.deny(t, "covariance type UNKNOWN")
            return self._reject("gnss", "covariance type UNKNOWN")
        cov = np.asarray(ev.cov_enu_m2, float)
        if cov.shape != (3, 3) or not _finite(cov):
            return self._reject("gnss", "NaN/inf or malformed covariance")
        if np.any(np.diag(cov) <= 0):
            return self._reject("gnss", "zero or negative covariance")
        self._advance_clock(t)
        if self.datum is None:
            self.datum = Datum(ev.lat_deg, ev.lon_deg, ev.alt_m, 0.0)
            log.info("no map datum given: using the first GNSS fix %s (map = local ENU)", self.datum)
        z = self.datum.to_map(ev.lat_deg, ev.lon_deg, ev.alt_m)
        cov_map = self.datum.cov_to_map(0.5 * (cov + cov.T))
        cov_map = cov_map * self.cfg.gnss_cov_scale + np.eye(3) * self.cfg.gnss_min_std_m ** 2
        if not self.kf.initialized:
            self.monitor.note_message(t)
            self.monitor.last = GnssAssessment(Verdict.OK, "collected for initialization")
            self._try_init_gnss(t, z, cov_map)
            return True
        meas = GnssPosition(t, z, cov_map, self._gnss_lever, self.cfg.gnss_use_altitude)
        meas.var_h_reported = float(cov[0, 0] + cov[1, 1])
        self.counters["gnss.epochs"] += 1
        return self._apply_late_aware(meas, self._gnss_decide)

    def _gnss_decide(self, meas: GnssPosition) -> bool:
        kf = self.kf
        horiz = GnssPosition(meas.t, meas.z, meas.cov, meas.lever, use_altitude=False)
        nis = kf.innovation(horiz).nis
        odom, dist = self.odom.at(meas.t)
        yaw_mo = np.arctan2(kf.R[1, 0], kf.R[0, 0]) - self.odom.xyyaw[2]
        cov6 = kf.pose_cov6()
        yaw_std = float(np.sqrt(max(cov6[5, 5], 0.0)))
        anchor = Anchor(meas.t, kf.p.copy(), float(np.arctan2(kf.R[1, 0], kf.R[0, 0])),
                        cov6[np.ix_([0, 1, 5], [0, 1, 5])], odom.copy(), dist, meas.z[:2].copy())
        a = self.monitor.assess(meas.t, meas.z, meas.cov, nis, odom[:2], dist, rot_z(yaw_mo)[:2, :2],
                                meas.var_h_reported, yaw_std, anchor)
        if not self.cfg.degradation_handling:
            self.counters["gnss.verdict.OK"] += 1
            self.monitor.last = type(a)(Verdict.OK, "degradation handling off", 1.0, a.checks)
            return True
        if a.anchor is not None and self.cfg.gnss_reanchor:
            # a jump/drift hold opens: undo what the filter absorbed since the reference epoch
            action, m2 = reanchor(kf, a.anchor, odom, dist, meas.z[:2], self.cfg,
                                  witness_xy=self._fix_witness(a.anchor.t, odom))
            if action == "replaced":
                # the epochs since the anchor carried the fault (only then: a grown covariance
                # says the filter *may* carry it; the epochs stay references, else one false
                # alarm keeps the old reference for minutes)
                self.monitor.distrust_since(a.anchor.t)
                self.counters["gnss.reanchored"] += 1
                self.reasons["gnss_reanchor"] = (f"pose re-anchored on dead reckoning from t={a.anchor.t:.1f} "
                                                 f"(Mahalanobis^2 {m2:.1f}): {a.reason}")
            elif action == "kept":
                self.counters["gnss.reanchor_kept"] += 1
                self.reasons["gnss_reanchor"] = (f"pose kept: the pose fix since t={a.anchor.t:.1f} is nearer to it "
                                                 f"than to dead reckoning: {a.reason}")
            elif action == "inflated":
                self.counters["gnss.reanchor_inflated"] += 1
                self.reasons["gnss_reanchor"] = (f"pose covariance grown by what it may have absorbed since "
                                                 f"t={a.anchor.t:.1f} (dead reckoning too uncertain to re-anchor): {a.reason}")
        self.counters[f"gnss.verdict.{a.verdict.value}"] += 1
        self.last_gnss_assessment = a
        if a.verdict == Verdict.REJECTED and a.reason.startswith("NIS"):
            if self._nis_only_since is None:
                self._nis_only_since = meas.t
            if meas.t - self._nis_only_since > self.cfg.gnss_reset_after_s:
                # never locked out: the filter, not a consistent GNSS, is what is lost
                r = np.append(kf.innovation(horiz).residual, 0.0)
                kf.P[0:3, 0:3] += np.outer(r, r) + meas.cov
                kf.P[8, 8] += 0.1        # heading (rad^2): a lost filter's yaw is suspect too
                kf.P[3:6, 3:6] += np.eye(3) * 0.1 * float(kf.v @ kf.v)
                self.monitor.hold = False
                self.monitor.grace_until = meas.t + self.cfg.gnss_window_s
                self.counters["gnss.covariance_resets"] += 1
                self.reasons["gnss_reset"] = f"GNSS rejected by NIS alone for {meas.t - self._nis_only_since:.0f} s"
                self._nis_only_since = None
                meas.noise_scale = self.cfg.gnss_degraded_scale
                return True
        else:
            self._nis_only_since = None
        if a.verdict in (Verdict.REJECTED, Verdict.DENIED):
            self.reasons["gnss"] = a.reason
            return False
        meas.noise_scale = a.noise_scale
        if meas.rows == slice(0, 3):   # altitude: its own 1-dof gate, else horizontal only
            inn = kf.innovation(meas)
            if inn.residual[2] ** 2 / inn.S[2, 2] > self.cfg.gnss_alt_gate_chi2:
                meas.rows = slice(0, 2)
                self.counters["gnss.altitude_rejected"] += 1
        return True

    def _fix_witness(self, t_after: float, odom_now) -> np.ndarray | None:
        """The newest pose fix taken after ``t_after``, carried to now by the odom increment
        since (map frame x, y, m), or None: independent evidence of where the robot is."""
        f = self._last_fix
        if f is None or f[0] <= t_after:
            return None
        t, x, y, yaw, odom_then = f
        d = np.asarray(odom_now, float)[:2] - odom_then[:2]
        return np.array([x, y]) + rot_z(yaw - odom_then[2])[:2, :2] @ d

    # ---- step 7: pose fixes ------------------------------------------------------------------
    def _on_fix(self, ev: PoseFixEvent, t: float):
        if ev.frame_id != self.cfg.fix_frame:
            return self._reject("fix", f"pose fix in frame '{ev.frame_id}', expected '{self.cfg.fix_frame}'")
        if ev.dof not in PoseFix.ROWS:
            return self._reject("fix", f"unknown dof '{ev.dof}'")
        T = np.asarray(ev.T_map_base, float)
        C = np.asarray(ev.cov6, float)
        if T.shape != (4, 4) or C.shape != (6, 6) or not _finite(T, C):
            return self._reject("fix", "NaN/inf or malformed pose/covariance")
        if np.abs(T[:3, :3] @ T[:3, :3].T - np.eye(3)).max() > 1e-3:
            return self._reject("fix", "rotation is not orthonormal")
        idx = PoseFix.ROWS[ev.dof]
        sub = 0.5 * (C[np.ix_(idx, idx)] + C[np.ix_(idx, idx)].T)
        if np.any(np.diag(sub) <= 0) or np.linalg.eigvalsh(sub).min() <= 0:
            return self._reject("fix", "zero or negative covariance")
        self._advance_clock(t)
        meas = PoseFix(t, T, C, ev.dof)
        if not self.kf.initialized:
            std = np.sqrt(max(C[0, 0], C[1, 1]))
            if std > self.cfg.fix_init_max_std_m and ev.source != "initialpose":
                return self._reject("fix", f"too uncertain to initialize ({std:.1f} m)")
            self._init_from_pose(t, T, C)
            return True
        if ev.source == "initialpose":   # an operator's pose overrides the estimate
            self._init_from_pose(t, T, C)
            return True
        # independent evidence for the spoof/datum check, whatever the filter thinks right now
        self.monitor.add_global_fix(t, T[:3, 3], float(np.sqrt(max(C[0, 0], C[1, 1]))))
        ok = self._apply_late_aware(meas, self._fix_decide)
        return ok and self._fix_used

    def _fix_decide(self, meas: PoseFix) -> bool:
        inn = self.kf.innovation(meas)
        self._fix_used = inn.nis <= self.cfg.fix_nis_gate
        if not self._fix_used:
            self._reject("fix", f"NIS {inn.nis:.1f} over gate {self.cfg.fix_nis_gate:g}")
            return False
        if self._last_fix is None or meas.t >= self._last_fix[0]:
            T = meas.T
            self._last_fix = (meas.t, float(T[0, 3]), float(T[1, 3]), float(np.arctan2(T[1, 0], T[0, 0])),
                              self.odom.at(meas.t)[0].copy())
        return True

    # ---- step 3: initialization --------------------------------------------------------------
    def _tilt(self) -> np.ndarray:
        if not self._acc_buf:
            return np.eye(3)
        return tilt_from_acc(np.mean(np.array(self._acc_buf)[-16:], axis=0))

    def _P0(self, pos_cov, yaw_var) -> np.ndarray:
        return initial_covariance(self.cfg, pos_cov, yaw_var)

    def _init_from_pose(self, t: float, T, C) -> None:
        """Initialize (or re-initialize) from an absolute pose; tilt from gravity unless 'full'."""
        yaw = np.arctan2(T[1, 0], T[0, 0])
        R = rot_z(yaw) @ self._tilt()
        t0 = max(t, self.newest_t or t)
        odom_then, _ = self.odom.at(t)      # carry the pose to now with the odom increment
        d = self.odom.xyyaw - odom_then
        c, s = np.cos(yaw - odom_then[2]), np.sin(yaw - odom_then[2])
        p = T[:3, 3] + np.array([c * d[0] - s * d[1], s * d[0] + c * d[1], 0.0])
        R = rot_z(wrap_angle(d[2])) @ R
        v = R @ np.array([self.wheel_v / self.kf.ks, 0.0, 0.0])
        self.odom.forget_bias()
        self.kf.initialize(t0, p, R, v, self._P0(C[0:3, 0:3] + np.eye(3) * 1e-6, max(C[5, 5], 1e-6)))
        self.slip.restart()
        self.counters["initializations"] += 1
        self.reasons["init"] = f"from pose fix at t={t:.3f}"
        log.info("fusion initialized from a pose fix at t=%.3f", t)

    def _try_init_gnss(self, t: float, z, cov) -> None:
        """GNSS + motion heading: fit the dead-reckoned track to the GNSS track (2-D rigid)."""
        if not self.cfg.init_from_gnss:
            return
        tr = self._init_track
        tr.append((t, np.asarray(z, float), cov, self.odom.xyyaw.copy()))
        while tr and tr[0][0] < t - 60.0:
            tr.pop(0)
        fit = gnss_motion_heading(tr, self.odom.xyyaw, self.wheel_v, t, self.cfg.init_min_gnss_span_m)
        if fit is None:
            return
        p_xy, yaw, yaw_std, v_fwd = fit
        if yaw_std > self.cfg.init_max_yaw_std_rad:
            return
        R = rot_z(yaw) @ self._tilt()
        p = np.array([p_xy[0], p_xy[1], z[2]]) - R @ self._gnss_lever
        v = R @ np.array([v_fwd, 0.0, 0.0])
        self.odom.forget_bias()
        self.kf.initialize(t, p, R, v, self._P0(cov, max(yaw_std, 0.01) ** 2))
        self.slip.restart()
        self.counters["initializations"] += 1
        self.reasons["init"] = f"from GNSS + motion heading at t={t:.3f} (yaw std {yaw_std:.3f} rad)"
        log.info("fusion initialized from GNSS + motion heading at t=%.3f", t)
        self._init_track = []
