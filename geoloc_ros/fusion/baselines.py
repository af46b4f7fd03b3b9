"""Baselines with the FusionFilter interface (``process(event) -> PoseEstimate | None``,
``estimate()``, ``reset()``), for the benchmark and the tests.

- :class:`GnssOnly`: the latest valid GNSS fix as the pose (heading from the fix-to-fix course),
  its reported covariance, held through outages;
- :func:`naive_filter`: the same ESKF with degradation handling off (every GNSS message trusted
  at its reported covariance, no slip check);
- :func:`dead_reckoning`: the ESKF on IMU + wheel only (GNSS ignored after initialization).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from geoloc_ros.events import FixStatus, GnssEvent, PoseEstimate, PoseFixEvent, Verdict
from geoloc_ros.fusion.config import FusionConfig
from geoloc_ros.fusion.filter import FusionFilter
from geoloc_ros.fusion.gnss import Datum
from geoloc_ros.geometry import rot_z

__all__ = ["GnssOnly", "naive_filter", "dead_reckoning", "DeadReckoning"]


class GnssOnly:
    """Pose = latest GNSS fix (antenna position, map frame); yaw from the course over ground."""

    def __init__(self, cfg: FusionConfig | None = None, datum: Datum | None = None,
                 min_course_m: float = 1.0):
        self.cfg = cfg or FusionConfig()
        self.datum0 = datum
        self.min_course_m = min_course_m
        self.reset()

    @property
    def initialized(self) -> bool:
        return self._T is not None

    def reset(self) -> None:
        self.datum = self.datum0
        self._T = None
        self._cov = np.eye(6) * 1e6
        self._t = 0.0
        self._last_xy = None
        self.counters: dict = {}

    def process(self, event):
        if isinstance(event, PoseFixEvent) and event.source == "initialpose" and self._T is None:
            self._T = np.asarray(event.T_map_base, float).copy()
            self._t = event.t
            return self.estimate()
        if not isinstance(event, GnssEvent):
            return None
        vals = [event.lat_deg, event.lon_deg, event.alt_m]
        if (event.status == FixStatus.NO_FIX or event.cov_enu_m2 is None or not np.all(np.isfinite(vals))
                or not np.all(np.isfinite(event.cov_enu_m2)) or np.any(np.diag(event.cov_enu_m2) <= 0)):
            self.counters["gnss.rejected"] = self.counters.get("gnss.rejected", 0) + 1
            return None
        if self.datum is None:
            self.datum = Datum(event.lat_deg, event.lon_deg, event.alt_m)
        z = self.datum.to_map(event.lat_deg, event.lon_deg, event.alt_m)
        yaw = None if self._T is None else np.arctan2(self._T[1, 0], self._T[0, 0])
        if self._last_xy is None:
            self._last_xy = z[:2]
        elif np.linalg.norm(z[:2] - self._last_xy) > self.min_course_m:
            d = z[:2] - self._last_xy
            yaw = np.arctan2(d[1], d[0])
            self._last_xy = z[:2]
        T = np.eye(4)
        T[:3, :3] = rot_z(yaw or 0.0)
        T[:3, 3] = z
        self._T, self._t = T, event.t
        self._cov = np.eye(6) * 0.1
        self._cov[:3, :3] = self.datum.cov_to_map(event.cov_enu_m2)
        return self.estimate()

    def estimate(self) -> PoseEstimate:
        T = np.eye(4) if self._T is None else self._T
        return PoseEstimate(t=self._t, T_map_base=T.copy(), cov6=self._cov.copy(), mode="localized",
                            gnss_verdict=Verdict.OK, counters=dict(self.counters))


def naive_filter(cfg: FusionConfig | None = None, datum: Datum | None = None) -> FusionFilter:
    """The ESKF that trusts every GNSS message at its reported covariance (no monitor, no slip check)."""
    cfg = dataclasses.replace(cfg or FusionConfig(), degradation_handling=False, gnss_cov_scale=1.0)
    return FusionFilter(cfg, datum)


class DeadReckoning(FusionFilter):
    """IMU + wheel only: GNSS is used for initialization (GNSS + motion heading) and then ignored."""

    def _on_gnss(self, ev, t):
        if self.kf.initialized:
            self.counters["gnss.ignored"] += 1
            return False
        return super()._on_gnss(ev, t)

    def _on_fix(self, ev, t):
        if self.kf.initialized:
            self.counters["fix.ignored"] += 1
            return False
        return super()._on_fix(ev, t)


def dead_reckoning(cfg: FusionConfig | None = None, datum: Datum | None = None) -> DeadReckoning:
    """IMU + wheel dead reckoning with the FusionFilter interface."""
    return DeadReckoning(cfg or FusionConfig(), datum)
