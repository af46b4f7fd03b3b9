"""Checks every event passes before it reaches an engine or the filter, each finding counted.

:class:`InputChecks` is owned by :class:`geoloc_ros.pipeline.Localizer`; its ``counters`` (flat
names ``<input>.<what>``) travel in every estimate's counters as ``pipeline.*``, where the nodes'
diagnostics show them:

- wrong frame ids (``<input>.rejected.wrong frame``): IMU, wheel and velocity events must be in
  ``base_frame``, pose fixes in ``map_frame``; a sensor stream keeps its frame;
- NaN/inf scan points, dropped (``scan.nan_points_dropped``, ``scan.nan_scans``);
- a LiDAR silence over ``scan_timeout_s`` (``scan.gaps``, "no scan for N s");
- a stream over :data:`FLOOD_RATIO` times its usual rate for a second (``<input>.flood``).
"""
from __future__ import annotations

import copy
import logging
import math
from collections import Counter

import numpy as np

from geoloc_ros.events import (FixStatus, GnssEvent, ImageEvent, ImuEvent, PoseFixEvent, ScanEvent, VelocityEvent,
                               WheelEvent)

log = logging.getLogger("geoloc_ros.pipeline")

__all__ = ["InputChecks", "validate_event", "FRAME_RELATCH_MSGS", "FLOOD_RATIO"]

#: a sensor stream (scan, GNSS, camera) whose frame id changes is rejected until this many
#: consecutive messages arrive in the new frame; then the new frame is the stream's frame
FRAME_RELATCH_MSGS = 50
#: a stream delivering this many times its usual rate over one second is counted as a flood
FLOOD_RATIO = 3.0
#: event class -> the input name used in counters
_KIND = {ImuEvent: "imu", WheelEvent: "wheel", VelocityEvent: "velocity", GnssEvent: "gnss",
         ScanEvent: "scan", ImageEvent: "image", PoseFixEvent: "fix"}


def _finite_or_none(a) -> bool:
    return a is None or bool(np.all(np.isfinite(np.asarray(a, float))))


def validate_event(e, min_points: int = 10) -> str | None:
    """Reason an event must not reach the pipeline, or None when it is usable.

    Checks what a live sensor gets wrong: non-finite stamps and fields, empty or tiny clouds,
    non-positive-definite covariances of pose fixes; fields that are not numbers at all are
    "malformed" (never an exception).
    """
    try:
        return _reason(e, min_points)
    except (TypeError, ValueError):
        return "malformed"


def _reason(e, min_points: int) -> str | None:
    """:func:`validate_event` on fields that convert to numbers (it raises where they do not)."""
    t = getattr(e, "t", None)
    if t is None or not math.isfinite(float(t)) or float(t) <= 0.0:
        return "bad_stamp"
    if isinstance(e, ImuEvent):
        if np.shape(e.acc_mps2) != (3,) or np.shape(e.gyr_rps) != (3,):
            return "malformed"
        if not (_finite_or_none(e.acc_mps2) and _finite_or_none(e.gyr_rps)):
            return "nan"
    elif isinstance(e, WheelEvent):
        if not (_finite_or_none(e.v_mps) and _finite_or_none(e.yaw_rate_rps)):
            return "nan"
    elif isinstance(e, GnssEvent):
        if e.status == FixStatus.NO_FIX:
            return None  # the filter's outage timer needs these; coordinates are not used
        if not (_finite_or_none([e.lat_deg, e.lon_deg])):
            return "nan"
        if abs(e.lat_deg) > 90 or abs(e.lon_deg) > 180:
            return "out_of_range"
    elif isinstance(e, ScanEvent):
        pts = np.asarray(e.points)
        if pts.ndim != 2 or pts.shape[1] < 3:
            return "malformed"
        n_ok = int(np.isfinite(pts[:, :3]).all(axis=1).sum()) if len(pts) else 0
        if n_ok < min_points:
            return "empty"
    elif isinstance(e, PoseFixEvent):
        if not _finite_or_none(e.T_map_base) or not _finite_or_none(e.cov6):
            return "nan"
        c = np.asarray(e.cov6, float)
        if c.shape != (6, 6) or np.any(np.diag(c) < 0):
            return "bad_covariance"
    elif isinstance(e, ImageEvent):
        if e.rgb is None and e.depth_m is None:
            return "empty"
    return None


class InputChecks:
    """The per-stream state and counters of the input checks.

    Parameters
    ----------
    cfg : geoloc_ros.config.GeolocConfig
        ``base_frame``, ``map_frame``, ``scan_timeout_s``.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.counters: Counter = Counter()   # what was rejected or noticed, and how often
        self.reasons: dict[str, str] = {}    # the latest such reason per input
        self.reset_streams()

    def reset_streams(self) -> None:
        """Forget the stream state (after a reset the time base changed); counts stay."""
        self._t_scan: float | None = None    # stamp of the newest scan (s)
        self._scan_gap_open = False
        self._frames: dict[str, list] = {}   # stream -> [frame id, candidate new frame, its run]
        self._rates: dict[str, list] = {}    # stream -> [window start s, messages, usual rate Hz, windows]

    def admit(self, event):
        """``event`` as the pipeline may use it (a scan without its non-finite points), or None
        when it is rejected (counted)."""
        self.watch_scans(float(event.t))
        self.watch_rate(event)
        if not self.check_frame(event):
            return None
        if isinstance(event, ScanEvent):
            return self.finite_scan(event)
        return event

    def count(self, key: str, reason: str, n: int = 1) -> None:
        """Count ``n`` under ``key`` (``<input>.<what>``) and keep ``reason`` as its latest why."""
        self.counters[key] += int(n)
        self.reasons[key.split(".")[0]] = reason
        if self.counters[key] <= 3:
            log.warning("%s", reason)

    def watch_scans(self, t: float) -> None:
        """Once LiDAR has been seen, a silence over ``scan_timeout_s`` is counted when it starts
        (``scan.gaps``, reason "no scan for N s"); the scan that ends it logs its length."""
        if isinstance(self._t_scan, float) and not self._scan_gap_open \
                and t - self._t_scan > self.cfg.scan_timeout_s:
            self._scan_gap_open = True
            self.count("scan.gaps", f"no scan for {t - self._t_scan:.1f} s "
                        f"(timeout {self.cfg.scan_timeout_s:g} s): LiDAR dropout")

    def watch_rate(self, event) -> None:
        """Per input, messages per one-second window against its usual rate (a running mean
        learned over the first windows and the normal ones after): a window over
        :data:`FLOOD_RATIO` times the usual rate is counted (``<input>.flood``)."""
        kind = _KIND.get(type(event)) or next((k for c, k in _KIND.items() if isinstance(event, c)), "other")
        t = float(event.t)
        st = self._rates.get(kind)
        if st is None or t < st[0]:
            self._rates[kind] = [t, 1, None, 0]
            return
        st[1] += 1
        if t - st[0] < 1.0:
            return
        rate = st[1] / (t - st[0])
        if st[2] is not None and st[3] >= 3 and rate > FLOOD_RATIO * st[2]:
            self.count(f"{kind}.flood", f"{kind} at {rate:.0f} Hz over the last {t - st[0]:.1f} s, "
                        f"{rate / st[2]:.1f}x its usual {st[2]:.0f} Hz (flood)")
        else:
            st[2] = rate if st[2] is None else st[2] + (rate - st[2]) / min(st[3] + 1, 10)
            st[3] += 1
        st[0], st[1] = t, 0

    def check_frame(self, event) -> bool:
        """Reject (counted, ``<input>.rejected.wrong frame``) an event in the wrong frame.

        IMU, wheel and velocity events are in ``base_frame`` (the converters applied the
        extrinsics), pose fixes in ``map_frame``. A sensor stream (scan, GNSS, camera; one per
        extrinsic, so two LiDARs are two streams) keeps the frame of its first message since the
        last reset; a message in another frame is rejected
        until :data:`FRAME_RELATCH_MSGS` consecutive ones arrive in that frame (a re-configured
        driver), never silently mixed."""
        got = str(getattr(event, "frame_id", "") or "")
        if isinstance(event, (ImuEvent, WheelEvent, VelocityEvent)):
            kind, want = ("imu" if isinstance(event, ImuEvent) else "wheel" if isinstance(event, WheelEvent)
                          else "velocity"), self.cfg.base_frame
        elif isinstance(event, PoseFixEvent):
            kind, want = "fix", self.cfg.map_frame
        else:
            kind = "scan" if isinstance(event, ScanEvent) else "gnss" if isinstance(event, GnssEvent) else "image"
            T = getattr(event, "T_base_sensor", None)   # a second LiDAR/camera is its own stream
            key = kind if T is None else kind + np.asarray(T, float).tobytes().hex()
            st = self._frames.setdefault(key, [got, None, 0])
            want = st[0]
            if got != want:
                st[2] = st[2] + 1 if st[1] == got else 1
                st[1] = got
                if st[2] >= FRAME_RELATCH_MSGS:
                    log.warning("%s: %d messages in a row in frame '%s' (was '%s'): taking it as the "
                                "stream's frame", kind, st[2], got, want)
                    st[:] = [got, None, 0]
                    self.counters[f"{kind}.frame_changed"] += 1
                    return True
            else:
                st[1], st[2] = None, 0
        if got != want:
            self.count(f"{kind}.rejected.wrong frame", f"{kind} in frame '{got}', expected '{want}': rejected")
            return False
        return True

    def finite_scan(self, scan: ScanEvent) -> ScanEvent:
        """The scan without its non-finite points (a copy, per-point fields kept aligned); the
        dropped points and the scans that had any are counted (``scan.nan_points_dropped``,
        ``scan.nan_scans``). Also ends a LiDAR gap."""
        if self._scan_gap_open and isinstance(self._t_scan, float):
            log.warning("scans resumed after %.1f s", scan.t - self._t_scan)
        self._t_scan, self._scan_gap_open = float(scan.t), False
        pts = np.asarray(scan.points)
        if pts.ndim != 2 or pts.shape[-1] < 3:
            return scan
        ok = np.isfinite(pts[:, :3]).all(axis=1)
        n_bad = int(len(ok) - ok.sum())
        if n_bad == 0:
            return scan
        self.count("scan.nan_scans", f"scan at t={scan.t:.3f}: {n_bad} of {len(ok)} points NaN/inf, dropped")
        self.counters["scan.nan_points_dropped"] += n_bad
        out = copy.copy(scan)
        out.points = pts[ok]
        for name in ("intensity", "point_time_s", "ring"):
            a = getattr(scan, name, None)
            if a is not None and np.ndim(a) == 1 and len(a) == len(ok):
                setattr(out, name, np.asarray(a)[ok])
        return out
