"""GNSS side of the filter: map datum (geodesy with pyproj), datum fitting and the degradation
monitor (the wheel-slip detector is in :mod:`geoloc_ros.fusion.slip`).

Map datum convention: the map frame's origin is at (lat0, lon0, alt0) on WGS-84; ``yaw_rad`` is
the heading of the map x axis counter-clockwise from East, so ``p_enu = Rz(yaw) @ p_map``.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pyproj

from geoloc_ros.events import FixStatus, GnssEvent, Verdict
from geoloc_ros.geometry import rot_z

__all__ = ["Datum", "fit_datum", "GnssMonitor", "GnssAssessment"]


class Datum:
    """Map datum: WGS-84 origin and map yaw; converts lat/lon/alt <-> map-frame xyz (m)."""

    def __init__(self, lat0_deg: float, lon0_deg: float, alt0_m: float = 0.0, yaw_rad: float = 0.0):
        vals = [lat0_deg, lon0_deg, alt0_m, yaw_rad]
        if not all(np.isfinite(vals)) or abs(lat0_deg) > 90 or abs(lon0_deg) > 180:
            raise ValueError(f"invalid datum {vals}")
        self.lat0_deg, self.lon0_deg = float(lat0_deg), float(lon0_deg)
        self.alt0_m, self.yaw_rad = float(alt0_m), float(yaw_rad)
        self._tf = pyproj.Transformer.from_pipeline(
            f"+proj=pipeline +step +proj=cart +ellps=WGS84 +step +proj=topocentric +ellps=WGS84 "
            f"+lat_0={self.lat0_deg!r} +lon_0={self.lon0_deg!r} +h_0={self.alt0_m!r}")
        self.R_enu_map = rot_z(self.yaw_rad)

    def __repr__(self):
        return (f"Datum(lat0_deg={self.lat0_deg}, lon0_deg={self.lon0_deg}, alt0_m={self.alt0_m}, "
                f"yaw_rad={self.yaw_rad})")

    def to_enu(self, lat_deg, lon_deg, alt_m) -> np.ndarray:
        e, n, u = self._tf.transform(lon_deg, lat_deg, alt_m)
        return np.stack([np.asarray(e, float), np.asarray(n, float), np.asarray(u, float)], -1)

    def to_map(self, lat_deg, lon_deg, alt_m) -> np.ndarray:
        """Map-frame position (3,) m (or (N, 3) for arrays)."""
        return self.to_enu(lat_deg, lon_deg, alt_m) @ self.R_enu_map  # = (R^T p_enu^T)^T

    def from_map(self, p) -> tuple[float, float, float]:
        """(lat_deg, lon_deg, alt_m) of a map-frame position (3,)."""
        enu = self.R_enu_map @ np.asarray(p, float).reshape(3)
        lon, lat, alt = self._tf.transform(enu[0], enu[1], enu[2], direction="INVERSE")
        return float(lat), float(lon), float(alt)

    def cov_to_map(self, cov_enu) -> np.ndarray:
        """(3, 3) ENU covariance -> map frame."""
        R = self.R_enu_map
        return R.T @ np.asarray(cov_enu, float) @ R

    def to_dict(self) -> dict:
        return {"lat0_deg": self.lat0_deg, "lon0_deg": self.lon0_deg, "alt0_m": self.alt0_m,
                "yaw_rad": self.yaw_rad}

    def save(self, mapdir) -> None:
        """Store as ``datum.json`` in a :class:`geoloc_ros.maps.mapdir.MapDir`."""
        mapdir.write_json("datum.json", self.to_dict())

    @classmethod
    def load(cls, mapdir) -> "Datum":
        from geoloc_ros.maps.mapdir import MapError
        d = mapdir.read_json("datum.json")
        try:
            return cls(float(d["lat0_deg"]), float(d["lon0_deg"]), float(d.get("alt0_m", 0.0)),
                       float(d.get("yaw_rad", 0.0)))
        except (KeyError, TypeError, ValueError) as e:
            raise MapError(f"{mapdir.root}: datum.json is not a valid datum ({e})") from None


def fit_datum(gnss_events, trajectory, lever_m=(0.0, 0.0, 0.0), max_dt_s: float = 0.05,
              return_rms: bool = False):
    """Estimate the map datum from GNSS fixes and a map-frame trajectory of the same run.

    ``trajectory`` is ``(t (N,), T_map_base (N, 4, 4))`` (or any object with ``times_s`` and
    ``poses(t)``). The antenna positions (base pose plus ``lever_m``) at the GNSS stamps are
    aligned to the fixes' local ENU coordinates by a 2-D rigid fit (yaw + translation, weighted by
    the reported horizontal variance) and a mean height offset. Fixes without a position or
    farther than ``max_dt_s`` from the trajectory's time span are skipped.
    Returns the :class:`Datum` (and the horizontal RMS residual in m with ``return_rms``).
    """
    from geoloc_ros.geometry import interpolate_poses
    evs = [e for e in gnss_events if isinstance(e, GnssEvent) and e.status != FixStatus.NO_FIX
           and np.isfinite([e.lat_deg, e.lon_deg, e.alt_m]).all()]
    if len(evs) < 3:
        raise ValueError(f"fit_datum needs at least 3 GNSS fixes, got {len(evs)}")
    t = np.array([e.t for e in evs])
    if hasattr(trajectory, "poses") and hasattr(trajectory, "times_s"):
        tt = np.asarray(trajectory.times_s, float)
        inside = (t >= tt[0] - max_dt_s) & (t <= tt[-1] + max_dt_s)
        T = np.stack([trajectory.poses(float(x)) for x in np.clip(t[inside], tt[0], tt[-1])])
    else:
        tt, TT = trajectory
        tt = np.asarray(tt, float)
        inside = (t >= tt[0] - max_dt_s) & (t <= tt[-1] + max_dt_s)
        T, _ = interpolate_poses(np.clip(t[inside], tt[0], tt[-1]), tt, np.asarray(TT, float))
    evs = [e for e, k in zip(evs, inside) if k]
    if len(evs) < 3:
        raise ValueError("fit_datum: fewer than 3 GNSS fixes inside the trajectory's time span")
    lever = np.asarray(lever_m, float)
    p_map = T[:, :3, 3] + T[:, :3, :3] @ lever
    provisional = Datum(evs[0].lat_deg, evs[0].lon_deg, evs[0].alt_m, 0.0)
    enu = provisional.to_enu(np.array([e.lat_deg for e in evs]), np.array([e.lon_deg for e in evs]),
                             np.array([e.alt_m for e in evs]))
    var = np.array([np.trace(np.asarray(e.cov_enu_m2)[:2, :2]) if e.cov_enu_m2 is not None else 1.0
                    for e in evs])
    w = 1.0 / np.maximum(var, 1e-4)
    w /= w.sum()
    a, b = p_map[:, :2], enu[:, :2]
    ca, cb = w @ a, w @ b
    Hm = ((a - ca) * w[:, None]).T @ (b - cb)
    yaw = float(np.arctan2(Hm[0, 1] - Hm[1, 0], Hm[0, 0] + Hm[1, 1]))   # b ~ Rz(yaw) a + t
    Rz = rot_z(yaw)[:2, :2]
    t_xy = cb - Rz @ ca
    dz = float(w @ (enu[:, 2] - p_map[:, 2]))
    # the map origin's ENU coordinates in the provisional frame -> geodetic origin
    lat0, lon0, alt0 = provisional.from_map(np.array([t_xy[0], t_xy[1], dz]))
    datum = Datum(lat0, lon0, alt0, yaw)
    if return_rms:
        res = datum.to_map(np.array([e.lat_deg for e in evs]), np.array([e.lon_deg for e in evs]),
                           np.array([e.alt_m for e in evs]))[:, :2] - p_map[:, :2]
        return datum, float(np.sqrt(np.mean(np.sum(res ** 2, 1))))
    return datum


@dataclass
class GnssAssessment:
    """Verdict of the monitor on one GNSS epoch, with the reason and the noise inflation."""
    verdict: Verdict
    reason: str = ""
    noise_scale: float = 1.0
    checks: dict = field(default_factory=dict)
    #: on the epoch that opens a jump/drift hold: the ``anchor`` the caller stored with the
    #: window check's reference epoch (the last accepted epoch before the mismatch), else None
    anchor: object = None


@dataclass
class RigidFit2D:
    """``z ~ R @ o + p`` fitted to 2-D point pairs: R (2, 2), p (2,) m, rms_m the rms residual,
    spread_m the rms distance of the ``o`` points from their centroid."""
    R: np.ndarray
    p: np.ndarray
    rms_m: float
    spread_m: float


def rigid_fit_2d(Z: np.ndarray, O: np.ndarray) -> RigidFit2D:
    """Least-squares rotation and translation taking the points O (N, 2) onto Z (N, 2)."""
    zm, om = Z.mean(0), O.mean(0)
    Zc, Oc = Z - zm, O - om
    H = Oc.T @ Zc
    R = rot_z(np.arctan2(H[0, 1] - H[1, 0], H[0, 0] + H[1, 1]))[:2, :2]
    p = zm - R @ om
    rms = float(np.sqrt(np.mean(np.sum((Z - O @ R.T - p) ** 2, 1))))
    return RigidFit2D(R, p, rms, float(np.sqrt(np.mean(np.sum(Oc ** 2, 1)))))


class GnssMonitor:
    """Per-epoch GNSS verdict: OK / DEGRADED / REJECTED / DENIED, with the reason.

    Checks, in order: fix status and reported covariance; a jump/drift of the GNSS displacement
    over ``gnss_window_s`` against the dead-reckoned (odom) displacement; a sustained consistent
    offset of GNSS against the global pose fixes (spoofing, wrong datum); the filter's normalized
    innovation squared (chi-square gate). After a jump/drift rejection the monitor holds the
    rejection until ``gnss_recover_epochs`` consecutive epochs pass both the window and NIS
    checks; the NIS uses the filter's covariance, which grows while GNSS is rejected, so
    consistent GNSS is always accepted again (no permanent lock-out).
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.reset()

    def reset(self) -> None:
        self.epochs: deque = deque()          # (t, z_map_xy (2,), odom_xy (2,), odom_dist_m)
        self.last_msg_t = None
        self.last = GnssAssessment(Verdict.DENIED, "no GNSS message yet")
        self.hold = False
        self.hold_reason = ""
        self.reject_since = np.inf
        self.grace_until = -np.inf
        self._fit_t = -np.inf
        self._fit_R = None
        self.good_streak = 0
        self.offsets: deque = deque(maxlen=max(1, int(self.cfg.gnss_offset_window)))
        self.offset_flag_t = None
        self.offset_vec = np.zeros(2)
        self._fired_ref = None

    def distrust_since(self, t_ref: float) -> None:
        """The epochs accepted after ``t_ref`` carried a jump/drift the filter absorbed (the caller
        re-anchored on dead reckoning from ``t_ref``, or grew its covariance by what it absorbed):
        they may no longer serve as window references or in the map<-odom fit, so the epoch at
        ``t_ref`` stays the reference until new GNSS agrees."""
        for e in self.epochs:
            if e[0] > t_ref:
                e[5] = False
        self._fit_t, self._fit_R = -np.inf, None

    def break_dead_reckoning(self) -> None:
        """Dead reckoning was interrupted (an IMU gap bridged on one held sample): the odom track
        across it is unknown, so no epoch before it may serve as a window reference or in the
        map<-odom heading fit; until new references build up, the NIS gate decides."""
        self.epochs.clear()
        self._fit_t, self._fit_R, self._fired_ref = -np.inf, None, None

    # ---- status ---------------------------------------------------------------------------
    def current(self, t_now: float) -> GnssAssessment:
        """The verdict to report at ``t_now``: DENIED when the last message is too old."""
        if self.last_msg_t is None:
            return self.last
        age = t_now - self.last_msg_t
        if age > self.cfg.gnss_timeout_s:
            return GnssAssessment(Verdict.DENIED, f"no GNSS message for {age:.1f} s")
        return self.last

    def note_message(self, t: float) -> None:
        self.last_msg_t = t if self.last_msg_t is None else max(self.last_msg_t, t)

    def deny(self, t: float, reason: str) -> GnssAssessment:
        """A message without a usable position (NO_FIX, unknown covariance...)."""
        self.note_message(t)
        self.last = GnssAssessment(Verdict.DENIED, reason)
        return self.last

    # ---- global fixes (spoof / datum check) ------------------------------------------------
    def add_global_fix(self, t: float, p_fix_xy, std_fix_m: float) -> None:
        """Compare a trusted global fix with the GNSS positions buffered around its stamp."""
        if len(self.epochs) < 2:
            return
        ts = np.array([e[0] for e in self.epochs])
        k = int(np.argmin(np.abs(ts - t)))
        if abs(ts[k] - t) > 1.0:
            return
        e = self.epochs[k]
        # move the GNSS position to the fix stamp with the dead-reckoned displacement
        self.offsets.append((t, e[1] - np.asarray(p_fix_xy, float)[:2], std_fix_m))
        if len(self.offsets) == self.offsets.maxlen:
            off = np.array([o[1] for o in self.offsets])
            mean = off.mean(0)
            spread = np.linalg.norm(off - mean, axis=1).max()
            thr = max(self.cfg.gnss_offset_m, 3.0 * max(o[2] for o in self.offsets))
            if np.linalg.norm(mean) > thr and spread < 0.5 * np.linalg.norm(mean) + 2.0:
                self.offset_flag_t = t
                self.offset_vec = mean
            elif np.linalg.norm(mean) < 0.5 * thr:
                self.offset_flag_t = None
        if self.offset_flag_t is not None:
            # the offset is gone when the newest fixes agree with GNSS again (waiting for the whole
            # averaging window to refill with clean offsets kept a spoof flagged ~10 s too long)
            thr = max(self.cfg.gnss_offset_m, 3.0 * std_fix_m)
            recent = list(self.offsets)[-self.cfg.gnss_offset_clear_fixes:]
            if (len(recent) == self.cfg.gnss_offset_clear_fixes
                    and all(np.linalg.norm(o[1]) < 0.5 * thr for o in recent)):
                self.offset_flag_t = None

    # ---- one epoch ------------------------------------------------------------------------
    def assess(self, t: float, z_map, cov_map, nis: float, odom_xy, odom_dist_m: float,
               R_map_odom_2d, var_h_reported: float | None = None,
               yaw_std_rad: float = 0.0, anchor=None) -> GnssAssessment:
        """Verdict of one GNSS epoch.

        z_map (3,) antenna position in the map frame (m), cov_map (3, 3) reported covariance (m^2),
        nis: the filter's horizontal normalized innovation squared, odom_xy (2,) the dead-reckoned
        position (odom frame, m) at ``t``, odom_dist_m the odom path length so far,
        R_map_odom_2d (2, 2) the current map<-odom rotation, var_h_reported the receiver's own
        horizontal variance (m^2, default: from cov_map), yaw_std_rad the filter's yaw std,
        anchor: anything the caller wants back (as ``GnssAssessment.anchor``) when a later epoch
        opens a jump/drift hold against this one as the window reference.
        """
        cfg = self.cfg
        if self.last_msg_t is not None and t - self.last_msg_t > cfg.gnss_outage_grace_s:
            # back from a long outage: dead reckoning is what drifted, re-converge on GNSS
            self.grace_until = t + cfg.gnss_window_s / 2
            self.hold = False
        self.note_message(t)
        z_xy = np.asarray(z_map, float)[:2]
        var_h = float(cov_map[0, 0] + cov_map[1, 1])
        var_rep = var_h if var_h_reported is None else float(var_h_reported)
        checks = {"nis": nis, "var_h_m2": var_rep}
        self.epochs.append([t, z_xy.copy(), np.asarray(odom_xy, float).copy(), float(odom_dist_m),
                            np.asarray(R_map_odom_2d, float).copy(), False, anchor, float(yaw_std_rad)])
        keep_s = max(2.5 * cfg.gnss_window_s, 1.5 * cfg.gnss_drift_window_s, cfg.gnss_fit_s,
                     cfg.gnss_track_fit_s if cfg.gnss_track_m > 0 else 0.0)
        while self.epochs and self.epochs[0][0] < t - keep_s:
            self.epochs.popleft()

        var_win = var_rep * cfg.gnss_window_cov_scale
        self._fired_ref = None
        jump = (self._window_check(t, var_win, checks, cfg.gnss_window_s, cfg.gnss_jump_m)
                or self._window_check(t, var_win, checks, cfg.gnss_drift_window_s, cfg.gnss_drift_m))
        if jump and self._agrees_across_gap(t, var_win, checks):
            jump = ""
        # the track check after the gap check: its reference is minutes of track, not the one
        # epoch before a gap, and a gap it opened itself (a drift it holds out) must not clear it
        jump = jump or self._track_check(t, checks)
        if t < self.grace_until:
            jump = ""   # re-converging after a covariance reset: the filter's heading is suspect
        if jump and t - self.reject_since > cfg.gnss_hold_max_s:
            jump = ""   # long rejection: the filter's own drift can fake a mismatch; NIS decides
            self.hold = False
        if var_rep > cfg.gnss_cov_reject_m2:
            a = GnssAssessment(Verdict.REJECTED, f"reported covariance {var_rep:.1f} m^2 over "
                               f"{cfg.gnss_cov_reject_m2:g}", 0.0, checks)
        elif jump:
            opened = not self.hold
            self.hold, self.hold_reason, self.good_streak = True, jump, 0
            a = GnssAssessment(Verdict.REJECTED, jump, 0.0, checks,
                               self._fired_ref[6] if opened and self._fired_ref is not None else None)
        elif self.offset_flag_t is not None and t - self.offset_flag_t < cfg.gnss_offset_hold_s:
            a = GnssAssessment(Verdict.REJECTED, "consistent offset "
                               f"{np.linalg.norm(self.offset_vec):.1f} m vs global fixes "
                               "(spoofing or datum error)", 0.0, checks)
        elif nis > cfg.gnss_nis_reject and t < self.grace_until:
            a = GnssAssessment(Verdict.DEGRADED, f"re-converging after a covariance reset (NIS {nis:.1f})",
                               nis / cfg.gnss_nis_degraded, checks)
        elif nis > cfg.gnss_nis_reject:
            self.good_streak = 0
            a = GnssAssessment(Verdict.REJECTED, f"NIS {nis:.1f} over gate {cfg.gnss_nis_reject:g}",
                               0.0, checks)
        elif self.hold:
            self.good_streak += 1
            if self.good_streak >= cfg.gnss_recover_epochs:
                self.hold = False
                a = GnssAssessment(Verdict.DEGRADED, f"recovered after: {self.hold_reason}",
                                   cfg.gnss_degraded_scale, checks)
            else:
                a = GnssAssessment(Verdict.REJECTED, f"holding after {self.hold_reason} "
                                   f"({self.good_streak}/{cfg.gnss_recover_epochs} consistent)",
                                   0.0, checks)
        elif (r := self._window_ratio(checks)) > cfg.gnss_window_degrade_ratio > 0:
            # several reasons may hold at once: the noise is inflated by the largest (an epoch that is
            # both near the window threshold and inconsistent with the filter is followed least)
            scale = max(cfg.gnss_degraded_scale * r / cfg.gnss_window_degrade_ratio, self._nis_scale(nis), 1.0)
            a = GnssAssessment(Verdict.DEGRADED, f"window mismatch at {r:.0%} of its rejection threshold"
                               + self._nis_note(nis), scale, checks)
        elif var_rep > cfg.gnss_cov_degraded_m2:
            a = GnssAssessment(Verdict.DEGRADED, f"reported covariance {var_rep:.1f} m^2 over "
                               f"{cfg.gnss_cov_degraded_m2:g}" + self._nis_note(nis),
                               max(cfg.gnss_degraded_scale, self._nis_scale(nis)), checks)
        elif nis > cfg.gnss_nis_degraded:
            a = GnssAssessment(Verdict.DEGRADED, f"NIS {nis:.1f} over {cfg.gnss_nis_degraded:g}",
                               max(cfg.gnss_degraded_scale, nis / cfg.gnss_nis_degraded), checks)
        else:
            a = GnssAssessment(Verdict.OK, "", 1.0, checks)
        if a.verdict == Verdict.REJECTED:
            self.reject_since = min(self.reject_since, t)
        else:
            self.reject_since = np.inf
            self.epochs[-1][5] = True       # accepted: usable as a window reference
        self.last = a
        return a

    def _fit_map_odom(self, t):
        """map<-odom rotation (2, 2) fitted to the accepted GNSS track vs the odom track over the
        last ``gnss_fit_s`` (independent of the filter's heading); None when the track is short.
        (Fitting only the track before the window's reference, to keep a drift under test out of
        it, was tried on the Husky bag: with the short early track it raised false alarms.)"""
        if self.cfg.gnss_fit_s <= 0:
            return None
        if t - self._fit_t < 1.0 and self._fit_R is not None:
            return self._fit_R
        acc = [e for e in self.epochs if e[5] and e[0] >= t - self.cfg.gnss_fit_s]
        self._fit_t = t
        self._fit_R = None
        if len(acc) < 10:
            return None
        fit = rigid_fit_2d(np.array([e[1] for e in acc]), np.array([e[2] for e in acc]))
        if fit.spread_m < 10.0:
            return None
        self._fit_R = fit.R
        return self._fit_R

    def _track_check(self, t, checks) -> str:
        """Reason string when the newest GNSS epoch lies off the dead-reckoned track by more than
        ``max(gnss_track_m, gnss_jump_sigma * sigma)``: the odom track rigidly fitted (rotation and
        translation) to the accepted epochs of the last ``gnss_track_fit_s`` up to
        ``gnss_track_exclude_s`` ago, sigma the fit's rms residual with the odometry error over the
        distance since its newest epoch. Against a single reference epoch (the window checks) the
        receiver's wander enters twice; against a fit of minutes of track it enters once, so a slow
        drift stands out of it sooner (on the Husky bag a 0.3 m/s drift after ~24 s, not ~40 s)."""
        cfg = self.cfg
        if cfg.gnss_track_m <= 0:
            return ""
        acc = [e for e in self.epochs
               if e[5] and t - cfg.gnss_track_fit_s <= e[0] <= t - cfg.gnss_track_exclude_s]
        if len(acc) < 20:
            return ""
        fit = rigid_fit_2d(np.array([e[1] for e in acc]), np.array([e[2] for e in acc]))
        if fit.spread_m < 10.0:
            return ""   # too short a track to fix its heading: the window checks decide
        cur = self.epochs[-1]
        r = cur[1] - (fit.R @ cur[2] + fit.p)
        mism = float(np.linalg.norm(r))
        sigma = float(np.hypot(fit.rms_m, cfg.gnss_window_odom_rel * (cur[3] - acc[-1][3])))
        thr = max(cfg.gnss_track_m, cfg.gnss_jump_sigma * sigma)
        checks["track_mismatch_m"], checks["track_sigma_m"], checks["track_thr_m"] = mism, sigma, thr
        if mism > thr:
            # the re-anchoring reference: the newest accepted epoch still on the track along the
            # mismatch (about where the drift set in; the fit's newest epoch may carry much of it)
            u = r / max(mism, 1e-9)
            self._fired_ref = acc[0]
            for e in reversed([e for e in self.epochs if e[5] and e[0] >= acc[0][0]]):
                if float((e[1] - (fit.R @ e[2] + fit.p)) @ u) < min(fit.rms_m, 0.3 * mism):
                    self._fired_ref = e
                    break
            return (f"drift: {mism:.1f} m off the dead-reckoned track fitted to {len(acc)} accepted "
                    f"epochs over {acc[-1][0] - acc[0][0]:.0f} s (> {thr:.1f} m)")
        return ""

    def _agrees_across_gap(self, t, var_h, checks) -> bool:
        """After a gap in the accepted epochs (an outage or a rejection streak of at least
        ``gnss_timeout_s``), does the current epoch agree with the last accepted epoch before the
        gap, though the window check fired? Then the GNSS that came back continues where it left
        off, and the window check saw error in its older reference (a drift too small to be
        caught, absorbed there) or in the dead reckoning over its long window: the epochs before the
        gap stop serving as references (until new ones age in, the NIS gate and this check decide)."""
        last = None
        for e in reversed(self.epochs):
            if e[5] and e[0] < t:
                last = e
                break
        if last is None or t - last[0] < self.cfg.gnss_timeout_s:
            return False
        if self._window_check(t, var_h, checks, t - last[0], self.cfg.gnss_jump_m, ref=last, key="gap"):
            return False
        for e in self.epochs:
            if e[0] < last[0]:
                e[5] = False
        self._fit_t, self._fit_R = -np.inf, None
        return True

    def _nis_scale(self, nis: float) -> float:
        """Noise inflation the NIS alone asks for: nis / gnss_nis_degraded above that level, else 1."""
        return nis / self.cfg.gnss_nis_degraded if nis > self.cfg.gnss_nis_degraded else 1.0

    def _nis_note(self, nis: float) -> str:
        return f"; NIS {nis:.1f} over {self.cfg.gnss_nis_degraded:g}" if nis > self.cfg.gnss_nis_degraded else ""

    @staticmethod
    def _window_ratio(checks: dict) -> float:
        """Largest window mismatch over its rejection threshold among this epoch's window checks (0: none)."""
        return max((checks[k.removesuffix("_thr_m") + "_mismatch_m"] / max(checks[k], 1e-9) for k in checks
                    if k.endswith("_thr_m")), default=0.0)

    def _window_check(self, t, var_h, checks, W, floor_m, ref=None, key: str = "") -> str:
        """Reason string when the GNSS displacement over the last ``W`` seconds disagrees with
        the dead-reckoned (odom) displacement by more than ``max(floor_m, k sigma)``; ``ref`` a
        given reference epoch instead of the newest accepted one ``W`` old, ``key`` the name of
        its entries in ``checks`` (default ``window<W>``)."""
        cfg = self.cfg
        if ref is None:
            for e in self.epochs:          # oldest first: newest accepted epoch at least W old
                if e[0] > t - W:
                    break
                if e[5]:
                    ref = e
        if ref is None or t - ref[0] > cfg.gnss_window_max_age * W:
            return ""   # no recent accepted reference: the NIS gate decides
        cur = self.epochs[-1]
        d_gnss = cur[1] - ref[1]
        R_fit = self._fit_map_odom(t)
        d_odom = (R_fit if R_fit is not None else ref[4]) @ (cur[2] - ref[2])
        mism = float(np.linalg.norm(d_gnss - d_odom))
        dist = cur[3] - ref[3]
        # two fixes' noise + odometry error growing with distance (2 %) + heading error
        # the heading of the odom displacement: from the GNSS fit, else the filter's map<-odom
        # yaw; its std: the filter's yaw std at the reference or now, the smaller (early in a run
        # the reference's is the wide one; after a re-anchoring the current one is, and must not
        # widen the gate that caught the drift)
        yaw_sd = cfg.gnss_window_yaw_std_rad if R_fit is not None else \
            max(min(ref[7], cur[7]), cfg.gnss_window_yaw_std_rad)
        sigma = np.sqrt(var_h + (cfg.gnss_window_odom_rel * dist) ** 2 + (yaw_sd * dist) ** 2)
        key = key or f"window{W:.0f}"
        checks[f"{key}_mismatch_m"] = mism
        checks[f"{key}_sigma_m"] = sigma
        thr = max(floor_m, cfg.gnss_jump_sigma * sigma)
        checks[f"{key}_thr_m"] = thr
        if mism > thr:
            self._fired_ref = ref
            return (f"jump/drift: {mism:.1f} m mismatch vs dead reckoning over "
                    f"{t - ref[0]:.0f} s (> {thr:.1f} m)")
        return ""
