"""Object submaps: the objects around a point of the trajectory, in a gravity-aligned yaw-only frame.

A submap is cut every ``submap_spacing_m`` of travel; it holds at most ``submap_max_objects``
objects within ``submap_radius_m`` of its centre, the nearest first, expressed in the frame
``T_world_submap`` = the robot pose at the centre with roll and pitch removed (z up, so the
association can use the gravity prior).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from geoloc_ros.geometry import se3_inverse, wrap_angle, yaw_of, yaw_only
from geoloc_ros.objects.descriptor import Descriptors

__all__ = ["Submap", "make_submap", "TravelTrigger", "FrameGate"]


@dataclass
class Submap:
    """Objects (in the submap frame) and where the submap frame is in its world (odom or map)."""
    T_world_submap: np.ndarray     # (4, 4) yaw-only
    objects: Descriptors           # centroids in the submap frame
    t: float = 0.0
    index: int = -1
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.objects)


def make_submap(objects_world: Descriptors, T_world_center: np.ndarray, radius_m: float,
                max_objects: int, t: float = 0.0, index: int = -1) -> Submap:
    """Cut a submap centred on ``T_world_center`` (its yaw-only version is the submap frame).

    objects_world: descriptors with centroids in the world frame. Objects with non-finite
    numbers are skipped. The horizontal distance to the centre selects and orders them."""
    Tc = yaw_only(np.asarray(T_world_center, float))
    if len(objects_world) == 0:
        return Submap(Tc, Descriptors.empty(objects_world.appearance.shape[1]), t, index)
    valid = objects_world.valid_mask()
    dxy = np.linalg.norm(objects_world.centroids[:, :2] - Tc[:2, 3], axis=1)
    dxy[~valid] = np.inf
    idx = np.flatnonzero(dxy <= radius_m)
    idx = idx[np.argsort(dxy[idx], kind="stable")][:max_objects]
    return Submap(Tc, objects_world.subset(idx).transformed(se3_inverse(Tc)), t, index)


class TravelTrigger:
    """Fires once every ``spacing_m`` of horizontal travel along a sequence of positions."""

    def __init__(self, spacing_m: float):
        self.spacing_m = float(spacing_m)
        self.reset()

    def reset(self) -> None:
        self._last: np.ndarray | None = None
        self.travel_m = 0.0

    def update(self, p_xy: np.ndarray) -> bool:
        p = np.asarray(p_xy, float)[:2]
        if not np.all(np.isfinite(p)):
            return False
        if self._last is not None:
            self.travel_m += float(np.linalg.norm(p - self._last))
        self._last = p
        if self.travel_m >= self.spacing_m:
            self.travel_m = 0.0
            return True
        return False


class FrameGate:
    """Passes a pose when it moved ``min_travel_m`` or turned ``min_yaw_rad`` since the last
    passed one (segmenting every 10 Hz sweep is neither needed nor affordable)."""

    def __init__(self, min_travel_m: float, min_yaw_rad: float):
        self.min_travel_m, self.min_yaw_rad = float(min_travel_m), float(min_yaw_rad)
        self._last: np.ndarray | None = None

    def reset(self) -> None:
        self._last = None

    def __call__(self, T: np.ndarray) -> bool:
        if self._last is not None:
            moved = np.linalg.norm(T[:3, 3] - self._last[:3, 3])
            turned = abs(float(wrap_angle(yaw_of(T) - yaw_of(self._last))))
            if moved < self.min_travel_m and turned < self.min_yaw_rad:
                return False
        self._last = np.array(T, float)
        return True
