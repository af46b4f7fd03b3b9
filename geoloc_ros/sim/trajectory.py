"""Smooth ground-robot trajectories along the town's roads, with analytic derivatives.

A :class:`Trajectory` is a C2 cubic spline through road waypoints (parameter ``u`` ~ arc length,
m), driven with a C1 speed profile (hold, smooth acceleration, cruise, smooth braking), lifted
onto the ground heightfield (z, pitch from the slope along the heading, roll from the slope
across it). Position, velocity, acceleration, orientation and body angular rate all come
from the spline and the analytic ground derivatives, so an IMU synthesised from them
integrates back to the same poses.

Frames: ``T_world_base`` with world = map (REP-105), base_link x forward, y left, z up.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.spatial.transform import Rotation

from geoloc_ros.sim.world import Ground

__all__ = ["Trajectory", "TrajState", "route_polyline", "offset_polyline"]


@dataclass
class TrajState:
    """Kinematic state at N times (world = map frame, body = base_link)."""
    t: np.ndarray          # (N,) s
    p: np.ndarray          # (N, 3) position of base_link in world, m
    v: np.ndarray          # (N, 3) world-frame velocity, m/s
    a: np.ndarray          # (N, 3) world-frame acceleration, m/s^2
    R: np.ndarray          # (N, 3, 3) R_world_base
    w_body: np.ndarray     # (N, 3) angular rate of base_link in base_link, rad/s
    rpy: np.ndarray        # (N, 3) roll, pitch, yaw (R = Rz(yaw) Ry(pitch) Rx(roll)), rad

    def poses(self) -> np.ndarray:
        """(N, 4, 4) T_world_base."""
        T = np.tile(np.eye(4), (len(self.t), 1, 1))
        T[:, :3, :3] = self.R
        T[:, :3, 3] = self.p
        return T


def route_polyline(nodes_xy: np.ndarray, corner_radius_m: float = 8.0, step_m: float = 1.0) -> np.ndarray:
    """Dense polyline (M, 2) through road nodes (K, 2) with turns rounded (quadratic Bezier
    between the points ``corner_radius_m`` before and after each turning node)."""
    nodes = np.asarray(nodes_xy, float)
    pts = [nodes[0]]
    for k in range(1, len(nodes) - 1):
        a, b, c = nodes[k - 1], nodes[k], nodes[k + 1]
        d_in = (b - a) / np.linalg.norm(b - a)
        d_out = (c - b) / np.linalg.norm(c - b)
        if abs(d_in[0] * d_out[1] - d_in[1] * d_out[0]) < 1e-6 and d_in @ d_out > 0:
            pts.append(b)
            continue
        r = min(corner_radius_m, 0.45 * np.linalg.norm(b - a), 0.45 * np.linalg.norm(c - b))
        p0, p2 = b - d_in * r, b + d_out * r
        s = np.linspace(0, 1, max(3, int(np.ceil(2 * r / step_m))))[:, None]
        pts.extend((1 - s) ** 2 * p0 + 2 * s * (1 - s) * b + s ** 2 * p2)
    pts.append(nodes[-1])
    pts = np.asarray(pts)
    # resample every ~step_m along the chord length
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    keep = np.concatenate([[True], seg > 1e-6])
    pts = pts[keep]
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    sq = np.linspace(0, s[-1], max(2, int(np.ceil(s[-1] / step_m)) + 1))
    return np.stack([np.interp(sq, s, pts[:, 0]), np.interp(sq, s, pts[:, 1])], 1)


def offset_polyline(poly: np.ndarray, offset_m) -> np.ndarray:
    """Shift a dense polyline (M, 2) sideways: ``offset_m`` (scalar or (M,)) > 0 is to the left."""
    d = np.gradient(poly, axis=0)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    n = np.stack([-d[:, 1], d[:, 0]], 1)
    return poly + n * np.broadcast_to(np.asarray(offset_m, float), (len(poly),))[:, None]


class Trajectory:
    """One run of the robot: ``poses(t)`` gives T_world_base, ``state(t)`` the full kinematics.

    Args:
        polyline_xy: (M, 2) dense waypoints of the path, m (at least ``speed*(duration-hold)`` long).
        ground: the world's analytic ground.
        t0_s: start time (unix s); ``duration_s``: length of the run, s.
        speed_mps: cruise speed; ``hold_s``: standstill at the start; ``ramp_s``: acceleration
        and braking time; ``base_height_m``: base_link above the ground.
    """

    def __init__(self, polyline_xy: np.ndarray, ground: Ground, t0_s: float, duration_s: float,
                 speed_mps: float = 3.0, hold_s: float = 2.0, ramp_s: float = 3.0,
                 base_height_m: float = 0.5, name: str = "run", gt_rate_hz: float = 100.0):
        poly = np.asarray(polyline_xy, float)
        if poly.ndim != 2 or poly.shape[1] != 2 or len(poly) < 4 or not np.all(np.isfinite(poly)):
            raise ValueError("polyline_xy must be a finite (M>=4, 2) array")
        if not (duration_s > hold_s + 2 * ramp_s) or speed_mps <= 0:
            raise ValueError(f"duration_s={duration_s} must exceed hold_s + 2*ramp_s and speed must be > 0")
        s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(poly, axis=0), axis=1))])
        self.name = name
        self.ground = ground
        self.t0 = float(t0_s)
        self.duration_s = float(duration_s)
        self.t1 = self.t0 + self.duration_s
        self.hold_s, self.ramp_s, self.speed = float(hold_s), float(ramp_s), float(speed_mps)
        self.base_height_m = float(base_height_m)
        self._spline = CubicSpline(s, poly, bc_type="natural")
        self.u_total = self.speed * (self.duration_s - self.hold_s - self.ramp_s)
        if self.u_total > s[-1] + 1e-6:
            raise ValueError(f"path is {s[-1]:.0f} m, the run needs {self.u_total:.0f} m")
        self.times_s = self.t0 + np.arange(0.0, self.duration_s + 1e-9, 1.0 / gt_rate_hz)

    @property
    def length_m(self) -> float:
        """Distance driven along the path, m."""
        return float(self.u_total)

    # ---- speed profile ----------------------------------------------------------------------
    def _progress(self, tau: np.ndarray):
        """u (m), du/dt (m/s), d2u/dt2 (m/s^2) at run time tau (s from t0)."""
        v, r = self.speed, self.ramp_s
        tm = tau - self.hold_s
        t_end = self.duration_s - self.hold_s
        u, ud, udd = np.zeros_like(tau), np.zeros_like(tau), np.zeros_like(tau)
        acc = (tm > 0) & (tm < r)
        x = tm[acc] / r
        u[acc], ud[acc], udd[acc] = v * r * (x ** 3 - x ** 4 / 2), v * (3 * x ** 2 - 2 * x ** 3), v * (6 * x - 6 * x ** 2) / r
        cru = (tm >= r) & (tm <= t_end - r)
        u[cru], ud[cru] = v * r / 2 + v * (tm[cru] - r), v
        dec = (tm > t_end - r)
        y = np.clip((t_end - tm[dec]) / r, 0.0, 1.0)
        u[dec] = self.u_total - v * r * (y ** 3 - y ** 4 / 2)
        ud[dec], udd[dec] = v * (3 * y ** 2 - 2 * y ** 3), -v * (6 * y - 6 * y ** 2) / r
        return u, ud, udd

    # ---- kinematics -------------------------------------------------------------------------
    def state(self, t) -> TrajState:
        """Kinematic state at times ``t`` (scalar or (N,), unix s; clamped to [t0, t1])."""
        t = np.clip(np.atleast_1d(np.asarray(t, float)), self.t0, self.t1)
        u, ud, udd = self._progress(t - self.t0)
        P, P1, P2 = self._spline(u), self._spline(u, 1), self._spline(u, 2)
        vxy = P1 * ud[:, None]
        axy = P2 * (ud ** 2)[:, None] + P1 * udd[:, None]
        x, y = P[:, 0], P[:, 1]
        g = self.ground
        z = g.height(x, y) + self.base_height_m
        gx, gy = g.gradient(x, y)
        hxx, hxy, hyy = g.hessian(x, y)
        vz = gx * vxy[:, 0] + gy * vxy[:, 1]
        Hv = np.stack([hxx * vxy[:, 0] + hxy * vxy[:, 1], hxy * vxy[:, 0] + hyy * vxy[:, 1]], 1)
        az = (vxy * Hv).sum(1) + gx * axy[:, 0] + gy * axy[:, 1]
        # heading from the path tangent (defined at standstill too)
        yaw = np.arctan2(P1[:, 1], P1[:, 0])
        yaw_rate = ud * (P1[:, 0] * P2[:, 1] - P1[:, 1] * P2[:, 0]) / (P1 ** 2).sum(1)
        c, s = np.cos(yaw), np.sin(yaw)
        gf = gx * c + gy * s          # slope along the heading
        gl = -gx * s + gy * c         # slope to the left
        gf_dot = Hv[:, 0] * c + Hv[:, 1] * s + gl * yaw_rate
        gl_dot = -Hv[:, 0] * s + Hv[:, 1] * c - gf * yaw_rate
        pitch = -np.arctan(gf)        # uphill: nose up = negative pitch (REP-103)
        roll = np.arctan(gl)          # ground rising to the left lifts the left side
        pitch_dot = -gf_dot / (1 + gf ** 2)
        roll_dot = gl_dot / (1 + gl ** 2)
        cr, sr, cp, sp = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch)
        w_body = np.stack([roll_dot - yaw_rate * sp,
                           pitch_dot * cr + yaw_rate * sr * cp,
                           -pitch_dot * sr + yaw_rate * cr * cp], 1)
        R = Rotation.from_euler("xyz", np.stack([roll, pitch, yaw], 1)).as_matrix()  # Rz Ry Rx
        return TrajState(t, np.stack([x, y, z], 1), np.column_stack([vxy, vz]), np.column_stack([axy, az]),
                         R, w_body, np.stack([roll, pitch, yaw], 1))

    def poses(self, t) -> np.ndarray:
        """T_world_base: (4, 4) for a scalar time, (N, 4, 4) for an array of times."""
        T = self.state(t).poses()
        return T[0] if np.ndim(t) == 0 else T

    def gt(self) -> tuple[np.ndarray, np.ndarray]:
        """Ground truth at :attr:`times_s`: ``(t (N,), T_world_base (N, 4, 4))``."""
        return self.times_s, self.poses(self.times_s)
