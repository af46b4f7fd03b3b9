"""Scan Context baseline (Kim & Kim 2018): polar max-height descriptor, ring-key retrieval, yaw from shift.

Steps of :meth:`ScanContextDB.query`: descriptor (20 rings x 60 sectors out to 80 m, max height per
bin) -> ring key (mean of each ring, rotation invariant) -> KD-tree retrieval of 10 candidates ->
column-shift cosine distance over all 60 shifts -> best candidate, yaw from its best shift.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from geoloc_ros.geometry import rot_z

__all__ = ["ScanContextConfig", "scan_context", "ring_key", "sc_distance", "ScanContextDB"]


@dataclass
class ScanContextConfig:
    rings: int = 20
    sectors: int = 60
    max_range_m: float = 80.0
    height_offset_m: float = 2.0   # added to z so the ground is positive (empty bin = 0)
    candidates: int = 10


def scan_context(pts_base: np.ndarray, cfg: ScanContextConfig | None = None) -> np.ndarray:
    """(rings, sectors) float32 max height (z + offset, >= 0) per polar bin of (N, 3) levelled points."""
    cfg = cfg or ScanContextConfig()
    p = np.asarray(pts_base, float)
    p = p[np.all(np.isfinite(p), axis=1)]
    r = np.hypot(p[:, 0], p[:, 1])
    keep = (r < cfg.max_range_m) & (r > 0.1)
    p, r = p[keep], r[keep]
    th = np.mod(np.arctan2(p[:, 1], p[:, 0]), 2 * np.pi)
    ri = np.minimum((r / cfg.max_range_m * cfg.rings).astype(np.int64), cfg.rings - 1)
    si = np.minimum((th / (2 * np.pi) * cfg.sectors).astype(np.int64), cfg.sectors - 1)
    desc = np.zeros(cfg.rings * cfg.sectors)
    np.maximum.at(desc, ri * cfg.sectors + si, np.maximum(p[:, 2] + cfg.height_offset_m, 0.0))
    return desc.reshape(cfg.rings, cfg.sectors).astype(np.float32)


def ring_key(desc: np.ndarray) -> np.ndarray:
    """(rings,) mean of every ring: invariant to yaw."""
    return desc.mean(1)


def sc_distance(q: np.ndarray, c: np.ndarray) -> tuple[float, int]:
    """(distance in 0..1, best shift) between descriptors, over all column shifts of ``c``.

    ``np.roll(c, shift, axis=1)`` is the best column alignment with ``q``.
    """
    S = q.shape[1]
    idx = (np.arange(S)[None, :] - np.arange(S)[:, None]) % S       # shift s: column j <- c[:, j - s]
    cs = c[:, idx].transpose(1, 0, 2)                               # (S shifts, rings, sectors)
    nq = np.linalg.norm(q, axis=0)                                  # (sectors,)
    nc = np.linalg.norm(cs, axis=1)                                 # (S, sectors)
    dot = (q[None] * cs).sum(1)                                     # (S, sectors)
    valid = (nq[None] > 0) & (nc > 0)
    sim = np.where(valid, dot / np.maximum(nq[None] * nc, 1e-12), 0.0).sum(1)
    cnt = valid.sum(1)
    d = 1.0 - np.where(cnt > 0, sim / np.maximum(cnt, 1), 0.0)
    s = int(d.argmin())
    return float(d[s]), s


class ScanContextDB:
    """Keyframe Scan Contexts with their map poses; ``query`` returns (index, distance, yaw_rad) best first."""

    def __init__(self, cfg: ScanContextConfig | None = None):
        self.cfg = cfg or ScanContextConfig()
        self.descs: list[np.ndarray] = []
        self.poses: list[np.ndarray] = []
        self._tree = None

    def __len__(self) -> int:
        return len(self.descs)

    def add(self, pts_base: np.ndarray, T_map_base: np.ndarray) -> None:
        self.descs.append(scan_context(pts_base, self.cfg))
        self.poses.append(np.asarray(T_map_base, float))
        self._tree = None

    def query(self, pts_base: np.ndarray) -> list[tuple[int, float, float]]:
        if not self.descs:
            return []
        if self._tree is None:
            self._tree = cKDTree(np.array([ring_key(d) for d in self.descs]))
        q = scan_context(pts_base, self.cfg)
        k = min(self.cfg.candidates, len(self.descs))
        _, idx = self._tree.query(ring_key(q), k=k)
        out = []
        for i in np.atleast_1d(idx):
            d, s = sc_distance(q, self.descs[int(i)])
            # roll(c, s) ~ q: a bearing b in the keyframe appears at b + s*step in the query,
            # so the query is yawed by -s*step relative to the keyframe.
            yaw = -s * 2 * np.pi / self.cfg.sectors
            out.append((int(i), d, float(np.arctan2(np.sin(yaw), np.cos(yaw)))))
        return sorted(out, key=lambda x: x[1])

    def pose(self, match: tuple[int, float, float]) -> np.ndarray:
        """4x4 map pose of the query implied by a match: the keyframe position, its yaw plus the shift yaw."""
        i, _, yaw = match
        T = self.poses[i].copy()
        kf_yaw = np.arctan2(T[1, 0], T[0, 0])
        T[:3, :3] = rot_z(kf_yaw + yaw)
        return T
