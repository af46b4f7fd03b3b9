"""Robust point-to-point ICP against a local map, and the point-to-plane covariance of its result.

Poses are ``T_odom_base`` (4, 4). The Gauss-Newton update is a right (body-frame) perturbation,
``T <- T Exp([dt, dtheta])``, so the covariance of the result is in base_link at the scan's
stamp, translation first, rotation vector second (m, rad).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

__all__ = ["IcpResult", "se3_exp", "se3_log", "register", "plane_covariance"]


def se3_exp(xi) -> np.ndarray:
    """(4, 4) from a twist (6,) [translation (m), rotation vector (rad)] (first-order translation)."""
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(np.asarray(xi[3:6], float)).as_matrix()
    T[:3, 3] = xi[0:3]
    return T


def se3_log(T) -> np.ndarray:
    """Inverse of :func:`se3_exp`: (6,) [translation (m), rotation vector (rad)]."""
    return np.concatenate([T[:3, 3], Rotation.from_matrix(T[:3, :3]).as_rotvec()])


def _skew(p) -> np.ndarray:
    """(3, 3) cross-product matrix of a (3,) vector."""
    return np.array([[0.0, -p[2], p[1]], [p[2], 0.0, -p[0]], [-p[1], p[0], 0.0]])


@dataclass
class IcpResult:
    ok: bool
    T: np.ndarray                      # (4, 4) T_odom_base
    iterations: int = 0
    n_corr: int = 0                    # correspondences in the last iteration
    n_planar: int = 0                  # of them, point-to-plane ones
    inlier_fraction: float = 0.0       # of the source points
    rmse_m: float = float("nan")       # weighted residual RMS in the last iteration
    reason: str = ""
    J: np.ndarray = field(default_factory=lambda: np.zeros((0, 6)))   # (K, 6) point-to-plane Jacobians
    e: np.ndarray = field(default_factory=lambda: np.zeros(0))        # (K,) their residuals (m)
    w: np.ndarray = field(default_factory=lambda: np.zeros(0))        # (K,) their robust weights


def register(src_b: np.ndarray, lmap, T0: np.ndarray, threshold_m: float,
             max_iterations: int = 30, eps: float = 1e-4, min_corr: int = 50) -> IcpResult:
    """ICP of (N, 3) base-frame points against a :class:`~geoloc_ros.odometry.voxel.LocalMap`
    from the guess ``T0`` (4, 4): each source point is matched to its nearest map point within
    ``threshold_m``; the residual is the distance to the map point's plane where the map is
    planar there, else the point-to-point vector; Geman-McClure kernel of scale ``threshold_m / 3``;
    Gauss-Newton on a body-frame perturbation."""
    T = np.array(T0, float)
    k2 = (threshold_m / 3.0) ** 2
    tree, map_pts = lmap.tree(), lmap.points
    res = IcpResult(False, T)
    for it in range(1, max_iterations + 1):
        R, t = T[:3, :3], T[:3, 3]
        p = src_b @ R.T + t
        d, idx = tree.query(p, k=1, distance_upper_bound=threshold_m, workers=1)
        m = np.isfinite(d)
        n = int(m.sum())
        if n < min_corr:
            res.reason = f"only {n} correspondences within {threshold_m:.2f} m (need {min_corr})"
            res.iterations, res.n_corr = it, n
            return res
        idx = idx[m]
        lmap.ensure_normals(idx)
        sb = src_b[m]
        r_b = (p[m] - map_pts[idx]) @ R              # residual in base coordinates (R^T r)
        pl = lmap.planar[idx] == 1
        # point-to-plane rows: e = n_b . r_b, J = [n_b, sb x n_b]
        n_b = lmap.normals[idx[pl]] @ R
        e = np.einsum("ij,ij->i", n_b, r_b[pl])
        Jp = np.concatenate([n_b, np.cross(sb[pl], n_b)], axis=1)
        wp_ = (k2 / (k2 + e * e)) ** 2
        H = (Jp * wp_[:, None]).T @ Jp
        g = Jp.T @ (wp_ * e)
        # point-to-point rows: J = [I, -[sb]x], in closed form
        sq, rq = sb[~pl], r_b[~pl]
        r2 = np.einsum("ij,ij->i", rq, rq)
        wq = (k2 / (k2 + r2)) ** 2
        wpt = sq * wq[:, None]
        Hq = np.zeros((6, 6))
        Hq[0:3, 0:3] = np.eye(3) * wq.sum()
        Hq[0:3, 3:6] = -_skew(wpt.sum(0))
        Hq[3:6, 0:3] = Hq[0:3, 3:6].T
        Hq[3:6, 3:6] = np.eye(3) * float(np.einsum("ij,ij->", wpt, sq)) - wpt.T @ sq
        H += Hq
        g += np.concatenate([(wq[:, None] * rq).sum(0), np.cross(wpt, rq).sum(0)])
        try:
            dx = -np.linalg.solve(H + np.eye(6) * 1e-9, g)
        except np.linalg.LinAlgError:
            res.reason = "singular ICP normal equations"
            return res
        T = T @ se3_exp(dx)
        res.iterations, res.n_corr, res.n_planar = it, n, int(pl.sum())
        if np.abs(dx).max() < eps:
            break
    else:
        res.reason = f"no convergence in {max_iterations} iterations (last step {np.abs(dx).max():.1e})"
        res.T = T
        return res
    res.T = T
    res.ok = True
    res.inlier_fraction = n / max(len(src_b), 1)
    sw = wp_.sum() + wq.sum()
    res.rmse_m = float(np.sqrt((np.sum(wp_ * e * e) + np.sum(wq * r2)) / max(sw, 1e-12)))
    res.J, res.e, res.w = Jp, e, wp_
    return res


def plane_covariance(res: IcpResult, inflation: float, min_trans_std_m: float, min_rot_std_rad: float,
                     degenerate_ratio: float = 0.01, degenerate_std_m: float = 0.3) -> tuple[np.ndarray, dict]:
    """(6, 6) covariance of the ICP pose in base_link, [translation, rotation vector], from the
    point-to-plane rows of the last ICP iteration only: ``inflation`` * s^2 * (J^T W J)^-1 with
    s^2 the weighted plane-residual variance (neighbouring residuals are correlated, hence the
    inflation), plus per-axis floors. Point-to-point rows are left out: a map point's
    discretisation pins its translation in every direction, a plane only along its normal, so a
    direction the geometry does not constrain (a corridor, an open field) gets a large variance:
    translation directions whose information is below ``degenerate_ratio`` times the best one
    (normal-estimation noise still gives them a little) get ``degenerate_std_m`` added.
    """
    info = {"planar": int(len(res.e))}
    if len(res.e) < 10:
        return np.diag([1e2] * 3 + [1.0] * 3), info
    J, e, w = res.J, res.e, res.w
    H = (J * w[:, None]).T @ J
    var = float(np.sum(w * e * e) / max(w.sum() - 6.0, 1.0))
    info["plane_rms_m"] = float(np.sqrt(var))
    lam, vec = np.linalg.eigh(H[0:3, 0:3])
    info["degeneracy"] = float(lam[0] / max(lam[-1], 1e-12))
    Hreg = H + np.eye(6) * 1e-9 * max(np.trace(H), 1e-9)
    cov = np.linalg.inv(Hreg) * var * inflation
    cov = 0.5 * (cov + cov.T)
    cov = np.minimum(cov, 1e4) if not np.all(np.isfinite(cov)) else cov
    cov += np.diag([min_trans_std_m ** 2] * 3 + [min_rot_std_rad ** 2] * 3)
    weak = lam < degenerate_ratio * max(lam[-1], 1e-12)
    if weak.any():
        V = vec[:, weak]
        cov[0:3, 0:3] += degenerate_std_m ** 2 * (V @ V.T)
        info["degenerate_directions"] = int(weak.sum())
    return cov, info
