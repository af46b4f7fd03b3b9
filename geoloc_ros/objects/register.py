"""4-DoF registration (yaw + translation) of associated object centroids, with a covariance.

Both views are gravity aligned, so only yaw and a 3D translation remain: ``q_k = Rz(yaw) p_k + t``.
The weighted least-squares solution is closed form (2D weighted Procrustes for yaw and the
horizontal translation, weighted mean for z). Its covariance is ``s^2 (J^T W J)^-1`` with
``s^2`` the weighted residual variance per coordinate (floored at the centroid noise a
segmentation is expected to have) and ``J`` the Jacobian of the residuals in (x, y, z, yaw).

Near-degenerate geometry is rejected instead of returning a wrong pose: fewer than
``min_associations`` points, points (almost) collinear or coincident in the horizontal plane
(yaw unobservable), or residuals too large.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from geoloc_ros.geometry import rot_z, se3

__all__ = ["Registration", "register_4dof", "cov4_to_cov6", "transfer_cov4"]


@dataclass
class Registration:
    """Result of :func:`register_4dof`: T maps source points to the target frame."""
    ok: bool
    T: np.ndarray | None           # (4, 4) T_target_source, yaw-only rotation
    cov4: np.ndarray | None        # (4, 4) covariance of (x, y, z, yaw) of T, m^2 / rad^2
    rms_m: float = float("nan")    # weighted RMS residual
    n: int = 0
    reason: str = ""
    info: dict = field(default_factory=dict)


def register_4dof(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None,
                  min_associations: int = 4, min_spread_m: float = 0.75,
                  min_sigma_m: float = 0.15, max_rms_m: float = 1.0) -> Registration:
    """Yaw + translation aligning ``src`` (k, 3) onto ``dst`` (k, 3), both z-up.

    weights (k,) >= 0 (default 1). ``min_spread_m``: the smaller horizontal principal standard
    deviation of the (weighted) source points must exceed it, else the configuration is
    collinear and yaw is not trustworthy. ``min_sigma_m``: floor of the per-axis residual sigma
    used in the covariance. Returns :class:`Registration` (``ok`` False with a reason on reject).
    """
    src = np.asarray(src, float).reshape(-1, 3)
    dst = np.asarray(dst, float).reshape(-1, 3)
    k = len(src)
    if len(dst) != k:
        return Registration(False, None, None, reason=f"{k} source vs {len(dst)} target points")
    w = np.ones(k) if weights is None else np.asarray(weights, float).reshape(k)
    good = np.all(np.isfinite(src), 1) & np.all(np.isfinite(dst), 1) & np.isfinite(w) & (w > 0)
    src, dst, w = src[good], dst[good], w[good]
    k = len(src)
    if k < min_associations:
        return Registration(False, None, None, n=k,
                            reason=f"{k} associations < {min_associations} needed")
    wn = w / w.sum()
    ms, md = wn @ src, wn @ dst
    Xs, Xd = src - ms, dst - md
    # degeneracy: spread of the source points in the horizontal plane
    cov2 = (Xs[:, :2] * wn[:, None]).T @ Xs[:, :2]
    ev = np.linalg.eigvalsh(cov2)
    minor = float(np.sqrt(max(ev[0], 0.0)))
    major = float(np.sqrt(max(ev[1], 0.0)))
    if minor < min_spread_m:
        return Registration(False, None, None, n=k,
                            reason=f"degenerate geometry: objects nearly collinear "
                                   f"(horizontal spread {minor:.2f} m < {min_spread_m} m)",
                            info={"spread_minor_m": minor, "spread_major_m": major})
    # 2D weighted Procrustes: yaw maximising sum w (R p) . q
    Hc = np.sum(wn * (Xs[:, 0] * Xd[:, 0] + Xs[:, 1] * Xd[:, 1]))
    Hs = np.sum(wn * (Xs[:, 0] * Xd[:, 1] - Xs[:, 1] * Xd[:, 0]))
    yaw = float(np.arctan2(Hs, Hc))
    R = rot_z(yaw)
    t = md - R @ ms
    res = dst - (src @ R.T + t)
    rms = float(np.sqrt(wn @ np.sum(res ** 2, 1)))
    if not np.isfinite(rms) or rms > max_rms_m:
        return Registration(False, None, None, rms_m=rms, n=k,
                            reason=f"residual RMS {rms:.2f} m > {max_rms_m} m")
    # covariance: s^2 (J^T W J)^-1, residual r = R p + t - q, params (tx, ty, tz, yaw)
    Rp = src @ R.T
    J = np.zeros((k, 3, 4))
    J[:, 0, 0] = J[:, 1, 1] = J[:, 2, 2] = 1.0
    J[:, 0, 3] = -Rp[:, 1]
    J[:, 1, 3] = Rp[:, 0]
    wrel = w / w.mean()  # relative weights: information scales with count, not weight units
    dof = max(3 * k - 4, 1)
    s2 = max(float(np.sum(wrel * np.sum(res ** 2, 1)) / dof), min_sigma_m ** 2)
    JTJ = np.einsum("k,kai,kaj->ij", wrel, J, J)
    try:
        cov4 = s2 * np.linalg.inv(JTJ)
    except np.linalg.LinAlgError:
        return Registration(False, None, None, rms_m=rms, n=k, reason="singular information matrix")
    cov4 = 0.5 * (cov4 + cov4.T)
    if not np.all(np.isfinite(cov4)) or np.linalg.eigvalsh(cov4).min() <= 0:
        return Registration(False, None, None, rms_m=rms, n=k, reason="covariance not positive definite")
    return Registration(True, se3(R, t), cov4, rms, k,
                        info={"spread_minor_m": minor, "spread_major_m": major,
                              "sigma_m": float(np.sqrt(s2))})


def transfer_cov4(cov4: np.ndarray, T_ab: np.ndarray, p_b: np.ndarray) -> np.ndarray:
    """Covariance of (x, y, z, yaw) of the point/pose ``T_ab p_b`` given cov4 of T_ab at its origin.

    p_b (3,) is the pose origin in frame b: position = t + R p_b, so d/dyaw = perp(R p_b)."""
    Rp = np.asarray(T_ab)[:3, :3] @ np.asarray(p_b, float)
    J = np.eye(4)
    J[0, 3] = -Rp[1]
    J[1, 3] = Rp[0]
    return J @ cov4 @ J.T


def cov4_to_cov6(cov4: np.ndarray, var_roll_pitch_rad2: float = 1e3) -> np.ndarray:
    """(x, y, z, yaw) covariance -> 6x6 in ROS order (x, y, z, roll, pitch, yaw); roll and pitch
    are not observed by a 4-DoF fix and get a large variance."""
    c6 = np.zeros((6, 6))
    idx = [0, 1, 2, 5]
    c6[np.ix_(idx, idx)] = cov4
    c6[3, 3] = c6[4, 4] = var_roll_pitch_rad2
    return c6
