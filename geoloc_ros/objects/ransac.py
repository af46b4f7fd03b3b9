"""Baseline: RANSAC on appearance/shape nearest-neighbour candidates (3-point, 0.5 m inliers).

Each query object proposes its ``k_nn`` most similar target objects (the same shape/volume/
appearance similarity as ROMAN's single scores); RANSAC samples 3 candidates (distinct objects),
fits yaw + translation (closed form), counts candidates within ``inlier_m``, and the best
hypothesis is refit on its inliers with the same 4-DoF registration and acceptance rules
as the engine (so the baseline differs only in the data association).
"""
from __future__ import annotations

import time

import numpy as np

from geoloc_ros.objects.align import AlignResult, check_inputs, finish
from geoloc_ros.objects.clipper import all_to_all
from geoloc_ros.objects.config import ObjectsConfig
from geoloc_ros.objects.descriptor import Descriptors, single_scores

__all__ = ["nn_candidates", "fit_4dof_batch", "align_ransac"]


def nn_candidates(query: Descriptors, target: Descriptors, cfg: ObjectsConfig, k_nn: int = 3) -> np.ndarray:
    """(m, 2) candidates: for each query object its ``k_nn`` best-scoring target objects (score > 0)."""
    A = all_to_all(len(query), len(target))
    s = single_scores(query, target, A, cfg.ratio_floor, cfg.ratio_eps, cfg.cos_min, cfg.cos_max)
    S = s.reshape(len(query), len(target))
    k = min(k_nn, len(target))
    top = np.argsort(-S, axis=1, kind="stable")[:, :k]
    qi = np.repeat(np.arange(len(query)), k)
    tj = top.ravel()
    ok = S[qi, tj] > 0
    return np.stack([qi[ok], tj[ok]], axis=1).astype(np.int64)


def fit_4dof_batch(P: np.ndarray, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unweighted yaw + translation for a batch of samples: P, Q (B, n, 3) -> yaw (B,), t (B, 3)."""
    mp, mq = P.mean(1), Q.mean(1)
    X, Y = P - mp[:, None], Q - mq[:, None]
    hc = np.sum(X[..., 0] * Y[..., 0] + X[..., 1] * Y[..., 1], 1)
    hs = np.sum(X[..., 0] * Y[..., 1] - X[..., 1] * Y[..., 0], 1)
    yaw = np.arctan2(hs, hc)
    c, s = np.cos(yaw), np.sin(yaw)
    t = mq.copy()
    t[:, 0] -= c * mp[:, 0] - s * mp[:, 1]
    t[:, 1] -= s * mp[:, 0] + c * mp[:, 1]
    t[:, 2] -= mp[:, 2]
    return yaw, t


def align_ransac(query: Descriptors, target: Descriptors, cfg: ObjectsConfig, k_nn: int = 3,
                 inlier_m: float = 0.5, iters: int = 2000, seed: int = 0) -> AlignResult:
    """RANSAC baseline (3-point samples, vectorised over all hypotheses)."""
    res = AlignResult(False, method="ransac")
    why = check_inputs(query, target, cfg)
    if why:
        res.reason = why
        return res
    t0 = time.perf_counter()
    A = nn_candidates(query, target, cfg, k_nn)
    res.n_candidates = len(A)
    if len(A) < 3:
        res.reason = f"{len(A)} nearest-neighbour candidates (< 3)"
        return res
    rng = np.random.default_rng(seed)
    S = np.stack([rng.choice(len(A), 3, replace=False) for _ in range(iters)]) if len(A) > 3 else \
        np.tile(np.arange(3), (1, 1))
    a = A[S]  # (B, 3, 2)
    distinct = ((a[:, 0, 0] != a[:, 1, 0]) & (a[:, 0, 0] != a[:, 2, 0]) & (a[:, 1, 0] != a[:, 2, 0])
                & (a[:, 0, 1] != a[:, 1, 1]) & (a[:, 0, 1] != a[:, 2, 1]) & (a[:, 1, 1] != a[:, 2, 1]))
    S = S[distinct]
    if len(S) == 0:
        res.reason = "no 3 distinct candidate associations"
        return res
    P = query.centroids[A[S, 0]]
    Q = target.centroids[A[S, 1]]
    yaw, t = fit_4dof_batch(P, Q)
    c, s = np.cos(yaw), np.sin(yaw)
    pa, qa = query.centroids[A[:, 0]], target.centroids[A[:, 1]]
    px = c[:, None] * pa[None, :, 0] - s[:, None] * pa[None, :, 1] + t[:, 0:1]
    py = s[:, None] * pa[None, :, 0] + c[:, None] * pa[None, :, 1] + t[:, 1:2]
    pz = pa[None, :, 2] + t[:, 2:3]
    err = np.sqrt((px - qa[None, :, 0]) ** 2 + (py - qa[None, :, 1]) ** 2 + (pz - qa[None, :, 2]) ** 2)
    inl = err < inlier_m
    best = int(np.argmax(inl.sum(1)))
    idx = np.flatnonzero(inl[best])
    # one-to-one: keep the smallest-error candidate per object
    order = idx[np.argsort(err[best, idx])]
    seen1, seen2, keep = set(), set(), []
    for n in order.tolist():
        if A[n, 0] in seen1 or A[n, 1] in seen2:
            continue
        seen1.add(int(A[n, 0]))
        seen2.add(int(A[n, 1]))
        keep.append(n)
    res.solve_s = time.perf_counter() - t0
    res.score = float(len(keep))
    return finish(query, target, A[np.array(keep, np.int64)], cfg, res)
