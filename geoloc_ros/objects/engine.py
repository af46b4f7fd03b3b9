"""ObjectLocalizer: the object-map alignment engine (ROMAN-style), one step method.

Feed it scans and images with their odometry poses T_odom_base; it segments them, tracks the
segments into objects in the odom frame, and every ``submap_spacing_m`` of travel its
:meth:`ObjectLocalizer.step` cuts a query submap around the robot and aligns it with every submap
of the prior object map. The result is a :class:`~geoloc_ros.events.Candidate`: T_map_base with
a 6x6 covariance (ROS order; x, y, z, yaw from the registration, roll/pitch unobserved), a score
(number of associations), status and reason.

step():
  1. nothing to do unless a submap is due;
  2. query submap = confirmed objects within ``submap_radius_m`` (at most ``submap_max_objects``),
     in the yaw-only frame Q of the current pose;
  3. align Q with each map submap (:func:`geoloc_ros.objects.align.align_roman`);
  4. keep the map submap with the most associations; refuse when a disagreeing map submap
     comes close (``min_margin``): perceptual aliasing gives no fix rather than a wrong one;
  5. compose T_map_base = T_map_S T_S_Q T_Q_odom T_odom_base and propagate the covariance.
"""
from __future__ import annotations

import time

import numpy as np

from geoloc_ros.events import Candidate, CandidateStatus, ImageEvent, ScanEvent
from geoloc_ros.geometry import se3_inverse, transform_points
from geoloc_ros.objects.align import AlignResult, align_clipper_plain, align_roman
from geoloc_ros.objects.config import ObjectsConfig
from geoloc_ros.objects.descriptor import make_embedder
from geoloc_ros.objects.map import ObjectMap
from geoloc_ros.objects.register import cov4_to_cov6, transfer_cov4
from geoloc_ros.objects.segment import LidarSegmenter, RgbdSegmenter
from geoloc_ros.objects.submap import FrameGate, Submap, TravelTrigger, make_submap
from geoloc_ros.objects.track import ObjectTracker

__all__ = ["ObjectLocalizer", "match_submap"]

_METHODS = {"roman": align_roman, "clipper_plain": align_clipper_plain}


def _no_fix(reason: str, **info) -> Candidate:
    return Candidate(None, None, 0.0, CandidateStatus.NO_FIX, reason, "objects", info)


def match_submap(query: Submap, omap: ObjectMap | None, cfg: ObjectsConfig, T_odom_base=None,
                 method: str = "roman") -> Candidate:
    """Align a query submap (frame Q = ``query.T_world_submap`` in odom) with the object map.

    Returns a Candidate for T_map_base (``T_odom_base`` defaults to the submap frame itself)."""
    t0 = time.perf_counter()
    if omap is None or len(omap) == 0 or len(omap.centres) == 0:
        return _no_fix("no object map loaded (or it is empty)")
    if len(query) < cfg.min_submap_objects:
        return _no_fix(f"query submap has {len(query)} objects (< {cfg.min_submap_objects})",
                       n_query=len(query))
    align = _METHODS[method]
    results: list[tuple[int, AlignResult]] = []
    every: list[tuple[int, AlignResult]] = []
    reasons: dict[str, int] = {}
    for sub in omap.submaps(cfg):
        r = align(query.objects, sub.objects, cfg)
        every.append((sub.index, r))
        if r.ok:
            results.append((sub.index, r))
        else:
            reasons[r.reason.split("(")[0].strip()] = reasons.get(r.reason.split("(")[0].strip(), 0) + 1
    info = {"n_query": len(query), "n_map_submaps": len(omap.centres), "dof": "xyzyaw",
            "elapsed_s": time.perf_counter() - t0}
    if not results:
        top = max(reasons, key=reasons.get) if reasons else "no map submap"
        return _no_fix(f"no map submap aligned (most common: {top})", **info)
    results.sort(key=lambda kr: (-kr[1].n_assoc, kr[1].rms_m))
    kb, best = results[0]
    T_best = omap.centres[kb] @ best.T
    # rival: the largest cluster of any map submap (accepted or not) that puts the query
    # somewhere else - chance cliques of unrelated places must not come close to the best
    rival = 0
    for k, r in every:
        if k == kb or r.T_fit is None:
            continue
        if np.linalg.norm((omap.centres[k] @ r.T_fit)[:2, 3] - T_best[:2, 3]) > cfg.disagree_m:
            rival = max(rival, r.n_assoc)
    info.update(n_assoc=best.n_assoc, submap=int(kb), rival_assoc=rival, runner_up=best.runner_up, rms_m=best.rms_m,
                n_candidates=best.n_candidates, affinity_s=best.affinity_s, solve_s=best.solve_s)
    if rival and best.n_assoc < cfg.min_margin * rival:
        return _no_fix(f"ambiguous: {best.n_assoc} associations vs {rival} for a pose "
                       f"> {cfg.disagree_m} m away", **info)
    T_map_Q = T_best
    T_odom_Q = np.asarray(query.T_world_submap, float)
    T_odom_base = T_odom_Q if T_odom_base is None else np.asarray(T_odom_base, float)
    T_Q_base = se3_inverse(T_odom_Q) @ T_odom_base
    T_map_base = T_map_Q @ T_Q_base
    # cov4 is of T_S_Q at Q's origin in the submap frame S: rotate into map, move to base
    R = omap.centres[kb][:3, :3]
    J = np.eye(4)
    J[:3, :3] = R
    cov_mq = J @ best.cov4 @ J.T
    cov4 = transfer_cov4(cov_mq, T_map_Q, T_Q_base[:3, 3])
    return Candidate(T_map_base, cov4_to_cov6(cov4), float(best.n_assoc), CandidateStatus.OK,
                     f"{best.n_assoc} associations with map submap {kb}", "objects", info)


class ObjectLocalizer:
    """Accumulates objects in the odom frame and aligns a submap with the map every 10 m."""

    def __init__(self, cfg: ObjectsConfig | None = None, object_map: ObjectMap | None = None,
                 method: str = "roman", appearance_fn=None):
        """``appearance_fn``: image crop (h, w, 3) uint8 -> (F,) embedding; default from
        ``cfg.clip_weights`` (None: colour histograms)."""
        if method not in _METHODS:
            raise ValueError(f"method must be one of {sorted(_METHODS)}, got {method!r}")
        self.cfg = cfg or ObjectsConfig()
        self.map = object_map
        self.method = method
        emb = appearance_fn if appearance_fn is not None else make_embedder(self.cfg)
        self.lidar = LidarSegmenter(self.cfg, emb)
        self.rgbd = RgbdSegmenter(self.cfg, emb)
        self.reset()

    def reset(self) -> None:
        self.tracker = ObjectTracker(self.cfg)
        self.trigger = TravelTrigger(self.cfg.submap_spacing_m)
        self.gate_lidar = FrameGate(self.cfg.frame_min_travel_m, self.cfg.frame_min_yaw_rad)
        self.gate_rgbd = FrameGate(self.cfg.frame_min_travel_m, self.cfg.frame_min_yaw_rad)
        self._pending = False
        self._pose: np.ndarray | None = None
        self._t = -np.inf
        self._image: ImageEvent | None = None
        self.rejected: dict[str, int] = {}
        self.last_submap: Submap | None = None

    def _reject(self, why: str) -> None:
        self.rejected[why] = self.rejected.get(why, 0) + 1

    def _accept_pose(self, t: float, T_odom_base) -> np.ndarray | None:
        T = np.asarray(T_odom_base, float) if T_odom_base is not None else None
        if T is None or T.shape != (4, 4) or not np.all(np.isfinite(T)):
            self._reject("invalid odometry pose")
            return None
        if not np.isfinite(t):
            self._reject("non-finite stamp")
            return None
        if t < self._t - 1e-6:
            self._reject("out-of-order stamp")
            return None
        return T

    def _move(self, t: float, T: np.ndarray) -> None:
        self._pose, self._t = T, t
        if self.trigger.update(T[:3, 3]):
            self._pending = True

    def _ingest(self, t: float, T: np.ndarray, segs) -> None:
        for s in segs:
            s.points = transform_points(T, s.points)
        self.tracker.update(segs, t)
        self.tracker.retire(T[:3, 3], 2.0 * self.cfg.submap_radius_m)

    def add_scan(self, scan: ScanEvent, T_odom_base) -> None:
        """Segment a LiDAR scan (coloured from the latest camera frame within 0.2 s) when the
        robot moved enough since the last segmented frame."""
        T = self._accept_pose(scan.t, T_odom_base)
        if T is None:
            return
        if self.gate_lidar(T):
            img = self._image if self._image is not None and abs(self._image.t - scan.t) < 0.2 else None
            self._ingest(scan.t, T, self.lidar.segment(scan, img))
        self._move(scan.t, T)

    def add_image(self, img: ImageEvent, T_odom_base) -> None:
        """Keep a camera frame for colouring; segment it when it has depth (RGB-D)."""
        T = self._accept_pose(img.t, T_odom_base)
        if T is None:
            return
        self._image = img
        if img.depth_m is not None and self.gate_rgbd(T):
            self._ingest(img.t, T, self.rgbd.segment(img))
        self._move(img.t, T)

    def current_submap(self) -> Submap | None:
        if self._pose is None:
            return None
        return make_submap(self.tracker.objects(), self._pose, self.cfg.submap_radius_m,
                           self.cfg.submap_max_objects, t=self._t)

    def step(self) -> Candidate | None:
        """A Candidate when a submap was due (else None); see the module doc for the steps."""
        if not self._pending:
            return None
        self._pending = False
        sub = self.current_submap()
        if sub is None:
            return None
        self.last_submap = sub
        cand = match_submap(sub, self.map, self.cfg, self._pose, self.method)
        cand.info["t"] = self._t
        return cand

    def force_submap(self) -> None:
        """Make the next :meth:`step` align a submap now (e.g. on a global-localization request)."""
        self._pending = self._pose is not None

    def global_localize(self) -> Candidate | None:
        """Align the current submap now (None before the first pose)."""
        self.force_submap()
        return self.step()
