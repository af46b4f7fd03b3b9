"""Undo what a jump/drift absorbed before the window check caught it: re-anchor the filter's
pose on dead reckoning from the window check's reference epoch.

A slow GNSS drift (or the first epochs of a jump) passes the per-epoch NIS gate: the filter
follows it for seconds, mostly by turning its heading (a lateral drift of 0.4 m/s at 3 m/s looks
like a 7.6 deg heading error), and stays confident. When the jump/drift window check finally
fires, its reference epoch is the last accepted epoch before the mismatch built up; the filter's
pose stored with that epoch, carried to now by the odom-frame increment (wheel speed + gyro yaw
rate, no GNSS), is the pose the filter would have without the bad GNSS. When the filter's current
pose is inconsistent with it (chi-square on x, y, yaw) and has moved towards the GNSS mismatch
(it absorbed part of it, unlike a sudden jump caught on its first epoch), the pose is replaced by
the dead-reckoned one with its honest, grown covariance; when the dead-reckoned pose is itself
too uncertain to say so (early in a run), the filter's covariance grows by what it may have
absorbed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geoloc_ros.geometry import rot_z, wrap_angle

__all__ = ["Anchor", "reanchor"]

CHI2_3_95 = 7.815    # chi-square, 3 dof, 95 %


@dataclass
class Anchor:
    """The filter at one GNSS epoch: stamp (s), base position (3,) m, yaw (rad), (3, 3) covariance
    of (x, y, yaw), odom-frame pose (x, y, yaw), odom path length (m) and the GNSS antenna
    position (2,) m (map frame) of that epoch."""
    t: float
    p: np.ndarray
    yaw: float
    cov_xyyaw: np.ndarray
    odom: np.ndarray
    dist_m: float
    z_xy: np.ndarray


def reanchor(kf, anchor: Anchor, odom_now, dist_now_m: float, z_now_xy, cfg, gate: float = CHI2_3_95,
             absorbed_frac: float = 0.25, witness_xy=None):
    """Replace the pose of ``kf`` (an ErrorStateKF at the current stamp) by the dead-reckoned pose
    from ``anchor`` when the two disagree beyond ``gate`` and the filter's offset from it, along
    the GNSS-minus-dead-reckoning mismatch (``z_now_xy`` the current GNSS antenna position, map
    frame), is at least ``absorbed_frac`` of that mismatch. When it moved that way but the two
    agree within ``gate`` (the dead-reckoned pose is too uncertain to take), the filter's (x, y,
    yaw) covariance grows by the outer product of their difference instead. Returns (action,
    Mahalanobis^2) with action "replaced", "inflated", "kept" or None. ``witness_xy`` (2,): a pose
    fix taken since the anchor, carried to now (map frame, m): when the filter's position is
    nearer to it than the dead-reckoned one, that fix held the filter and nothing changes ("kept").

    Dead-reckoned pose: anchor position + map<-odom rotation at the anchor applied to the odom
    displacement since; yaw: anchor yaw + odom yaw change. Its covariance: the anchor's plus the
    window check's dead-reckoning error model (``gnss_window_odom_rel`` per metre along the path,
    heading std times distance across it) and the gyro's yaw random walk over the elapsed time.
    """
    odom_now = np.asarray(odom_now, float)
    d_odom = odom_now[:2] - anchor.odom[:2]
    R2 = rot_z(anchor.yaw - anchor.odom[2])[:2, :2]
    p_dr = anchor.p[:2] + R2 @ d_odom
    yaw_dr = wrap_angle(anchor.yaw + wrap_angle(odom_now[2] - anchor.odom[2]))
    dist = max(float(dist_now_m - anchor.dist_m), 0.0)
    dt = max(float(kf.t - anchor.t), 0.0)
    yaw_var0 = float(anchor.cov_xyyaw[2, 2])
    var_yaw = yaw_var0 + cfg.gyr_noise ** 2 * dt + float(kf.P[14, 14]) * dt * dt
    yaw_sd = np.sqrt(max(yaw_var0, cfg.gnss_window_yaw_std_rad ** 2))
    var_pos = (cfg.gnss_window_odom_rel * dist) ** 2 + (yaw_sd * dist) ** 2
    C_dr = np.array(anchor.cov_xyyaw, float).copy()
    C_dr[:2, :2] += np.eye(2) * var_pos
    C_dr[2, 2] = var_yaw
    yaw_now = float(np.arctan2(kf.R[1, 0], kf.R[0, 0]))
    e = np.array([kf.p[0] - p_dr[0], kf.p[1] - p_dr[1], wrap_angle(yaw_now - yaw_dr)])
    C_now = kf.pose_cov6()[np.ix_([0, 1, 5], [0, 1, 5])]
    try:
        m2 = float(e @ np.linalg.solve(C_now + C_dr, e))
    except np.linalg.LinAlgError:
        m2 = float("inf")
    mism = (np.asarray(z_now_xy, float)[:2] - anchor.z_xy[:2]) - R2 @ d_odom
    n = float(np.linalg.norm(mism))
    absorbed = float(e[:2] @ mism) / n if n > 0 else 0.0
    if absorbed < absorbed_frac * n:
        return None, m2
    if witness_xy is not None:
        w = np.asarray(witness_xy, float)[:2]
        if np.linalg.norm(kf.p[:2] - w) <= np.linalg.norm(p_dr - w):
            return "kept", m2
    if m2 <= gate:
        # the dead-reckoned pose is too uncertain to replace the filter's (an anchor soon after
        # initialization), but the filter did move towards the mismatch: its pose may carry that
        # much of the fault, so its covariance must say so (it stayed at 0.3 m while 2.6 m off)
        P = kf.P
        idx = np.array([0, 1, 8])
        P[np.ix_(idx, idx)] += np.outer(e, e)
        return "inflated", m2
    Rz = rot_z(-e[2])
    kf.R = Rz @ kf.R
    kf.v = Rz @ kf.v
    kf.p[:2] = p_dr
    # the pose's correlations with the rest were built by the bad GNSS: dropped
    P = kf.P
    for i in (0, 1, 8):
        P[i, :] = 0.0
        P[:, i] = 0.0
    P[0:2, 0:2] = C_dr[:2, :2]
    P[8, 8] = C_dr[2, 2]
    P[3:6, 3:6] += np.eye(3) * float(kf.v @ kf.v) * C_dr[2, 2]   # the velocity turned with the yaw
    return "replaced", m2
