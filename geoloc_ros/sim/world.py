"""Procedural outdoor town for the simulator: ground heightfield, road grid, objects, ray casting.

The world frame IS the map frame (REP-105 ``map``: x east-ish, y north-ish, z up; the datum in
the scenario manifest ties it to WGS-84). A :class:`World` is deterministic for a seed:

* gently sloped ground ``z = ground_height(x, y)`` (a plane plus two long sinusoids), meshed
  on a 2 m grid for ray casting;
* a grid of roads ``road_block_m`` apart that forms loops, so runs revisit places;
* objects beside the roads, each a :class:`SimObject` (id >= 1, class, colour, pose, extents):
  buildings, walls, trees (trunk + crown), poles, parked cars, bins;
* an open3d ``RaycastingScene`` (tensor API) whose geometry ids map to object ids through
  :attr:`World.geom_to_obj` (0 = ground).

``World.move_objects(fraction, seed)`` gives the changed world of a localization run.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import open3d as o3d

from geoloc_ros.geometry import rot_z, se3
from geoloc_ros.sim.config import SimConfig

__all__ = ["SimObject", "World", "RayHits", "make_world", "CLASSES", "MOVABLE"]

CLASSES = ("building", "wall", "tree", "pole", "car", "bin")
MOVABLE = ("car", "bin")
_GROUND_MARGIN_M = 40.0
_GROUND_STEP_M = 2.0
_SINK_M = 1.0  # every object reaches this far below the ground so slopes leave no gaps

_PALETTE = {
    "building": [(0.75, 0.70, 0.62), (0.62, 0.55, 0.50), (0.80, 0.78, 0.74), (0.55, 0.35, 0.30)],
    "wall": [(0.60, 0.58, 0.55), (0.50, 0.45, 0.40)],
    "tree": [(0.20, 0.50, 0.18), (0.25, 0.42, 0.15), (0.35, 0.55, 0.20)],
    "pole": [(0.35, 0.35, 0.38), (0.70, 0.70, 0.72)],
    "car": [(0.80, 0.10, 0.10), (0.10, 0.20, 0.70), (0.90, 0.90, 0.90), (0.10, 0.10, 0.10),
            (0.85, 0.75, 0.10), (0.30, 0.60, 0.65)],
    "bin": [(0.10, 0.45, 0.15), (0.20, 0.20, 0.60), (0.55, 0.55, 0.55)],
}
ROAD_RGB = np.array([0.33, 0.33, 0.35])
GRASS_RGB = np.array([0.42, 0.55, 0.28])
SKY_RGB = np.array([0.62, 0.75, 0.92])


@dataclass
class SimObject:
    """One object of the world.

    ``T_world_obj`` (4, 4): origin at the centre of the object's footprint on the ground, yaw
    about +z only. ``extents_m`` (3,): size along the object's x, y, z (height above ground).
    """
    id: int
    cls: str
    colour: np.ndarray          # (3,) RGB in 0..1
    T_world_obj: np.ndarray     # (4, 4)
    extents_m: np.ndarray       # (3,)
    movable: bool = False

    @property
    def position(self) -> np.ndarray:
        """(3,) footprint centre on the ground, m."""
        return self.T_world_obj[:3, 3].copy()

    @property
    def centroid(self) -> np.ndarray:
        """(3,) centre of the bounding box above ground, m."""
        return self.T_world_obj[:3, 3] + self.T_world_obj[:3, 2] * 0.5 * self.extents_m[2]

    def to_dict(self) -> dict:
        return {"id": int(self.id), "cls": self.cls, "colour": [float(c) for c in self.colour],
                "T_world_obj": self.T_world_obj.tolist(), "extents_m": self.extents_m.tolist(),
                "movable": bool(self.movable)}


@dataclass
class Ground:
    """Analytic ground ``h(x, y) = sx x + sy y + a1 sin(k1 x + p1) sin(k2 y + p2) + a2 cos(k3 . xy + p3)``."""
    sx: float
    sy: float
    a1: float
    k1: float
    k2: float
    p1: float
    p2: float
    a2: float
    k3: np.ndarray   # (2,) wave vector, rad/m
    p3: float

    def height(self, x, y):
        x, y = np.asarray(x, float), np.asarray(y, float)
        return (self.sx * x + self.sy * y + self.a1 * np.sin(self.k1 * x + self.p1) * np.sin(self.k2 * y + self.p2)
                + self.a2 * np.cos(self.k3[0] * x + self.k3[1] * y + self.p3))

    def gradient(self, x, y):
        """(dh/dx, dh/dy), same shape as x."""
        x, y = np.asarray(x, float), np.asarray(y, float)
        s1, c1 = np.sin(self.k1 * x + self.p1), np.cos(self.k1 * x + self.p1)
        s2, c2 = np.sin(self.k2 * y + self.p2), np.cos(self.k2 * y + self.p2)
        s3 = np.sin(self.k3[0] * x + self.k3[1] * y + self.p3)
        gx = self.sx + self.a1 * self.k1 * c1 * s2 - self.a2 * self.k3[0] * s3
        gy = self.sy + self.a1 * self.k2 * s1 * c2 - self.a2 * self.k3[1] * s3
        return gx, gy

    def hessian(self, x, y):
        """(h_xx, h_xy, h_yy), same shape as x."""
        x, y = np.asarray(x, float), np.asarray(y, float)
        s1, c1 = np.sin(self.k1 * x + self.p1), np.cos(self.k1 * x + self.p1)
        s2, c2 = np.sin(self.k2 * y + self.p2), np.cos(self.k2 * y + self.p2)
        c3 = np.cos(self.k3[0] * x + self.k3[1] * y + self.p3)
        hxx = -self.a1 * self.k1 ** 2 * s1 * s2 - self.a2 * self.k3[0] ** 2 * c3
        hxy = self.a1 * self.k1 * self.k2 * c1 * c2 - self.a2 * self.k3[0] * self.k3[1] * c3
        hyy = -self.a1 * self.k2 ** 2 * s1 * s2 - self.a2 * self.k3[1] ** 2 * c3
        return hxx, hxy, hyy


def _make_ground(rng: np.random.Generator, max_slope: float) -> Ground:
    k1, k2 = 2 * np.pi / rng.uniform(160, 260), 2 * np.pi / rng.uniform(160, 260)
    ang = rng.uniform(0, np.pi)
    k3 = 2 * np.pi / rng.uniform(120, 200) * np.array([np.cos(ang), np.sin(ang)])
    # split the slope budget between the plane and the two waves
    plane = 0.4 * max_slope
    a1 = 0.3 * max_slope / max(k1, k2)
    a2 = 0.3 * max_slope / np.linalg.norm(k3)
    d = rng.uniform(0, 2 * np.pi)
    return Ground(plane * np.cos(d), plane * np.sin(d), a1, k1, k2, rng.uniform(0, 6.3), rng.uniform(0, 6.3),
                  a2, k3, rng.uniform(0, 6.3))


# ---- meshes (legacy open3d) ---------------------------------------------------------------
def _box(ex, ey, ez, z0=0.0):
    m = o3d.geometry.TriangleMesh.create_box(ex, ey, ez)
    m.translate((-ex / 2, -ey / 2, z0))
    return m


def _cyl(r, h, z0=0.0, res=10):
    m = o3d.geometry.TriangleMesh.create_cylinder(r, h, res, 1)
    m.translate((0, 0, z0 + h / 2))
    return m


def _sphere(r, z, res=6):
    m = o3d.geometry.TriangleMesh.create_sphere(r, res)
    m.translate((0, 0, z))
    return m


def _object_mesh(obj: SimObject, rng: np.random.Generator) -> o3d.geometry.TriangleMesh:
    ex, ey, ez = obj.extents_m
    if obj.cls in ("building", "wall", "bin"):
        m = _box(ex, ey, ez + _SINK_M, -_SINK_M)
    elif obj.cls == "car":
        m = _box(ex, ey, 0.55 * ez + _SINK_M + 0.1, -_SINK_M)  # body (no gap under the car)
        m += _box(0.55 * ex, 0.92 * ey, 0.45 * ez, 0.55 * ez + 0.1 - 1e-3)  # cabin
        m.translate((0, 0, -0.1))
    elif obj.cls == "tree":
        trunk_h = 0.45 * ez
        crown_r = 0.5 * ex
        m = _cyl(0.18, trunk_h + _SINK_M + 0.3, -_SINK_M)
        m += _sphere(crown_r, ez - crown_r)
    elif obj.cls == "pole":
        m = _cyl(0.5 * ex, ez + _SINK_M, -_SINK_M, res=8)
        arm = _box(1.2, 0.12, 0.12, ez - 0.3)
        arm.translate((0.6, 0, 0))
        m += arm
    else:  # pragma: no cover - classes are fixed above
        raise ValueError(f"unknown object class {obj.cls!r}")
    m.transform(obj.T_world_obj)
    return m


class RayHits(NamedTuple):
    """Result of :meth:`World.cast` for N rays."""
    range_m: np.ndarray   # (N,) float32, inf where nothing was hit
    obj_id: np.ndarray    # (N,) int32 object id, 0 = ground, -1 = miss
    normal: np.ndarray    # (N, 3) float32 world-frame normal of the hit triangle
    prim_id: np.ndarray   # (N,) uint32 triangle index within the hit geometry


@dataclass
class World:
    """A deterministic town: ground, road grid, objects and the ray-casting scene built from them."""
    seed: int
    cfg: SimConfig
    ground: Ground
    road_coords_m: np.ndarray          # (K,) x (and y) coordinates of the grid's road centrelines
    objects: list[SimObject]
    changes: list[dict] = field(default_factory=list)  # what move_objects did (kind, id, ...)
    _scene: o3d.t.geometry.RaycastingScene | None = field(default=None, repr=False)
    _geom_to_obj: np.ndarray | None = field(default=None, repr=False)
    _ground_tri_rgb: np.ndarray | None = field(default=None, repr=False)

    # ---- ground -----------------------------------------------------------------------------
    def ground_height(self, x, y):
        """Ground height z (m) at map coordinates x, y (scalars or arrays)."""
        return self.ground.height(x, y)

    def road_distance(self, x, y):
        """Distance (m) from (x, y) to the nearest road centreline of the grid."""
        x, y = np.asarray(x, float), np.asarray(y, float)
        c = self.road_coords_m
        lo, hi = c[0], c[-1]
        dx = np.min(np.abs(x[..., None] - c), axis=-1)
        dy = np.min(np.abs(y[..., None] - c), axis=-1)
        # outside the grid's extent a road line does not continue
        dx = np.where((y < lo) | (y > hi), np.hypot(dx, np.minimum(np.abs(y - lo), np.abs(y - hi))), dx)
        dy = np.where((x < lo) | (x > hi), np.hypot(dy, np.minimum(np.abs(x - lo), np.abs(x - hi))), dy)
        return np.minimum(dx, dy)

    # ---- objects ----------------------------------------------------------------------------
    def object_by_id(self, obj_id: int) -> SimObject | None:
        for o in self.objects:
            if o.id == obj_id:
                return o
        return None

    def object_ids(self) -> np.ndarray:
        return np.array([o.id for o in self.objects], dtype=np.int32)

    def colour_table(self) -> np.ndarray:
        """(max_id + 1, 3) RGB per object id (row 0 = ground, coloured per hit point by the camera)."""
        n = max([o.id for o in self.objects], default=0) + 1
        tab = np.tile(GRASS_RGB, (n, 1))
        for o in self.objects:
            tab[o.id] = o.colour
        return tab

    def to_dict(self) -> dict:
        return {"seed": int(self.seed), "size_m": float(self.cfg.size_m),
                "road_coords_m": self.road_coords_m.tolist(),
                "objects": [o.to_dict() for o in self.objects], "changes": self.changes}

    # ---- ray casting ------------------------------------------------------------------------
    @property
    def scene(self) -> o3d.t.geometry.RaycastingScene:
        if self._scene is None:
            self._build_scene()
        return self._scene

    @property
    def geom_to_obj(self) -> np.ndarray:
        """(G,) object id of every geometry in :attr:`scene` (0 = ground)."""
        if self._scene is None:
            self._build_scene()
        return self._geom_to_obj

    def _ground_mesh(self) -> o3d.geometry.TriangleMesh:
        half = self.cfg.size_m / 2 + _GROUND_MARGIN_M
        xs = np.arange(-half, half + 1e-9, _GROUND_STEP_M)
        n = len(xs)
        X, Y = np.meshgrid(xs, xs, indexing="ij")
        V = np.stack([X.ravel(), Y.ravel(), self.ground_height(X, Y).ravel()], 1)
        i, j = np.meshgrid(np.arange(n - 1), np.arange(n - 1), indexing="ij")
        a = (i * n + j).ravel()
        b, c, d = a + n, a + 1, a + n + 1
        F = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
        cen = V[F].mean(axis=1)
        road = self.road_distance(cen[:, 0], cen[:, 1]) < self.cfg.road_half_width_m
        self._ground_tri_rgb = np.where(road[:, None], ROAD_RGB, GRASS_RGB).astype(np.float32)
        return o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(V), o3d.utility.Vector3iVector(F))

    def _build_scene(self):
        scene = o3d.t.geometry.RaycastingScene()
        ids = {}
        ids[scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(self._ground_mesh()))] = 0
        rng = np.random.default_rng(self.seed + 17)
        for o in self.objects:
            g = scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(_object_mesh(o, rng)))
            ids[g] = o.id
        table = np.zeros(max(ids) + 1, np.int32)
        for g, oid in ids.items():
            table[g] = oid
        self._scene, self._geom_to_obj = scene, table

    def cast(self, origins: np.ndarray, dirs: np.ndarray, nthreads: int = 0) -> RayHits:
        """Cast rays (world frame). origins: (N, 3) or (3,), dirs: (N, 3) unit vectors.

        Returns :class:`RayHits` (``range_m`` inf on a miss, ``obj_id`` -1 on a miss, world
        ``normal``, ``prim_id`` triangle index within the hit geometry).
        """
        dirs = np.asarray(dirs, np.float32)
        origins = np.broadcast_to(np.asarray(origins, np.float32), dirs.shape)
        rays = np.concatenate([origins, dirs], axis=1)
        out = self.scene.cast_rays(o3d.core.Tensor(rays), nthreads=nthreads)
        rng_m = out["t_hit"].numpy()
        gid = out["geometry_ids"].numpy()
        hit = np.isfinite(rng_m)
        obj = np.full(len(rng_m), -1, np.int32)
        obj[hit] = self.geom_to_obj[gid[hit]]
        return RayHits(rng_m, obj, out["primitive_normals"].numpy(), out["primitive_ids"].numpy())

    def ground_rgb(self, prim_id: np.ndarray) -> np.ndarray:
        """(N, 3) float32 colour of ground triangles ``prim_id`` (asphalt on roads, grass elsewhere)."""
        if self._ground_tri_rgb is None:
            self._build_scene()
        return self._ground_tri_rgb[prim_id]

    def distance_to_surface(self, pts: np.ndarray) -> np.ndarray:
        """(N,) unsigned distance (m) from world points (N, 3) to the nearest surface of the scene."""
        q = o3d.core.Tensor(np.ascontiguousarray(np.asarray(pts, np.float32)))
        return self.scene.compute_distance(q).numpy().astype(np.float64)

    # ---- changed world ----------------------------------------------------------------------
    def move_objects(self, fraction: float = 0.2, seed: int = 0) -> "World":
        """A copy in which ``fraction`` of the movable objects (cars, bins) were moved, removed,
        or have a new neighbour added (a third each); ``changes`` lists what happened."""
        rng = np.random.default_rng([self.seed, seed, 991])
        objs = [copy.deepcopy(o) for o in self.objects]
        movable = [i for i, o in enumerate(objs) if o.movable]
        k = int(round(fraction * len(movable)))
        chosen = rng.choice(movable, size=k, replace=False) if k else []
        next_id = max(o.id for o in objs) + 1
        changes, removed, added = [], set(), []
        for n, i in enumerate(chosen):
            o = objs[i]
            kind = ("moved", "removed", "added")[n % 3]
            if kind == "moved":
                # slide along its own axis (cars along the kerb), keep it on the ground
                d = rng.uniform(4.0, 10.0) * rng.choice([-1, 1])
                p = o.T_world_obj[:3, 3] + o.T_world_obj[:3, 0] * d
                p[2] = self.ground_height(p[0], p[1])
                old = o.position
                o.T_world_obj = o.T_world_obj.copy()
                o.T_world_obj[:3, 3] = p
                changes.append({"kind": "moved", "id": int(o.id), "from": old.tolist(), "to": p.tolist()})
            elif kind == "removed":
                removed.add(i)
                changes.append({"kind": "removed", "id": int(o.id), "at": o.position.tolist()})
            else:
                new = copy.deepcopy(o)
                new.id = next_id
                next_id += 1
                p = o.T_world_obj[:3, 3] + o.T_world_obj[:3, 0] * (o.extents_m[0] + rng.uniform(1.0, 3.0))
                p[2] = self.ground_height(p[0], p[1])
                new.T_world_obj = o.T_world_obj.copy()
                new.T_world_obj[:3, 3] = p
                new.colour = np.array(_PALETTE[o.cls][int(rng.integers(len(_PALETTE[o.cls])))])
                added.append(new)
                changes.append({"kind": "added", "id": int(new.id), "at": p.tolist()})
        objs = [o for i, o in enumerate(objs) if i not in removed] + added
        return World(self.seed, self.cfg, self.ground, self.road_coords_m.copy(), objs,
                     list(self.changes) + changes)


# ---- layout -------------------------------------------------------------------------------
def _pose(x, y, yaw, ground: Ground) -> np.ndarray:
    return se3(rot_z(yaw), [x, y, float(ground.height(x, y))])


def make_world(seed: int = 0, size_m: float | None = None, cfg: SimConfig | None = None) -> World:
    """Build the town for ``seed``: road grid over ``size_m`` (default ``cfg.size_m``), objects beside it."""
    cfg = copy.deepcopy(cfg) if cfg is not None else SimConfig()
    if size_m is not None:
        cfg.size_m = float(size_m)
    if not np.isfinite(cfg.size_m) or cfg.size_m < 30.0:
        raise ValueError(f"world size_m must be >= 30 m, got {cfg.size_m}")
    rng = np.random.default_rng([int(seed), 7])
    ground = _make_ground(rng, cfg.max_slope)
    half = cfg.size_m / 2 - 20.0
    nroads = max(2, int(round(2 * half / cfg.road_block_m)) + 1)
    coords = np.linspace(-half, half, nroads)
    objs: list[SimObject] = []

    def add(cls, x, y, yaw, ext, movable=False):
        pal = _PALETTE[cls]
        objs.append(SimObject(len(objs) + 1, cls, np.array(pal[int(rng.integers(len(pal)))]),
                              _pose(x, y, yaw, ground), np.asarray(ext, float), movable))

    def near_intersection(a, margin):
        return np.min(np.abs(coords - a)) < margin

    W = cfg.road_half_width_m
    # roadside objects along every road segment, both sides
    for axis in (0, 1):
        for c in coords:
            for side in (-1.0, 1.0):
                yaw_road = 0.0 if axis == 0 else np.pi / 2
                along = coords[0] + rng.uniform(0, 6)
                while along < coords[-1]:
                    def xy(a, off):
                        return (a, c + side * off) if axis == 0 else (c + side * off, a)
                    r = rng.random()
                    if near_intersection(along, W + 6.0):
                        along += 3.0
                        continue
                    if r < 0.28:      # parked car in the parking lane
                        x, y = xy(along, W - 1.5)
                        add("car", x, y, yaw_road + (np.pi if rng.random() < 0.5 else 0.0),
                            [rng.uniform(4.0, 4.8), rng.uniform(1.7, 1.9), rng.uniform(1.4, 1.7)], True)
                        along += rng.uniform(6.0, 12.0)
                    elif r < 0.50:    # tree on the verge
                        x, y = xy(along, W + 2.0)
                        h = rng.uniform(5.0, 9.0)
                        add("tree", x, y, rng.uniform(-np.pi, np.pi), [h * 0.5, h * 0.5, h])
                        along += rng.uniform(6.0, 12.0)
                    elif r < 0.68:    # lamp pole, sometimes with a bin beside it
                        x, y = xy(along, W + 1.0)
                        add("pole", x, y, yaw_road + (np.pi / 2 if side < 0 else -np.pi / 2),
                            [0.24, 0.24, rng.uniform(4.5, 7.5)])
                        if rng.random() < 0.4:
                            x, y = xy(along + 1.2, W + 1.3)
                            add("bin", x, y, yaw_road, [0.6, 0.6, rng.uniform(0.9, 1.2)], True)
                        along += rng.uniform(6.0, 12.0)
                    elif r < 0.76:    # garden wall segment
                        ln = rng.uniform(8.0, 20.0)
                        x, y = xy(along + ln / 2, W + 3.5)
                        add("wall", x, y, yaw_road, [ln, 0.3, rng.uniform(1.2, 2.5)])
                        along += ln + rng.uniform(2.0, 6.0)
                    else:
                        along += rng.uniform(4.0, 10.0)
    # buildings inside the blocks and in a ring outside the grid
    setback = W + 6.0
    edges = np.concatenate([[coords[0] - cfg.road_block_m / 2], coords, [coords[-1] + cfg.road_block_m / 2]])
    for i in range(len(edges) - 1):
        for j in range(len(edges) - 1):
            x0, x1 = edges[i] + (setback if i > 0 else 0.0), edges[i + 1] - (setback if i < len(edges) - 2 else 0.0)
            y0, y1 = edges[j] + (setback if j > 0 else 0.0), edges[j + 1] - (setback if j < len(edges) - 2 else 0.0)
            if x1 - x0 < 8 or y1 - y0 < 8:
                continue
            nx = max(1, int((x1 - x0) // 24))
            ny = max(1, int((y1 - y0) // 24))
            for a in range(nx):
                for b in range(ny):
                    if rng.random() < 0.2:
                        continue  # an empty lot
                    cx0, cx1 = x0 + (x1 - x0) * a / nx, x0 + (x1 - x0) * (a + 1) / nx
                    cy0, cy1 = y0 + (y1 - y0) * b / ny, y0 + (y1 - y0) * (b + 1) / ny
                    ex = rng.uniform(0.55, 0.9) * (cx1 - cx0)
                    ey = rng.uniform(0.55, 0.9) * (cy1 - cy0)
                    cx = rng.uniform(cx0 + ex / 2, cx1 - ex / 2)
                    cy = rng.uniform(cy0 + ey / 2, cy1 - ey / 2)
                    add("building", cx, cy, 0.0, [ex, ey, rng.uniform(5.0, 20.0)])
    return World(int(seed), cfg, ground, coords, objs)
