"""Align two object submaps: candidate associations -> consistency graph -> CLIPPER -> 4-DoF fit.

:func:`align_roman` is the engine's method (ROMAN: gravity-aware pairwise consistency fused with
shape/volume/appearance similarity); :func:`align_clipper_plain` is the plain-CLIPPER baseline
(3D distance invariant only, all-to-all candidates, no gravity prior, no shape or appearance
terms). Both return an :class:`AlignResult` with ``T`` = T_target_query (maps query-submap
coordinates into the target submap frame) and a 4-DoF covariance, or ``ok=False`` with a reason.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from geoloc_ros.objects import clipper
from geoloc_ros.objects.config import ObjectsConfig
from geoloc_ros.objects.descriptor import Descriptors, single_scores
from geoloc_ros.objects.register import register_4dof

__all__ = ["AlignResult", "candidates", "align_roman", "align_clipper_plain", "check_inputs",
           "finish", "runner_up"]


@dataclass
class AlignResult:
    ok: bool
    T: np.ndarray | None = None          # (4, 4) T_target_query
    cov4: np.ndarray | None = None       # (4, 4) (x, y, z, yaw), m^2 / rad^2
    n_assoc: int = 0
    assoc: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))  # (k, 2) query, target
    score: float = 0.0
    reason: str = ""
    method: str = ""
    affinity_s: float = 0.0
    solve_s: float = 0.0
    n_candidates: int = 0
    rms_m: float = float("nan")
    runner_up: int = 0                   # size of the best cluster disjoint from the selected one
    T_fit: np.ndarray | None = None      # (4, 4) least-squares pose of the cluster, even when rejected


def check_inputs(query: Descriptors, target: Descriptors, cfg: ObjectsConfig) -> str:
    """'' when the two object sets can be aligned, else the reason why not."""
    for name, D in (("query", query), ("target", target)):
        if len(D) == 0:
            return f"{name} submap has no objects"
        nbad = int(np.count_nonzero(~D.valid_mask()))
        if nbad:
            return f"{name} submap has {nbad} object(s) with NaN/inf numbers"
        if len(D) < 3:
            return f"{name} submap has {len(D)} objects (< 3)"
    return ""


def candidates(query: Descriptors, target: Descriptors, cfg: ObjectsConfig,
               use_shape: bool = True, use_appearance: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Candidate associations (m, 2) (query index, target index) and their single scores (m,).

    All-to-all, minus candidates whose shape/appearance similarity is 0; at most
    ``cfg.max_candidates`` (highest scores kept)."""
    A = clipper.all_to_all(len(query), len(target))
    s = single_scores(query, target, A, cfg.ratio_floor, cfg.ratio_eps, cfg.cos_min, cfg.cos_max,
                      use_shape, use_appearance)
    keep = s > 0
    A, s = A[keep], s[keep]
    if len(A) > cfg.max_candidates:
        top = np.argsort(-s, kind="stable")[:cfg.max_candidates]
        top.sort()
        A, s = A[top], s[top]
    return A, s


def finish(query: Descriptors, target: Descriptors, assoc: np.ndarray, cfg: ObjectsConfig,
           res: AlignResult, weights: np.ndarray | None = None, anchors: bool = True) -> AlignResult:
    """Register the selected associations (4-DoF) on the anchor points (``anchors``) or the
    centroids, and fill ``res``."""
    res.assoc = np.asarray(assoc, np.int64).reshape(-1, 2)
    res.n_assoc = len(res.assoc)
    if res.n_assoc == 0:
        res.ok, res.reason = False, "no consistent associations"
        return res
    P, Q = (query.anchors(), target.anchors()) if anchors else (query.centroids, target.centroids)
    fit = register_4dof(P[res.assoc[:, 0]], Q[res.assoc[:, 1]], weights, min_associations=2,
                        min_spread_m=0.0, min_sigma_m=cfg.min_sigma_m, max_rms_m=np.inf)
    res.T_fit = fit.T  # where this cluster would put the query (for rival checks)
    if not res.ok and res.reason:
        return res     # already rejected (e.g. ambiguous): keep the reason, report the fit
    reg = register_4dof(P[res.assoc[:, 0]], Q[res.assoc[:, 1]], weights,
                        cfg.min_associations, cfg.min_spread_m, cfg.min_sigma_m, cfg.max_rms_m)
    res.rms_m = reg.rms_m
    if not reg.ok:
        res.ok, res.reason = False, reg.reason
        return res
    res.ok, res.T, res.cov4 = True, reg.T, reg.cov4
    return res


def align_roman(query: Descriptors, target: Descriptors, cfg: ObjectsConfig,
                u0: np.ndarray | None = None) -> AlignResult:
    """ROMAN alignment of two gravity-aligned object sets."""
    res = AlignResult(False, method="roman")
    why = check_inputs(query, target, cfg)
    if why:
        res.reason = why
        return res
    t0 = time.perf_counter()
    A, s = candidates(query, target, cfg)
    res.n_candidates = len(A)
    if len(A) < cfg.min_associations:
        res.reason = f"{len(A)} candidate associations pass the shape/appearance test (< {cfg.min_associations})"
        return res
    M = clipper.gravity_affinity(query.anchors(), target.anchors(), A, cfg.sigma_m, cfg.epsilon_m,
                                 cfg.mindist_m, single=s)
    t1 = time.perf_counter()
    if M.nnz == 0:
        res.affinity_s = t1 - t0
        res.reason = "no pair of candidates is geometrically consistent"
        return res
    sel, sol = clipper.associate(M, A, u0=u0, seed=cfg.solver_seed)
    res.runner_up = runner_up(M, A, sel, cfg) if len(sel) else 0
    t2 = time.perf_counter()
    res.affinity_s, res.solve_s, res.score = t1 - t0, t2 - t1, float(sol.score)
    if res.runner_up and len(sel) < cfg.min_distinct_ratio * res.runner_up:
        res.reason = (f"ambiguous association: {len(sel)} consistent objects vs {res.runner_up} "
                      f"in a disjoint cluster (< {cfg.min_distinct_ratio}x)")
    return finish(query, target, sel, cfg, res, anchors=True)


def runner_up(M, A: np.ndarray, sel: np.ndarray, cfg: ObjectsConfig) -> int:
    """Size of the densest cluster among the candidates that use none of the selected objects.

    A true alignment stands out (7 associations against 2-3 chance ones); a chance clique of a
    wrong place does not (4 against 3-4). Same solver, same graph minus the selected objects."""
    used_q = np.isin(A[:, 0], sel[:, 0])
    used_t = np.isin(A[:, 1], sel[:, 1])
    keep = np.flatnonzero(~used_q & ~used_t)
    if len(keep) < 2:
        return 0
    M2 = M[keep][:, keep]
    if M2.nnz == 0:
        return 1
    sel2, _ = clipper.associate(M2, A[keep], seed=cfg.solver_seed)
    return len(sel2)


def align_clipper_plain(query: Descriptors, target: Descriptors, cfg: ObjectsConfig,
                        u0: np.ndarray | None = None) -> AlignResult:
    """Baseline: original CLIPPER (3D distance invariant, all-to-all, no gravity/shape/appearance)."""
    res = AlignResult(False, method="clipper_plain")
    why = check_inputs(query, target, cfg)
    if why:
        res.reason = why
        return res
    t0 = time.perf_counter()
    A = clipper.all_to_all(len(query), len(target))
    res.n_candidates = len(A)
    M = clipper.euclidean_affinity(query.centroids, target.centroids, A, cfg.sigma_m, cfg.epsilon_m,
                                   cfg.mindist_m)
    t1 = time.perf_counter()
    if M.nnz == 0:
        res.affinity_s = t1 - t0
        res.reason = "no pair of candidates is geometrically consistent"
        return res
    sel, sol = clipper.associate(M, A, u0=u0, seed=cfg.solver_seed)
    t2 = time.perf_counter()
    res.affinity_s, res.solve_s, res.score = t1 - t0, t2 - t1, float(sol.score)
    return finish(query, target, sel, cfg, res, anchors=False)
