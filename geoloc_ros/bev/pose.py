"""3-DoF pose between two BEV images from keypoints + local descriptors.

Steps (``estimate_pose``): mutual nearest-neighbour matching of the local descriptors ->
2-point RANSAC in metres (inlier threshold ``inlier_threshold_m``) -> least-squares refinement on
the inliers (closed-form 2-D Kabsch, re-selecting inliers) -> covariance from the inlier geometry
and residuals (Gauss-Newton information of the point residuals, scaled by the residual variance)
-> "no fix" with a reason below ``min_inliers``. ``estimate_poses`` does this for the top-k retrieved
keyframes of one query at once (one hypothesis-scoring pass for all), as the engine's re-ranking needs.

Keypoints are FAST-9 corners of the BEV image (vectorised numpy, 3x3 non-max suppression).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import maximum_filter

from geoloc_ros.geometry import rot_z, se2, se3, wrap_angle, yaw_of

__all__ = ["fast_keypoints", "mutual_matches", "top_k_matches", "PoseResult", "estimate_pose", "estimate_poses",
           "se2_pose_to_map", "fit_rigid_2d", "map_xyyaw", "poses_differ"]

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


def _draw_pairs(n: int, iters: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``iters`` random index pairs (i, j) into n matches (none when n < 2)."""
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return rng.integers(0, n, iters), rng.integers(0, n, iters)


def _pair_hypotheses(qi, qj, pi, pj, same, thr: float):
    """2-point rigid hypotheses from match pairs qi <-> pi, qj <-> pj (..., 2): yaw (...), t (..., 2) and
    ``good`` (...) where the pair is two distinct matches, long enough and of consistent length."""
    dq, dp = qj - qi, pj - pi
    lq, lp = np.hypot(dq[..., 0], dq[..., 1]), np.hypot(dp[..., 0], dp[..., 1])
    good = ~same & (lq > 2 * thr) & (np.abs(lq - lp) < 2 * thr)
    yaw = np.arctan2(dp[..., 1], dp[..., 0]) - np.arctan2(dq[..., 1], dq[..., 0])
    c, s = np.cos(yaw), np.sin(yaw)
    mq, mp = 0.5 * (qi + qj), 0.5 * (pi + pj)
    t = mp - np.stack([c * mq[..., 0] - s * mq[..., 1], s * mq[..., 0] + c * mq[..., 1]], -1)
    return yaw, t, good


def _support(yaw, t, q, pcx, pcy, thr: float) -> np.ndarray:
    """(K, M) query points (Nq, 2) that hypotheses yaw (K, M), t (K, M, 2) put within ``thr`` of one of
    their k candidate points pcx, pcy (K, k, Nq): one (K, M, Nq) slab per candidate rank, in place."""
    c, s = np.cos(yaw).astype(np.float32)[..., None], np.sin(yaw).astype(np.float32)[..., None]
    qx, qy = q[:, 0].astype(np.float32), q[:, 1].astype(np.float32)
    t = np.asarray(t, np.float32)
    px = c * qx - s * qy + t[..., :1]                                       # (K, M, Nq)
    py = s * qx + c * qy + t[..., 1:]
    hit = None
    dx, dy = np.empty_like(px), np.empty_like(py)
    for r in range(pcx.shape[1]):
        np.subtract(px, pcx[:, None, r], out=dx)
        np.subtract(py, pcy[:, None, r], out=dy)
        dx *= dx
        dy *= dy
        dx += dy
        h = dx < thr * thr
        hit = h if hit is None else np.logical_or(hit, h, out=hit)
    return np.count_nonzero(hit, axis=2)


def _residual2(yaw, t, q, pc):
    """Squared residuals (K, M, Nq, k) of hypotheses yaw (K, M), t (K, M, 2) of K keyframes against
    their candidate points pc (K, Nq, k, 2) of the query points q (Nq, 2)."""
    c, s = np.cos(yaw).astype(np.float32)[..., None], np.sin(yaw).astype(np.float32)[..., None]
    q, t, pc = q.astype(np.float32), np.asarray(t, np.float32), pc.astype(np.float32)
    px = c * q[:, 0] - s * q[:, 1] + t[..., :1]                             # (K, M, Nq)
    py = s * q[:, 0] + c * q[:, 1] + t[..., 1:]
    return (px[..., None] - pc[:, None, ..., 0]) ** 2 + (py[..., None] - pc[:, None, ..., 1]) ** 2


def _fit_rigid_2d_batch(q: np.ndarray, p: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`fit_rigid_2d` of K weighted problems: q (Nq, 2), p (K, Nq, 2), w (K, Nq) 0/1 with at least
    one 1 per row -> yaw (K,), t (K, 2)."""
    n = w.sum(1, keepdims=True)
    mq = (w @ q) / n                                                        # (K, 2)
    mp = (w[..., None] * p).sum(1) / n
    a, b = q[None] - mq[:, None], p - mp[:, None]
    yaw = np.arctan2((w * (a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0])).sum(1), (w[..., None] * a * b).sum((1, 2)))
    c, s = np.cos(yaw), np.sin(yaw)
    return yaw, mp - np.stack([c * mq[:, 0] - s * mq[:, 1], s * mq[:, 0] + c * mq[:, 1]], 1)


def estimate_pose(kp_q_m: np.ndarray, desc_q: np.ndarray, kp_k_m: np.ndarray, desc_k: np.ndarray,
                  cfg, rng: np.random.Generator | None = None) -> PoseResult:
    """Pose of the query in the keyframe frame from (N, 2) metric keypoints and (N, 128) descriptors.

    Hypotheses come from pairs of mutual nearest-neighbour matches (and of plain nearest neighbours);
    a query keypoint supports a hypothesis when one of its ``match_top_k`` most similar keyframe
    keypoints lies within ``inlier_threshold_m`` of where the hypothesis puts it (each query keypoint
    counts once). Least squares then re-selects inliers until they settle.
    """
    return estimate_poses(kp_q_m, desc_q, [(kp_k_m, desc_k)], cfg, rng)[0]


def estimate_poses(kp_q_m: np.ndarray, desc_q: np.ndarray, keyframes: list, cfg,
                   rng: np.random.Generator | None = None) -> list[PoseResult]:
    """:func:`estimate_pose` of one query against K keyframes ``[(kp_k_m (N, 2), desc_k (N, 128))]``
    at once: one similarity product, one hypothesis-scoring cube and one refinement loop for all
    (the per-keyframe numpy calls were most of the pose stage's time). Random draws per keyframe in
    order, then the preselection subset shared by all: with one keyframe, or with the preselection
    off, the answers equal those of K calls of :func:`estimate_pose` with the same generator.
    """
    rng = rng if rng is not None else np.random.default_rng(cfg.seed)
    nq = len(kp_q_m)
    out: list = [None] * len(keyframes)
    live = []
    for j, (kp, _) in enumerate(keyframes):
        if min(nq, len(kp)) < max(cfg.min_inliers, 3):
            out[j] = PoseResult(False, f"only {min(nq, len(kp))} keypoints (< {cfg.min_inliers})")
        else:
            live.append(j)
    if not live:
        return out
    sim_all = _similarity(desc_q, np.concatenate([keyframes[j][1] for j in live]))
    cuts = np.cumsum([len(keyframes[j][0]) for j in live])[:-1]
    thr = cfg.inlier_threshold_m
    kmax = min(cfg.match_top_k, max(len(keyframes[j][0]) for j in live))
    h = cfg.ransac_iterations // 2
    rows = []                                   # (j, mutual matches, pc (nq, kmax, 2))
    I = np.zeros((len(live), cfg.ransac_iterations, 2), np.int64)          # pair indices into QP
    QP = []                                     # per keyframe: matches (n1 mutual + nq nearest, 4): q, p
    drawn = []
    for a, (j, sim) in enumerate(zip(live, np.split(sim_all, cuts, axis=1))):
        kp = keyframes[j][0]
        m = mutual_matches(desc_q, keyframes[j][1], sim)
        cand = top_k_matches(desc_q, None, cfg.match_top_k, sim)            # (nq, k)
        pc = np.full((nq, kmax, 2), 1e6)        # a keyframe with fewer keypoints than k: far padding
        pc[:, :cand.shape[1]] = kp[cand]
        rows.append((j, len(m), pc))
        # pairs of mutual matches (first half) and of plain nearest neighbours (second half)
        i1, j1 = _draw_pairs(len(m), h, rng)
        i2, j2 = _draw_pairs(nq, cfg.ransac_iterations - h, rng)
        QP.append(np.concatenate([np.hstack([kp_q_m[m[:, 0]], kp[m[:, 1]]]), np.hstack([kp_q_m, pc[:, 0]])]))
        ii = np.concatenate([i1, i2 + len(m)])
        jj = np.concatenate([j1, j2 + len(m)])
        I[a, :len(ii), 0], I[a, :len(ii), 1] = ii, jj
        drawn.append(len(ii))
    K = len(rows)
    width = max(len(x) for x in QP)
    QPa = np.zeros((K, width, 4))
    for a, x in enumerate(QP):
        QPa[a, :len(x)] = x
    pi_, pj_ = QPa[np.arange(K)[:, None], I[..., 0]], QPa[np.arange(K)[:, None], I[..., 1]]   # (K, iters, 4)
    Y, Tt, good = _pair_hypotheses(pi_[..., :2], pj_[..., :2], pi_[..., 2:], pj_[..., 2:],
                                   I[..., 0] == I[..., 1], thr)
    good &= np.arange(I.shape[1]) < np.array(drawn)[:, None]
    n_good = good.sum(1)
    for a in np.nonzero(n_good == 0)[0]:
        out[rows[a][0]] = PoseResult(False, "no consistent pair of descriptor matches", matches=rows[a][1])
    keep_rows = np.nonzero(n_good > 0)[0]
    if not len(keep_rows):
        return out
    rows = [rows[a] for a in keep_rows]
    Y, Tt, good, K = Y[keep_rows], Tt[keep_rows], good[keep_rows], len(keep_rows)
    PC = np.stack([r[2] for r in rows])                                      # (K, nq, k, 2)
    pcx = np.ascontiguousarray(PC[..., 0].transpose(0, 2, 1), np.float32)   # (K, k, nq)
    pcy = np.ascontiguousarray(PC[..., 1].transpose(0, 2, 1), np.float32)
    n_sub, n_keep = cfg.ransac_preselect_keypoints, cfg.ransac_preselect_hypotheses
    if 0 < n_keep < n_good.max() and 0 < 2 * n_sub <= nq:
        # preemptive scoring: all hypotheses on a random subset of the query keypoints, the best
        # ``n_keep`` of them on all (the full (M, Nq, k) residual cube was the tail of the pose
        # stage's latency when good descriptors let most of the 256 hypotheses through)
        sub = rng.choice(nq, n_sub, replace=False)
        s_sub = np.where(good, _support(Y, Tt, kp_q_m[sub], pcx[..., sub], pcy[..., sub], thr), -1)
        keep = np.argsort(-s_sub, axis=1, kind="stable")[:, :n_keep]
        Y, Tt, good = (np.take_along_axis(Y, keep, 1), np.take_along_axis(Tt, keep[..., None], 1),
                       np.take_along_axis(good, keep, 1))
    support = np.where(good, _support(Y, Tt, kp_q_m, pcx, pcy, thr), -1)   # (K, M); -1: no hypothesis
    b = support.argmax(1)
    yaw, t = Y[np.arange(K), b], Tt[np.arange(K), b]
    inl_sel = np.zeros((K, nq), bool)
    best_sel = np.zeros((K, nq), np.int64)
    have = np.zeros(K, bool)                     # a selection was made
    active = np.ones(K, bool)
    qi = np.arange(nq)
    for _ in range(4):                                  # least-squares refinement on the inliers
        r2 = _residual2(yaw[:, None], t[:, None], kp_q_m, PC)[:, 0]        # (K, nq, k)
        best = r2.argmin(2)
        inl = np.take_along_axis(r2, best[..., None], 2)[..., 0] < thr * thr
        same = have & (inl_sel == inl).all(1) & ((best_sel == best) | ~inl).all(1)
        active &= ~same
        inl_sel[active], best_sel[active] = inl[active], best[active]
        have |= active
        active &= inl.sum(1) >= 3
        if not active.any():
            break
        p = PC[np.arange(K)[:, None], qi, best]                              # (K, nq, 2)
        ya, ta = _fit_rigid_2d_batch(kp_q_m, p[active], inl[active].astype(np.float64))
        yaw[active], t[active] = ya, ta
    for a, (j, n, pc) in enumerate(rows):
        out[j] = _finish(kp_q_m, pc, inl_sel[a], best_sel[a], float(yaw[a]), t[a], n,
                         min(nq, len(keyframes[j][0])), cfg)
    return out


def _finish(kp_q_m, pc, inl, best, yaw: float, t: np.ndarray, n: int, n_min: int, cfg) -> PoseResult:
    """PoseResult of one keyframe from its refined pose and inlier selection: gates, covariance."""
    k = int(inl.sum())
    nq = len(kp_q_m)
    # a refused pose keeps its x, y, yaw and inlier count: the engine weighs every retrieved
    # keyframe's best pose against the others (a wrong place scores several different poses alike)
    tx, ty = float(t[0]), float(t[1])
    if k < cfg.min_inliers:
        return PoseResult(False, f"only {k} RANSAC inliers of {nq} keypoints ({n} mutual matches, "
                          f"< {cfg.min_inliers})", tx, ty, yaw, inliers=k, matches=n)
    if k < cfg.min_inlier_ratio * n_min:
        return PoseResult(False, f"inlier ratio {k}/{n_min} below {cfg.min_inlier_ratio:g}",
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
    return PoseResult(True, "", tx, ty, yaw, 0.5 * (cov + cov.T), k, n,
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
