"""The filter's continuous odom frame: planar dead reckoning from body speed and yaw rate.

It is the reference the GNSS checks compare against (jump/drift window, re-anchoring), so it must
not be steered by the GNSS it checks. Its yaw rate is the gyro's, levelled by the filter's tilt,
minus a gyro bias that can be *lagged* (``FusionConfig.odom_gyro_bias``): the filter's bias
estimate as it was ``bias_lag_s`` ago, or at initialization. A slow GNSS
drift that the filter follows by turning its heading also drags its gyro-bias estimate (on the real
Husky bag a 0.3 m/s drift moved the yaw-rate bias by 3 mrad/s in 50 s); with the current bias the
odom track bent along with the drift and the 60 s drift check never saw more than 9 m of the 16 m
drift. A lagged bias has not seen the GNSS of the window under test; the true bias changes
little over a minute (a random walk of ~5e-5 rad/s^2/sqrt(Hz) moves it by ~4e-4 rad/s). On that
bag the filter's bias sits at -5 mrad/s for minutes in the clean run (pulled by the GPS's
correlated error) while the gyro reads -0.34 mrad/s at rest, so only the bias at initialization
keeps the dead reckoning clean there; on the simulator the filter's current bias is right.

Frame: ``odom`` (REP-105), x/y in m, yaw in rad, continuous (never jumps).
"""
from __future__ import annotations

import math
from collections import deque

import numpy as np

__all__ = ["OdomTrack"]


class OdomTrack:
    """Planar odom pose (x, y, yaw) and path length, with a short history for late lookups and a
    history of the filter's gyro bias for the lagged bias.

    ``history_s``: how long poses are kept for :meth:`at` (s); ``bias_lag_s``: age of the gyro bias
    used for the yaw rate (s); ``bias_sample_s``: spacing of the stored bias samples (s).
    """

    def __init__(self, history_s: float = 5.0, bias_lag_s: float = 60.0, bias_sample_s: float = 1.0):
        self.history_s = float(history_s)
        self.bias_lag_s = float(bias_lag_s)
        self.bias_sample_s = float(bias_sample_s)
        self.reset()

    @classmethod
    def from_config(cls, cfg) -> "OdomTrack":
        """From a FusionConfig's ``odom_gyro_bias`` ('filter': lag 0, 'lagged': ``odom_bias_lag_s``,
        'initial': infinite lag)."""
        lag = {"filter": 0.0, "lagged": cfg.odom_bias_lag_s, "initial": np.inf}.get(cfg.odom_gyro_bias)
        if lag is None:
            raise ValueError(f"odom_gyro_bias must be 'filter', 'lagged' or 'initial', not {cfg.odom_gyro_bias!r}")
        return cls(bias_lag_s=lag)

    def reset(self) -> None:
        self.xyyaw = np.zeros(3)
        self.dist_m = 0.0
        self.t = None
        self._hist: deque = deque()      # (t_s, xyyaw (3,), dist_m)
        self._bias: deque = deque()      # (t_s, gyro bias (3,) rad/s) every bias_sample_s

    def lagged_bias(self, t: float, bg_now) -> np.ndarray:
        """The gyro bias (3,) rad/s to use at ``t``: the filter's bias ``bias_lag_s`` ago (the oldest
        stored one while the filter is younger than that; ``bg_now`` itself with a lag of 0, the bias
        at initialization with an infinite lag); ``bg_now`` is recorded for later."""
        if self.bias_lag_s <= 0.0:
            return bg_now
        bg_now = np.asarray(bg_now, float)
        b = self._bias
        if not b or (np.isfinite(self.bias_lag_s) and t - b[-1][0] >= self.bias_sample_s):
            b.append((t, bg_now.copy()))     # an infinite lag only ever needs the first one
        while len(b) > 1 and b[1][0] <= t - self.bias_lag_s:
            b.popleft()
        return b[0][1]

    def forget_bias(self) -> None:
        """The filter was re-initialized: its old bias history no longer applies."""
        self._bias.clear()

    def step(self, t: float, vx_mps: float, vy_mps: float, wz_rps: float) -> None:
        """Integrate body velocity (base frame, m/s) and yaw rate (rad/s) from the last stamp to
        ``t`` (midpoint heading); steps of 1 s or more, or backwards, only move the stamp."""
        if self.t is not None:
            dt = t - self.t
            if 0.0 < dt < 1.0:     # Python floats: this runs once per IMU sample
                x, y, yaw = self.xyyaw.tolist()
                th = yaw + 0.5 * wz_rps * dt
                c, s = math.cos(th), math.sin(th)
                x += (c * vx_mps - s * vy_mps) * dt
                y += (s * vx_mps + c * vy_mps) * dt
                yaw = (yaw + wz_rps * dt + math.pi) % (2.0 * math.pi) - math.pi    # wrap_angle
                self.xyyaw[:] = (x, y, yaw)
                self.dist_m += math.hypot(vx_mps, vy_mps) * dt
        self.t = t
        self._hist.append((t, self.xyyaw.copy(), self.dist_m))
        while self._hist and self._hist[0][0] < t - self.history_s:
            self._hist.popleft()

    def at(self, t: float):
        """(x, y, yaw) (3,) and path length (m) at ``t`` (nearest stored sample at or before it)."""
        h = self._hist
        if not h or t >= h[-1][0]:
            return self.xyyaw.copy(), self.dist_m
        for k in range(len(h) - 1, -1, -1):
            if h[k][0] <= t:
                return h[k][1].copy(), h[k][2]
        return h[0][1].copy(), h[0][2]
