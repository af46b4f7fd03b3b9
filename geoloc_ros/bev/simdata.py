"""Simulated BEV training and benchmark data: poses on the roads of a ``geoloc_ros.sim`` world and
ray-cast LiDAR scans there (a 32-beam spinning pattern), ROS-free and fast.

Poses are ``T_world_base`` (4, 4) with base_link gravity-levelled, 0.5 m above the ground; the
LiDAR sits ``lidar_height_m`` above base_link. Revisit kinds (map and queries from different
passes, queries in the changed world of ``World.move_objects``):

* ``same``: same lane and direction, positions between the map's keyframes, yaw +-5 deg;
* ``reverse``: same lane, opposite direction (yaw + 180 deg);
* ``lateral``: same direction, 2-4 m sideways from the map's lane.
"""
from __future__ import annotations

import numpy as np

from geoloc_ros.events import ScanEvent
from geoloc_ros.geometry import rot_z, se3

__all__ = ["lidar_directions", "road_poses", "cast_scan", "revisit_queries", "random_road_poses",
           "scan_event"]

LANE_M = 1.75          # right-hand lane centre from the road centreline
BASE_HEIGHT_M = 0.5


def lidar_directions(rings: int = 32, az_step_deg: float = 0.4, el_min_deg: float = -25.0,
                     el_max_deg: float = 15.0) -> np.ndarray:
    """(rings * 360/az_step, 3) unit ray directions of a spinning LiDAR in its own frame."""
    el = np.radians(np.linspace(el_min_deg, el_max_deg, rings))
    az = np.radians(np.arange(0.0, 360.0, az_step_deg))
    E, A = np.meshgrid(el, az)
    return np.stack([np.cos(E) * np.cos(A), np.cos(E) * np.sin(A), np.sin(E)], -1).reshape(-1, 3)


def _pose(world, x: float, y: float, yaw: float) -> np.ndarray:
    return se3(rot_z(yaw), [x, y, float(world.ground_height(x, y)) + BASE_HEIGHT_M])


def _roads(world):
    """(axis, centre coordinate, start, end) of every road line of the grid."""
    c = world.road_coords_m
    return [(axis, float(cc), float(c[0]), float(c[-1])) for axis in (0, 1) for cc in c]


def road_poses(world, spacing_m: float = 1.0, lateral_m: float = -LANE_M, offset_m: float = 0.0,
               reverse: bool = False) -> np.ndarray:
    """(N, 4, 4) poses every ``spacing_m`` along every road, ``lateral_m`` to the left of the
    centreline for the +x / +y direction of travel (negative = right-hand lane)."""
    out = []
    for axis, c, a0, a1 in _roads(world):
        for a in np.arange(a0 + offset_m, a1, spacing_m):
            yaw = 0.0 if axis == 0 else np.pi / 2
            x, y = (a, c + lateral_m) if axis == 0 else (c - lateral_m, a)
            out.append(_pose(world, x, y, yaw + (np.pi if reverse else 0.0)))
    return np.array(out)


def revisit_queries(world, kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 4, 4) query poses of one revisit kind (see the module docstring)."""
    roads = _roads(world)
    out = []
    for _ in range(n):
        axis, c, a0, a1 = roads[int(rng.integers(len(roads)))]
        a = rng.uniform(a0 + 5.0, a1 - 5.0)
        lat = -LANE_M + rng.uniform(-0.3, 0.3)
        yaw = (0.0 if axis == 0 else np.pi / 2) + np.radians(rng.uniform(-5, 5))
        if kind == "reverse":
            yaw += np.pi
        elif kind == "lateral":
            lat += rng.choice([-1.0, 1.0]) * rng.uniform(2.0, 4.0)
        elif kind != "same":
            raise ValueError(f"unknown revisit kind {kind!r}")
        x, y = (a, c + lat) if axis == 0 else (c - lat, a)
        out.append(_pose(world, x, y, yaw))
    return np.array(out)


def random_road_poses(world, n: int, rng: np.random.Generator, max_lateral_m: float = 5.0) -> np.ndarray:
    """(n, 4, 4) poses on random roads, random sideways offset and any heading (training data)."""
    roads = _roads(world)
    out = []
    for _ in range(n):
        axis, c, a0, a1 = roads[int(rng.integers(len(roads)))]
        a = rng.uniform(a0, a1)
        lat = rng.uniform(-max_lateral_m, max_lateral_m)
        x, y = (a, c + lat) if axis == 0 else (c - lat, a)
        out.append(_pose(world, x, y, rng.uniform(-np.pi, np.pi)))
    return np.array(out)


def cast_scan(world, T_world_base: np.ndarray, rng: np.random.Generator | None = None,
              dirs: np.ndarray | None = None, lidar_height_m: float = 1.0, max_range_m: float = 70.0,
              range_sigma_m: float = 0.02) -> np.ndarray:
    """(N, 3) float32 points of one ray-cast sweep in the LiDAR frame (levelled, ``lidar_height_m`` above base)."""
    dirs = lidar_directions() if dirs is None else dirs
    T_ws = T_world_base @ se3(None, [0.0, 0.0, lidar_height_m])
    hits = world.cast(T_ws[:3, 3], dirs @ T_ws[:3, :3].T, nthreads=1)
    r = np.asarray(hits.range_m if hasattr(hits, "range_m") else hits[0], np.float64)
    ok = np.isfinite(r) & (r < max_range_m) & (r > 0.3)
    if rng is not None:
        r = r + rng.normal(0.0, range_sigma_m, r.shape)
    return (dirs[ok] * r[ok, None]).astype(np.float32)


def scan_event(points_sensor: np.ndarray, t: float = 0.0, lidar_height_m: float = 1.0) -> ScanEvent:
    """ScanEvent for a :func:`cast_scan` sweep (``T_base_sensor`` = the LiDAR mount)."""
    return ScanEvent(t=t, points=points_sensor, frame_id="lidar",
                     T_base_sensor=se3(None, [0.0, 0.0, lidar_height_m]))
