"""Synthetic object submap pairs for tests and the benchmark (object level, no ray casting).

A scene is a crossroads (two 6 m wide roads along x and y) lined with objects of a few classes
(trees and poles: cylinders; cars, bins, building corners: boxes) with a colour each. A submap
is *observed* from a short drive (viewpoints every 2 m over ``travel_m``) through the scene:

- an object is seen when it lies within ``radius_m`` of the submap centre, within ``range_m`` of
  some viewpoint, and that line of sight is not blocked by a nearer object;
- its segment is the part of its surface facing the viewpoints that saw it (points sampled on the
  surface, kept where the normal faces a viewpoint, height-truncated to the LiDAR's view, with
  3 cm noise), so the centroid is biased toward the viewer and extents are truncated: views
  from opposite directions see different halves of a car or a corner - the honest partial-view
  model; its descriptor then comes from :func:`geoloc_ros.objects.descriptor.describe`;
- colours change with a per-view lighting gain and per-point noise.

Changes between the mapping and the query run: a fraction of objects is moved (1-4 m),
removed or added (new objects), split evenly.

Headings: ``same`` (query drives the mapping direction, offset 1-4 m along and 0-1.5 m across),
``perpendicular`` (crosses it on the other road), ``opposite`` (drives it backwards).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geoloc_ros.geometry import rot_z, se3, se3_inverse
from geoloc_ros.objects.descriptor import Descriptors, describe, from_rows

__all__ = ["Scene", "make_scene", "observe", "make_pair", "SubmapPair", "VIEWS"]

VIEWS = ("same", "perpendicular", "opposite")

# class: (shape, (size min, size max) as (L, W, H) ranges, colour RGB)
_CLASSES = {
    "tree": ("cyl", ((0.3, 0.6), (0.3, 0.6), (4.0, 9.0)), (60, 110, 40)),
    "pole": ("cyl", ((0.15, 0.3), (0.15, 0.3), (3.0, 7.0)), (150, 150, 150)),
    "car": ("box", ((3.8, 4.8), (1.7, 2.0), (1.4, 1.8)), None),
    "bin": ("box", ((0.5, 1.2), (0.5, 0.9), (0.9, 1.4)), (40, 90, 160)),
    "corner": ("box", ((3.0, 8.0), (3.0, 8.0), (3.0, 5.0)), (170, 140, 110)),
}
_CLASS_P = np.array([0.32, 0.2, 0.22, 0.16, 0.10])


@dataclass
class Scene:
    """Objects of a synthetic scene (world frame, z up)."""
    centers: np.ndarray      # (N, 3) m, base centre (z = ground)
    dims: np.ndarray         # (N, 3) L, W, H m (cylinders: diameter, diameter, height)
    yaw: np.ndarray          # (N,) rad
    kind: np.ndarray         # (N,) 0 cylinder, 1 box
    colour: np.ndarray       # (N, 3) uint8
    cls: np.ndarray          # (N,) class index
    ground_z: float = 0.0

    def __len__(self):
        return len(self.centers)

    def subset(self, idx) -> "Scene":
        return Scene(self.centers[idx], self.dims[idx], self.yaw[idx], self.kind[idx],
                     self.colour[idx], self.cls[idx], self.ground_z)

    @staticmethod
    def concat(a: "Scene", b: "Scene") -> "Scene":
        return Scene(*(np.concatenate([getattr(a, k), getattr(b, k)]) for k in
                       ("centers", "dims", "yaw", "kind", "colour", "cls")), a.ground_z)


def _random_objects(rng, n: int, half_m: float, road_half_m: float) -> Scene:
    names = list(_CLASSES)
    cls = rng.choice(len(names), n, p=_CLASS_P)
    centers = np.zeros((n, 3))
    dims = np.zeros((n, 3))
    kind = np.zeros(n, int)
    colour = np.zeros((n, 3), np.uint8)
    for k in range(n):
        shape, ranges, col = _CLASSES[names[cls[k]]]
        d = np.array([rng.uniform(*r) for r in ranges])
        if shape == "cyl":
            d[1] = d[0]
        dims[k] = d
        kind[k] = 0 if shape == "cyl" else 1
        base = np.array(col if col is not None else rng.integers(20, 235, 3), float)
        colour[k] = np.clip(base + rng.normal(0, 12, 3), 0, 255).astype(np.uint8)
        for _ in range(50):  # rejection: off the roads
            p = rng.uniform(-half_m, half_m, 2)
            clear = road_half_m + 0.5 * max(d[0], d[1])
            if abs(p[0]) > clear and abs(p[1]) > clear:
                break
        centers[k, :2] = p
    centers[:, 2] = rng.normal(0, 0.05, n)  # slightly uneven ground
    yaw = rng.uniform(-np.pi, np.pi, n)
    return Scene(centers, dims, yaw, kind, colour, cls)


def make_scene(seed: int, half_m: float = 40.0, density_per_m2: float = 1 / 12.0,
               road_half_m: float = 3.0) -> Scene:
    """A crossroads scene of ``(2 half_m)^2 * density`` objects (minimum spacing 1.5 m)."""
    rng = np.random.default_rng(seed)
    n = int(round((2 * half_m) ** 2 * density_per_m2))
    sc = _random_objects(rng, n, half_m, road_half_m)
    # thin objects that overlap (keep the first)
    keep = []
    for k in range(len(sc)):
        r_k = 0.5 * max(sc.dims[k, 0], sc.dims[k, 1])
        ok = True
        for j in keep:
            r_j = 0.5 * max(sc.dims[j, 0], sc.dims[j, 1])
            if np.linalg.norm(sc.centers[k, :2] - sc.centers[j, :2]) < r_k + r_j + 0.5:
                ok = False
                break
        if ok:
            keep.append(k)
    return sc.subset(np.array(keep))


def _surface_points(rng, sc: Scene, k: int, n_per_m2: float = 12.0):
    """Points (N, 3) and outward normals (N, 3) on the side surface (+ top of boxes) of object k."""
    L, W, H = sc.dims[k]
    c = sc.centers[k]
    if sc.kind[k] == 0:
        r = 0.5 * L
        n = int(np.clip(2 * np.pi * r * H * n_per_m2, 40, 600))
        th = rng.uniform(-np.pi, np.pi, n)
        z = rng.uniform(0, H, n)
        nrm = np.stack([np.cos(th), np.sin(th), np.zeros(n)], 1)
        pts = np.stack([r * np.cos(th), r * np.sin(th), z], 1)
    else:
        faces = []
        for ax, half, other in ((0, L / 2, W), (1, W / 2, L)):
            for sgn in (-1, 1):
                n = int(np.clip(other * H * n_per_m2, 20, 400))
                u = rng.uniform(-other / 2, other / 2, n)
                z = rng.uniform(0, H, n)
                p = np.zeros((n, 3))
                p[:, ax] = sgn * half
                p[:, 1 - ax] = u
                p[:, 2] = z
                nv = np.zeros((n, 3))
                nv[:, ax] = sgn
                faces.append((p, nv))
        n = int(np.clip(L * W * n_per_m2 * 0.5, 10, 200))
        top = np.stack([rng.uniform(-L / 2, L / 2, n), rng.uniform(-W / 2, W / 2, n), np.full(n, H)], 1)
        faces.append((top, np.tile([0.0, 0.0, 1.0], (n, 1))))
        pts = np.concatenate([f[0] for f in faces])
        nrm = np.concatenate([f[1] for f in faces])
    R = rot_z(sc.yaw[k])
    return pts @ R.T + c, nrm @ R.T


def _line_blocked(sc: Scene, k: int, v: np.ndarray) -> bool:
    """True when the horizontal segment viewpoint v -> object k passes through a nearer object."""
    p = sc.centers[k, :2]
    d = p - v
    L = np.linalg.norm(d)
    if L < 1e-6:
        return False
    u = d / L
    rel = sc.centers[:, :2] - v
    along = rel @ u
    perp = np.abs(rel @ np.array([-u[1], u[0]]))
    rad = 0.5 * np.minimum(sc.dims[:, 0], sc.dims[:, 1]) * 0.8
    blk = (along > 0.5) & (along < L - 0.5 * max(sc.dims[k, :2]) - 0.2) & (perp < rad)
    # short objects (< 1.2 m) do not hide tall ones
    blk &= sc.dims[:, 2] >= min(1.2, sc.dims[k, 2])
    blk[k] = False
    return bool(blk.any())


def observe(sc: Scene, T_world_center: np.ndarray, rng, radius_m: float = 15.0,
            range_m: float = 25.0, travel_m: float = 10.0, max_objects: int = 40,
            sensor_h_m: float = 1.8, vfov_up_rad: float = np.deg2rad(15.0),
            pos_noise_m: float = 0.05, miss_frac: float = 0.1,
            clutter_frac: float = 0.25) -> tuple[Descriptors, np.ndarray]:
    """Observed descriptors (in the yaw-only frame T_world_center) and the scene indices seen
    (-1 for clutter).

    The drive spans ``travel_m`` ending at the centre along the centre's heading. Segmentation
    noise: each visible object is missed with probability ``miss_frac`` (under-/over-segmented
    beyond recognition), and ``clutter_frac`` x (objects seen) spurious segments that only this
    run sees (bushes, parked bikes, pedestrians, wall pieces) are added."""
    Tc = np.asarray(T_world_center, float)
    n_clutter = 0
    if clutter_frac > 0:
        dc0 = np.linalg.norm(sc.centers[:, :2] - Tc[:2, 3], axis=1)
        n_clutter = rng.binomial(max(1, int(np.count_nonzero(dc0 <= radius_m))), clutter_frac)
        clutter = _random_objects(rng, n_clutter, radius_m, 3.0)
        clutter.centers[:, :2] += Tc[:2, 3]
        n_real = len(sc)
        sc = Scene.concat(sc, clutter)
    head = Tc[:3, 0]
    vps = [Tc[:2, 3] - head[:2] * s for s in np.arange(0.0, travel_m + 1e-9, 2.0)]
    gain = rng.uniform(0.8, 1.2)
    segs, ids = [], []
    dc = np.linalg.norm(sc.centers[:, :2] - Tc[:2, 3], axis=1)
    for k in np.argsort(dc):
        if dc[k] > radius_m:
            break
        seen = [v for v in vps if np.linalg.norm(sc.centers[k, :2] - v) < range_m
                and not _line_blocked(sc, k, v)]
        if not seen or (k < n_real if n_clutter else True) and rng.random() < miss_frac:
            continue
        pts, nrm = _surface_points(rng, sc, k)
        vis = np.zeros(len(pts), bool)
        for v in seen:
            to_v = np.concatenate([v, [sensor_h_m]]) - pts
            dist_h = np.linalg.norm(to_v[:, :2], axis=1)
            facing = np.einsum("ij,ij->i", nrm, to_v) > 0
            below = (pts[:, 2] - sensor_h_m) < np.tan(vfov_up_rad) * dist_h
            vis |= facing & below
        vis &= rng.random(len(pts)) > 0.15  # dropout
        if vis.sum() < 15:
            continue
        P = pts[vis] + rng.normal(0, 0.03, (int(vis.sum()), 3))
        col = np.clip(sc.colour[k][None].astype(float) * gain + rng.normal(0, 10, (len(P), 3)), 0, 255)
        segs.append((P, col))
        ids.append(k if not n_clutter or k < n_real else -1)
        if len(ids) >= max_objects:
            break
    Tinv = se3_inverse(Tc)
    if not segs:
        return Descriptors.empty(), np.zeros(0, int)
    D = from_rows([describe(P @ Tinv[:3, :3].T + Tinv[:3, 3], c) for P, c in segs], np.array(ids))
    noise = rng.normal(0, pos_noise_m, D.centroids.shape)
    D.centroids += noise
    D.base_z += noise[:, 2]
    return D, np.array(ids)


def _change(sc: Scene, rng, frac: float, near_xy: np.ndarray, radius_m: float) -> Scene:
    """A copy of the scene with ``frac`` of the objects near ``near_xy`` moved, removed or added."""
    if frac <= 0:
        return sc
    near = np.flatnonzero(np.linalg.norm(sc.centers[:, :2] - near_xy, axis=1) < radius_m)
    n_change = int(round(frac * len(near)))
    pick = rng.permutation(near)[:n_change]
    kinds = np.arange(n_change) % 3  # 0 moved, 1 removed, 2 added
    out = sc.subset(np.arange(len(sc)))
    moved = pick[kinds == 0]
    ang = rng.uniform(-np.pi, np.pi, len(moved))
    dist = rng.uniform(1.0, 4.0, len(moved))
    out.centers[moved, 0] += dist * np.cos(ang)
    out.centers[moved, 1] += dist * np.sin(ang)
    out.yaw[moved] = rng.uniform(-np.pi, np.pi, len(moved))
    keep = np.setdiff1d(np.arange(len(sc)), pick[kinds == 1])
    out = out.subset(keep)
    n_add = int(np.count_nonzero(kinds == 2))
    if n_add:
        new = _random_objects(rng, n_add, radius_m, 3.0)
        new.centers[:, :2] += near_xy
        out = Scene.concat(out, new)
    return out


@dataclass
class SubmapPair:
    """A map submap and a query submap with the ground truth T_map-submap_query-submap."""
    target: Descriptors
    query: Descriptors
    T_target_query: np.ndarray   # (4, 4) ground truth
    view: str
    change: float
    n_common: int                # objects seen in both (unchanged ones)


def make_pair(seed: int, view: str = "same", change: float = 0.0, radius_m: float = 15.0,
              max_objects: int = 40) -> SubmapPair:
    """One simulated (map submap, query submap) pair around the crossroads' north-east quadrant."""
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    rng = np.random.default_rng(seed)
    sc = make_scene(seed)
    c = np.array([rng.uniform(2.0, 7.0), 0.0])  # on the x road, just past the crossing
    T_map = se3(rot_z(0.0), [c[0], c[1], 1.8])
    if view == "same":
        T_q = se3(rot_z(rng.normal(0, 0.05)),
                  [c[0] + rng.uniform(1, 4), rng.uniform(-1.5, 1.5), 1.8])
    elif view == "opposite":
        T_q = se3(rot_z(np.pi + rng.normal(0, 0.05)),
                  [c[0] - rng.uniform(1, 4), rng.uniform(-1.5, 1.5), 1.8])
    else:  # drive up the y road, centre near the crossing, heading +y
        T_q = se3(rot_z(np.pi / 2 + rng.normal(0, 0.05)),
                  [rng.uniform(-1.5, 1.5), rng.uniform(-3.0, 3.0), 1.8])
    D_t, ids_t = observe(sc, T_map, rng, radius_m, max_objects=max_objects)
    sc_q = _change(sc, rng, change, c, radius_m + 10)
    # track identity of unchanged objects: objects keep indices except removed/added ones
    D_q, ids_q = observe(sc_q, T_q, rng, radius_m, max_objects=max_objects)
    common = len(set(map(tuple, np.round(sc.centers[ids_t, :2], 3)))
                 & set(map(tuple, np.round(sc_q.centers[ids_q, :2], 3))))
    return SubmapPair(D_t, D_q, se3_inverse(T_map) @ T_q, view, change, common)


def lidar_scan(sc: Scene, T_world_base: np.ndarray, rng, range_m: float = 25.0,
               sensor_h_m: float = 1.8, vfov_up_rad: float = np.deg2rad(15.0),
               ground_step_m: float = 0.25) -> np.ndarray:
    """A synthetic LiDAR sweep (N, 3) in base_link: the visible, unoccluded surface points of the
    scene's objects within ``range_m`` (as :func:`observe` sees them from one viewpoint) plus a
    flat ground grid. For engine tests that need real segmentation input without a ray caster."""
    T = np.asarray(T_world_base, float)
    v = T[:2, 3]
    pts_all = []
    d = np.linalg.norm(sc.centers[:, :2] - v, axis=1)
    for k in np.flatnonzero(d < range_m):
        if _line_blocked(sc, k, v):
            continue
        pts, nrm = _surface_points(rng, sc, k, n_per_m2=60.0)
        to_v = np.concatenate([v, [sensor_h_m]]) - pts
        dist_h = np.linalg.norm(to_v[:, :2], axis=1)
        vis = (np.einsum("ij,ij->i", nrm, to_v) > 0) & ((pts[:, 2] - sensor_h_m) < np.tan(vfov_up_rad) * dist_h)
        pts_all.append(pts[vis])
    g = np.arange(-range_m, range_m, ground_step_m)
    gx, gy = np.meshgrid(g, g)
    ground = np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], 1)
    ground = ground[np.hypot(ground[:, 0], ground[:, 1]) < range_m]
    ground[:, :2] += v
    P = np.concatenate(pts_all + [ground]) if pts_all else ground
    P = P + rng.normal(0, 0.02, P.shape)
    Tinv = se3_inverse(T)
    return P @ Tinv[:3, :3].T + Tinv[:3, 3]
