"""3-DoF pose between two BEV images from keypoints + local descriptors.

Steps (``estimate_pose``): mutual nearest-neighbour matching of the local descriptors ->
2-point RANSAC in metres (inlier threshold ``inlier_threshold_m``) -> least-squares refinement on
the inliers (closed-form 2-D Kabsch, re-selecting inliers) -> covariance from the inlier geometry
and residuals (Gauss-Newton information of the point residuals, scaled by the residual variance)
-> "no fix" with a reason below ``min_inliers``.

Keypoints are FAST-9 corners of the BEV image (vectorised numpy, 3x3 non-max suppression).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import maximum_filter

from geoloc_ros.geometry import rot_z, se2, se3, wrap_angle, yaw_of

__all__ = ["fast_keypoints", "mutual_matches", "top_k_matches", "PoseResult", "estimate_pose", "se2_pose_to_map",
           "fit_rigid_2d", "map_xyyaw", "poses_differ"]

# Bresenham circle of radius 3 (16 pixels), clockwise from the top, as (du, dv).
_CIRCLE = np.array([(0, -3), (1, -3), (2, -2), (3, -1), (3, 0), (3, 1), (2, 2), (1, 3),
                    (0, 3), (-1, 3), (-2, 2), (-3, 1), (-3, 0), (-3, -1), (-2, -2), (-1, -3)])


@functools.lru_cache(maxsize=4)
def _arc_table(arc: int) -> np.ndarray:
    """(65536,) bool: does the 16-bit circle mask hold ``arc`` contiguous set bits (circularly)?"""
    bits = ((np.arange(1 << 16)[:, None] >> np.arange(16)) & 1).astype(bool)
    bits = np.concatenate([bits, bits[:, :arc - 1]], 1)
    run = np.zeros(1 << 16, np.int32)
    best = np.zeros(1 << 16, np.int32)
    for k in range(bits.shape[1]):
        run = np.where(bits[:, k], run + 1, 0)
        np.maximum(best, run, out=best)
    return best >= arc


@functools.lru_cache(maxsize=8)
def _outside_disc(H: int, W: int, r: float) -> np.ndarray:
    """(H, W) bool: pixels farther than ``r`` from the image centre ((H-1)/2 in both axes)."""
    c = (H - 1) / 2.0
    vv, uu = np.mgrid[0:H, 0:W]
    out = (uu - c) ** 2 + (vv - c) ** 2 > r * r
    out.setflags(write=False)
    return out


def fast_keypoints(img: np.ndarray, threshold: float = 20.0, max_keypoints: int = 400,
                   arc: int = 9, radius_px: float | None = None) -> np.ndarray:
    """(K, 2) float pixel coordinates (u=col, v=row) of FAST-``arc`` corners, strongest first.

    A pixel is a corner when ``arc`` contiguous pixels of its radius-3 circle are all brighter than
    it plus ``threshold`` or all darker than it minus ``threshold``; the score is the summed excess
    contrast over the circle; 3x3 non-max suppression; only pixels within ``radius_px`` of the centre
    (default: the inscribed disc less 4 px) are kept.
    """
    img = np.asarray(img, np.float32)
    H, W = img.shape
    pad = np.pad(img, 3)
    # High-speed test: an arc of >= 9 of the 16 pixels holds at least 2 of the 4 compass pixels,
    # so only pixels with 2 compass pixels brighter (or darker) than threshold can be corners.
    compass = np.stack([pad[3 + dv:3 + dv + H, 3 + du:3 + du + W] for du, dv in _CIRCLE[::4]]) - img[None]
    cand = ((compass > threshold).sum(0) >= 2) | ((compass < -threshold).sum(0) >= 2) if arc >= 9 \
        else np.ones((H, W), bool)
    cv, cu = np.nonzero(cand)
    ring = pad[cv[None] + 3 + _CIRCLE[:, 1:2], cu[None] + 3 + _CIRCLE[:, 0:1]]        # (16, n)
    diff = ring - img[cv, cu][None]
    weights = (1 << np.arange(16, dtype=np.int32))[:, None]
    lut = _arc_table(arc)
    corner = lut[((diff > threshold) * weights).sum(0)] | lut[((diff < -threshold) * weights).sum(0)]
    score = np.zeros((H, W), np.float32)
    score[cv, cu] = np.where(corner, np.maximum(np.abs(diff) - threshold, 0).sum(0), 0.0)
    c = (H - 1) / 2.0
    score[_outside_disc(H, W, float(radius_px if radius_px is not None else c - 4))] = 0
    peak = (score > 0) & (score >= maximum_filter(score, size=3, mode="constant"))
    v, u = np.nonzero(peak)
    s = score[v, u]
    order = np.argsort(-s, kind="stable")[:max_keypoints]
    return np.stack([u[order], v[order]], 1).astype(np.float64)


def _similarity(d1: np.ndarray, d2: np.ndarray) -> np.ndarray:
    """(N1, N2) float32 cosine similarities of unit descriptors."""
    return np.asarray(d1, np.float32) @ np.asarray(d2, np.float32).T


def mutual_matches(d1: np.ndarray, d2: np.ndarray, sim: np.ndarray | None = None) -> np.ndarray:
    """(M, 2) index pairs (i in d1, j in d2) that are each other's nearest neighbour (cosine);
    ``sim`` (N1, N2): their similarities when already computed."""
    if len(d1) == 0 or len(d2) == 0:
        return np.zeros((0, 2), np.int64)
    sim = _similarity(d1, d2) if sim is None else sim
    nn12 = sim.argmax(1)
    nn21 = sim.argmax(0)
    i = np.nonzero(nn21[nn12] == np.arange(len(d1)))[0]
    return np.stack([i, nn12[i]], 1)


def fit_rigid_2d(q: np.ndarray, p: np.ndarray) -> tuple[float, np.ndarray]:
    """Least-squares (yaw_rad, t (2,)) with p ~ R(yaw) q + t for (N, 2) point sets (2-D Kabsch)."""
    mq, mp = q.mean(0), p.mean(0)
    a, b = q - mq, p - mp
    yaw = np.arctan2((a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]).sum(), (a * b).sum())
    R = rot_z(yaw)[:2, :2]
    return float(yaw), mp - R @ mq


@dataclass
class PoseResult:
    """Pose of a query in a keyframe's base frame: p_kf = R(yaw) p_query + (x, y).

    A refused pose (``ok`` False) that got as far as the refinement keeps its x, y, yaw and
    ``inliers`` (its covariance stays NaN); one refused earlier has ``inliers`` 0."""
    ok: bool
    reason: str = ""
    x_m: float = 0.0
    y_m: float = 0.0
    yaw_rad: float = 0.0
    cov3: np.ndarray = field(default_factory=lambda: np.full((3, 3), np.nan))  # x, y, yaw (m^2, rad^2)
    inliers: int = 0
    matches: int = 0
    rms_m: float = float("nan")

    @property
    def T(self) -> np.ndarray:
        """3x3 SE(2) T_kf_query."""
        return se2(self.x_m, self.y_m, self.yaw_rad)


def top_k_matches(d1: np.ndarray, d2: np.ndarray, k: int, sim: np.ndarray | None = None) -> np.ndarray:
    """(N1, k) indices of the ``k`` most similar rows of d2 for every row of d1 (cosine), best first."""
    sim = _similarity(d1, d2) if sim is None else sim
    k = min(k, sim.shape[1])
    idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sim, idx, 1), axis=1)
    return np.take_along_axis(idx, order, 1)


def _hypotheses(q: np.ndarray, p: np.ndarray, iters: int, thr: float, rng: np.random.Generator):
    """2-point rigid hypotheses (yaw (M,), t (M, 2)) from random pairs of the matches q[i] <-> p[i]."""
    n = len(q)
    if n < 2:
        return np.zeros(0), np.zeros((0, 2))
    i = rng.integers(0, n, iters)
    j = rng.integers(0, n, iters)
    dq, dp = q[j] - q[i], p[j] - p[i]
    lq, lp = np.linalg.norm(dq, axis=1), np.linalg.norm(dp, axis=1)
    good = (i != j) & (lq > 2 * thr) & (np.abs(lq - lp) < 2 * thr)
    i, j, dq, dp = i[good], j[good], dq[good], dp[good]
    yaw = np.arctan2(dp[:, 1], dp[:, 0]) - np.arctan2(dq[:, 1], dq[:, 0])
    c, s = np.cos(yaw), np.sin(yaw)
    mq, mp = 0.5 * (q[i] + q[j]), 0.5 * (p[i] + p[j])
    t = mp - np.stack([c * mq[:, 0] - s * mq[:, 1], s * mq[:, 0] + c * mq[:, 1]], 1)
    return yaw, t


def _residual2(yaw, t, q, pc):
    """Squared residuals (M, Nq, k) of hypotheses against candidate points pc (Nq, k, 2) of q (Nq, 2)."""
    c, s = np.cos(yaw).astype(np.float32)[:, None], np.sin(yaw).astype(np.float32)[:, None]
    q, t, pc = q.astype(np.float32), np.asarray(t, np.float32), pc.astype(np.float32)
    px = c * q[None, :, 0] - s * q[None, :, 1] + t[:, :1]
    py = s * q[None, :, 0] + c * q[None, :, 1] + t[:, 1:]
    return (px[..., None] - pc[None, ..., 0]) ** 2 + (py[..., None] - pc[None, ..., 1]) ** 2


def estimate_pose(kp_q_m: np.ndarray, desc_q: np.ndarray, kp_k_m: np.ndarray, desc_k: np.ndarray,
                  cfg, rng: np.random.Generator | None = None) -> PoseResult:
    """Pose of the query in the keyframe frame from (N, 2) metric keypoints and (N, 128) descriptors.

    Hypotheses come from pairs of mutual nearest-neighbour matches (and of plain nearest neighbours);
    a query keypoint supports a hypothesis when one of its ``match_top_k`` most similar keyframe
    keypoints lies within ``inlier_threshold_m`` of where the hypothesis puts it (each query keypoint
    counts once). Least squares then re-selects inliers until they settle.
    """
    rng = rng if rng is not None else np.random.default_rng(cfg.seed)
    nq, nk = len(kp_q_m), len(kp_k_m)
    if min(nq, nk) < max(cfg.min_inliers, 3):
        return PoseResult(False, f"only {min(nq, nk)} keypoints (< {cfg.min_inliers})")
    sim = _similarity(desc_q, desc_k)
    m = mutual_matches(desc_q, desc_k, sim)
    n = len(m)
    cand = top_k_matches(desc_q, desc_k, cfg.match_top_k, sim)             # (nq, k)
    pc = kp_k_m[cand]                                                       # (nq, k, 2)
    thr = cfg.inlier_threshold_m
    h = cfg.ransac_iterations // 2
    y1, t1 = _hypotheses(kp_q_m[m[:, 0]], kp_k_m[m[:, 1]], h, thr, rng)
    y2, t2 = _hypotheses(kp_q_m, pc[:, 0], cfg.ransac_iterations - h, thr, rng)
    yaw_h, t_h = np.concatenate([y1, y2]), np.concatenate([t1, t2])
    if len(yaw_h) == 0:
        return PoseResult(False, "no consistent pair of descriptor matches", matches=n)
    n_sub, n_keep = cfg.ransac_preselect_keypoints, cfg.ransac_preselect_hypotheses
    if 0 < n_keep < len(yaw_h) and 0 < 2 * n_sub <= nq:
        # preemptive scoring: all hypotheses on a random subset of the query keypoints, the best
        # ``n_keep`` of them on all (the full (M, Nq, k) residual cube was the tail of the pose
        # stage's latency when good descriptors let most of the 256 hypotheses through)
        sub = rng.choice(nq, n_sub, replace=False)
        s_sub = (_residual2(yaw_h, t_h, kp_q_m[sub], pc[sub]) < thr * thr).any(2).sum(1)
        keep = np.argsort(-s_sub, kind="stable")[:n_keep]
        yaw_h, t_h = yaw_h[keep], t_h[keep]
    support = (_residual2(yaw_h, t_h, kp_q_m, pc) < thr * thr).any(2).sum(1)
    b = int(support.argmax())
    yaw, t = float(yaw_h[b]), t_h[b]
    sel = None
    for _ in range(4):                                  # least-squares refinement on the inliers
        r2 = _residual2(np.array([yaw]), t[None], kp_q_m, pc)[0]           # (nq, k)
        best = r2.argmin(1)
        inl = r2[np.arange(nq), best] < thr * thr
        new = (inl, best)
        if sel is not None and np.array_equal(sel[0], inl) and np.array_equal(sel[1][inl], best[inl]):
            break
        sel = new
        if inl.sum() < 3:
            break
        yaw, t = fit_rigid_2d(kp_q_m[inl], pc[np.nonzero(inl)[0], best[inl]])
    inl, best = sel
    k = int(inl.sum())
    # a refused pose keeps its x, y, yaw and inlier count: the engine weighs every retrieved
    # keyframe's best pose against the others (a wrong place scores several different poses alike)
    tx, ty = float(t[0]), float(t[1])
    if k < cfg.min_inliers:
        return PoseResult(False, f"only {k} RANSAC inliers of {nq} keypoints ({n} mutual matches, "
                          f"< {cfg.min_inliers})", tx, ty, yaw, inliers=k, matches=n)
    if k < cfg.min_inlier_ratio * min(nq, nk):
        return PoseResult(False, f"inlier ratio {k}/{min(nq, nk)} below {cfg.min_inlier_ratio:g}",
                          tx, ty, yaw, inliers=k, matches=n)
    q = kp_q_m[inl]
    p = pc[np.nonzero(inl)[0], best[inl]]
    R = rot_z(yaw)[:2, :2]
    Rq = q @ R.T
    res = Rq + t - p
    dof = max(2 * k - 3, 1)
    sigma2 = max(float((res ** 2).sum()) / dof, 0.05 ** 2)
    J = np.zeros((2 * k, 3))
    J[0::2, 0] = 1.0
    J[1::2, 1] = 1.0
    J[0::2, 2] = -Rq[:, 1]
    J[1::2, 2] = Rq[:, 0]
    cov = cfg.cov_inflation * sigma2 * np.linalg.inv(J.T @ J)
    return PoseResult(True, "", float(t[0]), float(t[1]), float(yaw), 0.5 * (cov + cov.T), k, n,
                      float(np.sqrt((res ** 2).sum(1).mean())))


def se2_pose_to_map(T_map_kf: np.ndarray, res: PoseResult,
                    unobserved_var: float = 1e4) -> tuple[np.ndarray, np.ndarray]:
    """(T_map_base (4,4), cov6 (6,6) ROS order) from a keyframe pose and a :class:`PoseResult`.

    The query gets the keyframe's height and zero roll/pitch; z, roll, pitch are unobserved
    (``unobserved_var``); the x, y, yaw block is the result's covariance rotated into the map.
    """
    kf_yaw = float(np.arctan2(T_map_kf[1, 0], T_map_kf[0, 0]))
    T_kf = se3(rot_z(kf_yaw), T_map_kf[:3, 3])
    T_rel = se3(rot_z(res.yaw_rad), [res.x_m, res.y_m, 0.0])
    T = T_kf @ T_rel
    J = np.eye(3)
    J[:2, :2] = rot_z(kf_yaw)[:2, :2]
    c3 = J @ res.cov3 @ J.T
    cov6 = np.diag([0.0, 0.0, unobserved_var, unobserved_var, unobserved_var, 0.0])
    idx = [0, 1, 5]
    cov6[np.ix_(idx, idx)] = c3
    return T, cov6


def map_xyyaw(T_map_kf: np.ndarray, res: PoseResult) -> tuple[float, float, float]:
    """(x_m, y_m, yaw_rad) in the map of a :class:`PoseResult` against a keyframe at T_map_kf (4, 4)
    (the x, y, yaw part of :func:`se2_pose_to_map`, without the covariance)."""
    a = yaw_of(T_map_kf)
    c, s = np.cos(a), np.sin(a)
    return (float(T_map_kf[0, 3] + c * res.x_m - s * res.y_m), float(T_map_kf[1, 3] + s * res.x_m + c * res.y_m),
            float(wrap_angle(a + res.yaw_rad)))


def poses_differ(a, b, cfg) -> bool:
    """Are map poses ``a`` and ``b`` (x_m, y_m, yaw_rad) different answers: farther apart than
    ``cfg.distinct_dist_m`` or ``cfg.distinct_yaw_rad``?"""
    return bool(np.hypot(a[0] - b[0], a[1] - b[1]) > cfg.distinct_dist_m
                or abs(float(wrap_angle(a[2] - b[2]))) > cfg.distinct_yaw_rad)
