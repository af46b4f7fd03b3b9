"""Tracking segments across frames into objects (world frame: odom for the engine, map for mapping).

A new segment joins the track whose voxels (``track_voxel_m``) overlap it most, when the voxel
IoU with the track's last sighting or with the whole track reaches ``track_iou``; otherwise it
starts a track. A track is an *object* once seen ``min_sightings`` times. Tracks overlapping
each other by ``merge_iou`` (of the smaller one) are merged (duplicates from split/merged
clusters). Far tracks are retired (:meth:`ObjectTracker.retire`) to bound memory.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from geoloc_ros.objects.config import ObjectsConfig
from geoloc_ros.objects.descriptor import Descriptors, describe, from_rows
from geoloc_ros.objects.segment import Segment

__all__ = ["Track", "ObjectTracker", "voxel_keys", "voxel_iou"]

_OFF = 1 << 20


def voxel_keys(P: np.ndarray, voxel_m: float) -> np.ndarray:
    """Sorted unique int64 keys of the voxels occupied by points P (N, 3)."""
    q = np.floor(np.asarray(P, float) / voxel_m).astype(np.int64) + _OFF
    return np.unique((q[:, 0] << 42) | (q[:, 1] << 21) | q[:, 2])


def voxel_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two sorted unique key arrays."""
    if len(a) == 0 or len(b) == 0:
        return 0.0
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / float(len(a) + len(b) - inter)


@dataclass
class Track:
    id: int
    points: np.ndarray                  # (N, 3) world frame
    colors: np.ndarray                  # (N, 3) float 0-255, NaN where unknown
    keys: np.ndarray                    # voxel keys of all points
    last_keys: np.ndarray               # voxel keys of the last sighting
    sightings: int = 1
    last_t: float = 0.0
    centre: np.ndarray = field(default_factory=lambda: np.zeros(3))
    radius_m: float = 0.0
    emb_sum: np.ndarray | None = None   # sum of the unit embeddings of its sightings


class ObjectTracker:
    """Accumulates segments (already in the world frame) into tracked objects."""

    def __init__(self, cfg: ObjectsConfig, seed: int = 0):
        self.cfg = cfg
        self.tracks: dict[int, Track] = {}
        self._next = 0
        self._rng = np.random.default_rng(seed)

    def reset(self) -> None:
        self.tracks.clear()

    def _set_geometry(self, tr: Track) -> None:
        n = self.cfg.track_max_points
        if len(tr.points) > n:
            sel = self._rng.choice(len(tr.points), n, replace=False)
            tr.points = tr.points[sel]
            tr.colors = tr.colors[sel]
        lo, hi = tr.points.min(0), tr.points.max(0)
        tr.centre = 0.5 * (lo + hi)
        tr.radius_m = 0.5 * float(np.linalg.norm(hi - lo))

    def _near(self, c: np.ndarray, r: float, margin: float) -> list[Track]:
        """Tracks whose bounding spheres come within ``margin`` of the sphere (c, r)."""
        if not self.tracks:
            return []
        trs = list(self.tracks.values())
        C = np.array([t.centre for t in trs])
        R = np.array([t.radius_m for t in trs])
        d = np.sqrt(((C - c) ** 2).sum(1))
        return [trs[k] for k in np.flatnonzero(d <= R + r + margin)]

    def update(self, segments: list[Segment], t: float) -> list[int]:
        """Add one frame's segments (world frame); returns the track id each joined."""
        cfg = self.cfg
        ids = []
        for seg in segments:
            P = np.asarray(seg.points, float)
            P = P[np.all(np.isfinite(P), 1)]
            if len(P) < 3:
                ids.append(-1)
                continue
            keys = voxel_keys(P, cfg.track_voxel_m)
            lo, hi = P.min(0), P.max(0)
            c, r = 0.5 * (lo + hi), 0.5 * float(np.linalg.norm(hi - lo))
            best, best_iou = None, 0.0
            for tr in self._near(c, r, cfg.track_voxel_m):
                iou = max(voxel_iou(keys, tr.last_keys), voxel_iou(keys, tr.keys))
                if iou > best_iou:
                    best, best_iou = tr, iou
            fin = np.all(np.isfinite(np.asarray(seg.points, float)), 1)
            col = np.full((len(P), 3), np.nan)
            if seg.colors is not None and len(seg.colors) == len(seg.points):
                col = np.asarray(seg.colors, float)[fin]
            emb = None
            if seg.embedding is not None:
                emb = np.asarray(seg.embedding, float) / np.linalg.norm(seg.embedding)
            if best is not None and best_iou >= cfg.track_iou:
                if emb is not None:
                    best.emb_sum = emb if best.emb_sum is None else best.emb_sum + emb
                best.points = np.concatenate([best.points, P])
                best.colors = np.concatenate([best.colors, col])
                best.keys = np.union1d(best.keys, keys)
                best.last_keys = keys
                best.sightings += 1
                best.last_t = t
                self._set_geometry(best)
                ids.append(best.id)
            else:
                tr = Track(self._next, P, col, keys, keys, 1, t, emb_sum=emb)
                self._set_geometry(tr)
                self.tracks[tr.id] = tr
                ids.append(tr.id)
                self._next += 1
        self.merge_duplicates([i for i in ids if i >= 0])
        return ids

    def merge_duplicates(self, touched: list[int] | None = None) -> int:
        """Merge tracks whose voxel overlap reaches ``merge_iou`` of the smaller (only pairs with a
        ``touched`` track when given: the others were checked before); returns merges."""
        merged = 0
        ids = sorted(self.tracks) if touched is None else sorted(set(touched))
        for a in ids:
            ta = self.tracks.get(a)
            if ta is None:
                continue
            for tb in self._near(ta.centre, ta.radius_m, 0.0):
                b = tb.id
                if b == a or b not in self.tracks or (touched is None and b < a):
                    continue
                inter = np.intersect1d(ta.keys, tb.keys, assume_unique=True).size
                if inter / max(1, min(len(ta.keys), len(tb.keys))) >= self.cfg.merge_iou:
                    if tb.emb_sum is not None:
                        ta.emb_sum = tb.emb_sum if ta.emb_sum is None else ta.emb_sum + tb.emb_sum
                    ta.points = np.concatenate([ta.points, tb.points])
                    ta.colors = np.concatenate([ta.colors, tb.colors])
                    ta.keys = np.union1d(ta.keys, tb.keys)
                    ta.sightings += tb.sightings
                    ta.last_t = max(ta.last_t, tb.last_t)
                    self._set_geometry(ta)
                    del self.tracks[b]
                    merged += 1
        return merged

    def confirmed(self) -> list[Track]:
        return [t for t in self.tracks.values() if t.sightings >= self.cfg.min_sightings]

    def objects(self, tracks: list[Track] | None = None) -> Descriptors:
        """Descriptors (world frame) of the confirmed tracks (or of ``tracks``)."""
        trs = self.confirmed() if tracks is None else tracks
        # open-vocabulary embeddings replace the colour histogram for every object once any
        # object has one (objects never seen by the camera get a zero vector: "unknown")
        dims = {len(t.emb_sum) for t in trs if t.emb_sum is not None}
        F = max(dims) if dims else None
        rows, ids = [], []
        for tr in trs:
            if len(tr.points) < 3:
                continue
            app = None
            if F is not None:
                app = np.zeros(F)
                if tr.emb_sum is not None and len(tr.emb_sum) == F and np.linalg.norm(tr.emb_sum) > 0:
                    app = tr.emb_sum / np.linalg.norm(tr.emb_sum)
            rows.append(describe(tr.points, tr.colors, self.cfg.appearance_bins, appearance=app))
            ids.append(tr.id)
        if not rows:
            return Descriptors.empty(4 * self.cfg.appearance_bins ** 2 + self.cfg.appearance_bins)
        return from_rows(rows, np.array(ids))

    def retire(self, p_xy: np.ndarray, dist_m: float) -> list[Track]:
        """Remove and return the tracks further than ``dist_m`` (horizontally) from ``p_xy``."""
        p = np.asarray(p_xy, float)[:2]
        out = [t for t in self.tracks.values() if np.linalg.norm(t.centre[:2] - p) > dist_m]
        for t in out:
            del self.tracks[t.id]
        return out
