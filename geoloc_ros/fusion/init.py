"""Initialization of the fusion filter: gravity tilt, the initial error-state covariance and the
GNSS + motion heading fit. Pure functions of their inputs; :class:`geoloc_ros.fusion.filter.FusionFilter`
calls them and initializes its ESKF with the result."""
from __future__ import annotations

import numpy as np

from geoloc_ros.fusion.eskf import KS_, N_ERR
from geoloc_ros.geometry import rot_z, wrap_angle

__all__ = ["tilt_from_acc", "initial_covariance", "gnss_motion_heading"]


def tilt_from_acc(acc) -> np.ndarray:
    """R (3, 3) with zero yaw whose z axis is along the mean specific force ``acc`` (3,) (m/s^2)."""
    ax, ay, az = acc
    roll = np.arctan2(ay, az)
    pitch = np.arctan2(-ax, np.hypot(ay, az))
    cr, sr, cp, sp = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch)
    Ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    Rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    return Ry @ Rx


def initial_covariance(cfg, pos_cov, yaw_var: float) -> np.ndarray:
    """(N_ERR, N_ERR) error-state covariance at initialization: position ``pos_cov`` (3, 3) (m^2),
    yaw ``yaw_var`` (rad^2), velocity, tilt, biases and wheel scale from the ``init_*`` parameters
    of ``cfg``."""
    P = np.zeros((N_ERR, N_ERR))
    P[0:3, 0:3] = pos_cov
    P[3:6, 3:6] = np.eye(3) * cfg.init_vel_std_mps ** 2
    P[6:9, 6:9] = np.diag([cfg.init_tilt_std_rad ** 2, cfg.init_tilt_std_rad ** 2, yaw_var])
    P[9:12, 9:12] = np.eye(3) * cfg.init_acc_bias_std ** 2
    P[12:15, 12:15] = np.eye(3) * cfg.init_gyr_bias_std ** 2
    P[KS_, KS_] = cfg.init_wheel_scale_std ** 2
    return P


def gnss_motion_heading(track: list, odom_now, wheel_v_mps: float, t: float, min_span_m: float):
    """Pose of base_link in the map from a GNSS track and the dead-reckoned (odom) track.

    ``track``: [(t_s, z_map (3,), cov (3, 3), odom_xyyaw (3,))] of the epochs collected so far;
    ``odom_now`` (3,) the odom pose at ``t``. With odometry motion, the odom track is fitted to the
    GNSS track (2-D rigid, least squares) and the heading std follows from the fit residuals and
    the GNSS variance over the track's spread; without it (no wheels), the heading is that of the
    GNSS displacement, moving forward. Returns ``(p_xy (2,), yaw_rad, yaw_std_rad, v_forward_mps)``,
    or None while the GNSS track spans less than ``min_span_m``.
    """
    Z = np.array([e[1][:2] for e in track])
    if len(track) < 4 or np.linalg.norm(Z - Z[0], axis=1).max() < min_span_m:
        return None
    O = np.array([e[3][:2] for e in track])
    var = float(np.mean([e[2][0, 0] + e[2][1, 1] for e in track])) / 2.0
    if np.linalg.norm(O - O[0], axis=1).max() > 0.5 * min_span_m:
        co, cz = O.mean(0), Z.mean(0)
        Hm = (O - co).T @ (Z - cz)
        rot = np.arctan2(Hm[0, 1] - Hm[1, 0], Hm[0, 0] + Hm[1, 1])
        Rz2 = rot_z(rot)[:2, :2]
        res = Z - (O - co) @ Rz2.T - cz
        spread = float(np.sum((O - co) ** 2))
        yaw_std = float(np.sqrt((np.mean(np.sum(res ** 2, 1)) / 2 + var) / spread))
        return Rz2 @ (np.asarray(odom_now[:2], float) - co) + cz, wrap_angle(rot + odom_now[2]), yaw_std, wheel_v_mps
    d = Z[-1] - Z[0]
    yaw_std = float(np.sqrt(2 * var) / np.linalg.norm(d))
    return Z[-1], np.arctan2(d[1], d[0]), yaw_std, float(np.linalg.norm(d) / max(t - track[0][0], 1e-3))
