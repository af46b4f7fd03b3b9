"""Voxel grid helpers of the LiDAR odometry: downsampling and the local voxel map.

Voxels are axis-aligned cubes of side ``voxel_m`` indexed by ``floor(p / voxel_m)``; the three
indices are packed into one int64 key (21 bits each, +-1e6 voxels per axis).
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["voxel_keys", "voxel_downsample", "LocalMap"]

_BIAS = 1 << 20
_MASK = (1 << 21) - 1


def voxel_keys(pts: np.ndarray, voxel_m: float) -> np.ndarray:
    """(N,) int64 voxel keys of (N, 3) points (m)."""
    ijk = np.floor(np.asarray(pts, float) / voxel_m).astype(np.int64) + _BIAS
    ijk &= _MASK
    return (ijk[:, 0] << 42) | (ijk[:, 1] << 21) | ijk[:, 2]


def voxel_downsample(pts: np.ndarray, voxel_m: float) -> np.ndarray:
    """(M, 3) points, the first of the (N, 3) input in every occupied voxel of side ``voxel_m`` (m)."""
    if len(pts) == 0:
        return np.zeros((0, 3))
    _, first = np.unique(voxel_keys(pts, voxel_m), return_index=True)
    return pts[np.sort(first)]


class LocalMap:
    """A voxel map of points in the odom frame around the current pose: one point per voxel
    (the first that fell in it), voxels beyond ``radius_m`` of the pose are dropped.

    ``tree()`` gives a cKDTree of the current points (rebuilt after every change). Surface
    normals are computed lazily, from the map's own neighbours, the first time a point is matched
    (:meth:`ensure_normals`), and kept while the point stays in the map.
    """

    def __init__(self, voxel_m: float, radius_m: float):
        self.voxel_m = float(voxel_m)
        self.radius_m = float(radius_m)
        self.clear()

    def clear(self) -> None:
        self.points = np.zeros((0, 3))
        self.keys = np.zeros(0, np.int64)
        self.normals = np.zeros((0, 3))              # (M, 3) unit normals, odom frame
        self.planar = np.zeros(0, np.int8)           # (M,) 0 not computed yet, 1 planar, -1 not planar,
        #                                              -2 too few neighbours when computed at scan seen[i]
        self.seen = np.zeros(0, np.int64)
        self.scan_id = 0                             # advanced by the odometry once per scan
        self._occupied: set[int] = set()
        self._tree: cKDTree | None = None

    def __len__(self) -> int:
        return len(self.points)

    def add(self, pts_odom: np.ndarray) -> int:
        """Insert (N, 3) odom-frame points into free voxels; returns how many were added."""
        if len(pts_odom) == 0:
            return 0
        keys = voxel_keys(pts_odom, self.voxel_m)
        keys, first = np.unique(keys, return_index=True)
        occ = self._occupied
        new = np.fromiter((k not in occ for k in keys.tolist()), bool, len(keys))
        if not new.any():
            return 0
        keys, idx = keys[new], first[new]
        self.points = np.concatenate([self.points, np.asarray(pts_odom, float)[idx]])
        self.keys = np.concatenate([self.keys, keys])
        self.normals = np.concatenate([self.normals, np.zeros((len(keys), 3))])
        self.planar = np.concatenate([self.planar, np.zeros(len(keys), np.int8)])
        self.seen = np.concatenate([self.seen, np.zeros(len(keys), np.int64)])
        occ.update(keys.tolist())
        self._tree = None
        return int(len(keys))

    def prune(self, centre: np.ndarray, every: int = 10) -> int:
        """Drop the points farther than ``radius_m`` from ``centre`` (3,), checked at every
        ``every``-th call (the map only grows by one scan in between); returns how many."""
        self._prune_calls = getattr(self, "_prune_calls", 0) + 1
        if not len(self.points) or self._prune_calls % every:
            return 0
        d2 = np.sum((self.points - np.asarray(centre, float)) ** 2, axis=1)
        keep = d2 <= self.radius_m ** 2
        n_drop = int(len(keep) - keep.sum())
        if n_drop:
            self.points, self.keys = self.points[keep], self.keys[keep]
            self.normals, self.planar, self.seen = self.normals[keep], self.planar[keep], self.seen[keep]
            self._occupied = set(self.keys.tolist())
            self._tree = None
        return n_drop

    def tree(self) -> cKDTree:
        if self._tree is None:
            self._tree = cKDTree(self.points, leafsize=16, balanced_tree=False, compact_nodes=False)
        return self._tree

    def ensure_normals(self, idx: np.ndarray, k: int = 8, planarity: float = 0.1) -> None:
        """Compute the normals of map points ``idx`` (K,) not computed yet: PCA of their ``k``
        nearest map points within 3 voxels; planar when the smallest eigenvalue is below
        ``planarity`` times the middle one and at least 5 neighbours exist; a point with fewer
        than ``k`` neighbours is computed again at a later scan (its neighbourhood grows)."""
        idx = np.unique(idx)
        st = self.planar[idx]
        todo = idx[(st == 0) | ((st == -2) & (self.seen[idx] < self.scan_id))]
        if not len(todo):
            return
        d, nn = self.tree().query(self.points[todo], k=k, distance_upper_bound=3.0 * self.voxel_m, workers=1)
        valid = np.isfinite(d)
        cnt = valid.sum(1)
        nb = self.points[np.where(valid, nn, 0)]
        wv = valid.astype(float)[:, :, None]
        c = (nb * wv).sum(1) / np.maximum(cnt, 1)[:, None]
        dv = (nb - c[:, None, :]) * wv
        C = np.einsum("kni,knj->kij", dv, dv) / np.maximum(cnt, 1)[:, None, None]
        lam, vec = np.linalg.eigh(C)                         # ascending eigenvalues
        ok = (cnt >= 5) & (lam[:, 0] < planarity * lam[:, 1])
        self.normals[todo] = vec[:, :, 0]
        self.planar[todo] = np.where(ok, 1, np.where(cnt >= k, -1, -2)).astype(np.int8)
        self.seen[todo] = self.scan_id
