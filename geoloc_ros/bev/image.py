"""Point cloud -> BEV density image (BEVPlace++ style), vectorised numpy.

Pixel convention (used by every bev module): the image is ``(S, S)`` with ``S = 2*c+1`` and
``c = round(crop_m / resolution_m)``; column ``u`` is the base-frame x axis and row ``v`` the
y axis, with the robot at the centre pixel ``(c, c)``::

    x_m = (u - c) * resolution_m        y_m = (v - c) * resolution_m

A yaw of the robot is therefore a rotation of the image about its centre, which is what the
rotation-equivariant network relies on.
"""
from __future__ import annotations

import numpy as np

from geoloc_ros.events import ScanEvent
from geoloc_ros.geometry import transform_points

__all__ = ["BevInputError", "level_points", "clean_points", "bev_image", "image_size",
           "pixels_to_metres", "metres_to_pixels", "scan_to_bev"]


class BevInputError(ValueError):
    """A scan the BEV engine cannot use; the message says why (empty, NaN, too few points...)."""


def image_size(cfg) -> int:
    """Side S of the square BEV image in pixels."""
    return 2 * int(round(cfg.crop_m / cfg.resolution_m)) + 1


def pixels_to_metres(uv: np.ndarray, cfg) -> np.ndarray:
    """(N, 2) pixel coordinates (u=col, v=row) -> (N, 2) base-frame x, y in metres."""
    c = image_size(cfg) // 2
    return (np.asarray(uv, float) - c) * cfg.resolution_m


def metres_to_pixels(xy: np.ndarray, cfg) -> np.ndarray:
    """(N, 2) base-frame x, y in metres -> (N, 2) continuous pixel coordinates (u, v)."""
    c = image_size(cfg) // 2
    return np.asarray(xy, float) / cfg.resolution_m + c


def level_points(scan: ScanEvent) -> np.ndarray:
    """(N, 3) scan points in the gravity-levelled base frame (the profile's ``T_base_sensor`` applied)."""
    pts = np.asarray(scan.points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[0] == 0 or pts.shape[1] < 3:
        return np.zeros((0, 3))
    T = np.asarray(scan.T_base_sensor, float)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise BevInputError(f"scan T_base_sensor is not a finite 4x4 matrix (shape {T.shape})")
    return transform_points(T, pts[:, :3])


def clean_points(pts: np.ndarray, cfg) -> np.ndarray:
    """Finite points inside the crop box and height band; raises :class:`BevInputError` when too few."""
    pts = np.asarray(pts, float)
    if pts.ndim != 2 or pts.shape[0] == 0:
        raise BevInputError("empty scan")
    x, y, z = pts[:, 0], pts[:, 1], pts[:, 2]
    # comparisons with NaN are False and |inf| is beyond the crop: non-finite points drop out here
    keep = (np.abs(x) < cfg.crop_m) & (np.abs(y) < cfg.crop_m) & (z > cfg.z_min_m) & (z < cfg.z_max_m)
    p = pts[keep, :3]
    if len(p) < cfg.min_points:
        n_bad = int((~np.all(np.isfinite(pts[:, :3]), axis=1)).sum())
        extra = f" ({n_bad} NaN/inf points dropped)" if n_bad else ""
        raise BevInputError(f"only {len(p)} usable points in the {cfg.crop_m:g} m crop, "
                            f"need {cfg.min_points}{extra}")
    return p


def bev_image(pts_base: np.ndarray, cfg) -> np.ndarray:
    """(S, S) float32 BEV density image in 0..255 from (N, 3) levelled base-frame points.

    Points are voxelised at ``voxel_m``; a pixel counts the occupied voxels in its column, capped at
    ``max_points_per_cell``, and the image is scaled so its maximum is 255.
    """
    p = clean_points(pts_base, cfg)
    v = cfg.voxel_m
    q = np.floor(p / v + 0.5)                                  # voxel indices, centred on multiples of v
    lo = np.floor(np.array([-cfg.crop_m, -cfg.crop_m, cfg.z_min_m]) / v + 0.5)   # bounds of the crop box
    dims = (np.floor(np.array([cfg.crop_m, cfg.crop_m, cfg.z_max_m]) / v + 0.5) - lo + 1).astype(np.int64)
    flat = ((q - lo) @ np.array([dims[1] * dims[2], dims[2], 1], float)).astype(np.int64)
    # one entry per occupied voxel: the point that wrote last into a voxel's slot stands for it
    # (O(N), no sort, no pass over the whole voxel grid)
    order = np.arange(len(flat), dtype=np.int32)
    last = np.empty(int(np.prod(dims)), np.int32)
    last[flat] = order
    occupied = flat[last[flat] == order]
    column = np.bincount(occupied // dims[2], minlength=int(dims[0] * dims[1])).reshape(dims[0], dims[1])
    i, j = np.nonzero(column)
    centres = (np.stack([i, j], 1) + lo[:2]) * v
    S = image_size(cfg)
    uv = np.rint(metres_to_pixels(centres, cfg)).astype(np.int64)
    ok = (uv[:, 0] >= 0) & (uv[:, 0] < S) & (uv[:, 1] >= 0) & (uv[:, 1] < S)
    counts = np.bincount(uv[ok, 1] * S + uv[ok, 0], weights=column[i[ok], j[ok]],
                         minlength=S * S).reshape(S, S)
    img = np.minimum(counts, cfg.max_points_per_cell).astype(np.float32)
    m = img.max()
    if m <= 0:
        raise BevInputError("BEV image is empty after voxelisation")
    return img * (255.0 / m)


def scan_to_bev(scan: ScanEvent, cfg) -> np.ndarray:
    """ScanEvent -> (S, S) float32 BEV image (levelled with the scan's extrinsic)."""
    if scan is None or scan.points is None:
        raise BevInputError("empty scan")
    return bev_image(level_points(scan), cfg)
