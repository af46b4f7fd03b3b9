"""BevLocalizer: one LiDAR scan + BEV map database -> ranked 3-DoF pose candidates (x, y, yaw + covariance).

Steps of :meth:`BevLocalizer.localize`:

1. BEV image of the levelled scan (bad input -> "no fix" with the reason);
2. REIN: global descriptor + local descriptors at FAST keypoints;
3. retrieval of the ``top_k`` nearest keyframes (FAISS);
4. pose against each: mutual matches, 2-point RANSAC, least squares, covariance;
5. chance level and distinctiveness: a pose is kept only with more inliers than the wrong poses
   of this map reach (:meth:`BevDatabase.impostor_floor`, calibrated on the map's own keyframes
   when it was built: how many inliers these weights give a wrong place here) and with
   ``distinct_ratio`` times the inliers of the best *different* pose (another place or heading)
   that the other retrieved keyframes give, refused ones included. A true revisit gives one pose
   many inliers and its neighbours the same pose; a scan of an unmapped place gives several
   different poses about equally few, and better descriptors raise the counts of both, so no
   fixed inlier count separates them for every weights file;
6. re-rank by inlier count; OK candidates best first, or one NO_FIX candidate saying why.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from geoloc_ros.bev.database import BevDatabase
from geoloc_ros.bev.features import extract_features
from geoloc_ros.bev.image import BevInputError, scan_to_bev
from geoloc_ros.bev.pose import estimate_poses, map_xyyaw, poses_differ, se2_pose_to_map
from geoloc_ros.bev.rein import ReinNet, load_rein
from geoloc_ros.events import Candidate, CandidateStatus, ScanEvent

__all__ = ["BevLocalizer"]


def _no_fix(reason: str, info: dict | None = None) -> Candidate:
    return Candidate(None, None, 0.0, CandidateStatus.NO_FIX, reason=reason, source="bev", info=info or {})


class BevLocalizer:
    """Global 3-DoF localization of LiDAR scans against a :class:`BevDatabase`."""

    def __init__(self, cfg, database: BevDatabase, model: ReinNet | None = None):
        self.cfg = cfg
        self.db = database
        self.model = model if model is not None else (database.model or load_rein(cfg))
        if self.db.model is None:
            self.db.model = self.model
        self.rng = np.random.default_rng(cfg.seed)
        self.last_timings_ms: dict = {}
        self.last_retrieval: tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.int64), np.zeros(0))

    def localize(self, scan: ScanEvent) -> list[Candidate]:
        """Ranked candidates (status OK, most pose inliers first); ``[NO_FIX candidate]`` when none holds.

        Candidate.info: keyframe, inliers, matches, rms_m, similarity, timings_ms (wall-clock ms per stage,
        ``total``, and ``cpu_total``: this process's CPU time over the query, all its threads (the query's
        worker thread included), i.e. without waiting for a busy CPU).
        """
        torch.set_num_threads(max(1, self.cfg.torch_threads))
        self.last_retrieval = (np.zeros(0, np.int64), np.zeros(0))
        t0, c0 = time.perf_counter(), time.process_time()
        if not len(self.db):
            return [_no_fix("BEV map database is empty")]
        try:
            img = scan_to_bev(scan, self.cfg)
        except BevInputError as e:
            return [_no_fix(f"unusable scan: {e}")]
        t1 = time.perf_counter()
        f = extract_features(self.model, img, self.cfg)
        t2 = time.perf_counter()
        if len(f.kp_xy_m) < self.cfg.min_inliers:
            return [_no_fix(f"only {len(f.kp_xy_m)} keypoints in the BEV image (< {self.cfg.min_inliers})")]
        idx, sims = self.db.search(f.global_desc, self.cfg.top_k)
        t3 = time.perf_counter()
        self.last_retrieval = (idx, sims)
        results = []
        reasons = []
        kq = f.kp_xy_m.astype(np.float64)
        tried = []                       # (inliers, map x_m, y_m, yaw_rad) of every refined pose
        kfs = [self.db.keyframe(int(i)) for i in idx]
        poses = estimate_poses(kq, f.kp_desc, [(kp, kd) for _, kp, kd in kfs], self.cfg, self.rng)
        for i, s, (T_kf, _, _), r in zip(idx, sims, kfs, poses):
            if r.inliers > 0:
                tried.append((r.inliers, *map_xyyaw(T_kf, r)))
            if r.ok:
                results.append((r, int(i), float(s), tried[-1][1:]))
            else:
                reasons.append(f"keyframe {int(i)}: {r.reason}")
        floor = self.db.impostor_floor()
        distinct, ambiguous = [], []
        for r, i, s, xyyaw in results:
            rival = _rival_inliers(xyyaw, tried, self.cfg)
            if r.inliers < floor:
                ambiguous.append(f"keyframe {i}: {r.inliers} inliers, wrong poses in this map reach {floor - 1}")
            elif r.inliers < self.cfg.distinct_ratio * rival:
                ambiguous.append(f"keyframe {i}: {r.inliers} inliers, a different pose {rival}, "
                                 f"< {self.cfg.distinct_ratio:g}x")
            else:
                distinct.append((r, i, s, rival))
        results = distinct
        t4 = time.perf_counter()
        tm = {"bev_image": (t1 - t0) * 1e3, "network": f.timings_ms["network"],
              "keypoints": f.timings_ms["keypoints"], "retrieval": (t3 - t2) * 1e3,
              "pose": (t4 - t3) * 1e3, "total": (t4 - t0) * 1e3,
              "cpu_total": (time.process_time() - c0) * 1e3}   # CPU time of this process: the load of the machine aside
        self.last_timings_ms = tm
        if not results and ambiguous:
            return [_no_fix(f"no distinct pose: ambiguous or unmapped place ({ambiguous[0]})", {"timings_ms": tm})]
        if not results:
            best = reasons[0] if reasons else "no keyframe retrieved"
            return [_no_fix(f"no retrieved keyframe gives a pose ({best})", {"timings_ms": tm})]
        results.sort(key=lambda x: -x[0].inliers)
        out = []
        for r, i, s, rival in results:
            T, cov6 = se2_pose_to_map(self.db.poses[i], r)
            out.append(Candidate(T, cov6, float(r.inliers), CandidateStatus.OK, source="bev",
                                 info={"keyframe": i, "inliers": r.inliers, "matches": r.matches,
                                       "rival_inliers": rival, "impostor_floor": floor, "rms_m": r.rms_m, "similarity": s,
                                       "dof": "xyyaw", "timings_ms": tm}))
        return out


def _rival_inliers(xyyaw, tried, cfg) -> int:
    """Most inliers of a tried pose (inliers, x_m, y_m, yaw_rad) that differs from ``xyyaw`` by more
    than ``distinct_dist_m`` or ``distinct_yaw_rad``; 0 when all agree with it."""
    return max((k for k, *other in tried if poses_differ(other, xyyaw, cfg)), default=0)
