"""BEV image: geometry of the pixel grid, levelling with the extrinsic, rejection of bad scans."""
from pathlib import Path

import numpy as np
import pytest

from geoloc_ros.bev.config import BevConfig
from geoloc_ros.bev.image import (BevInputError, bev_image, image_size, metres_to_pixels,
                                  pixels_to_metres, scan_to_bev)
from geoloc_ros.events import ScanEvent
from geoloc_ros.geometry import rot_z, rpy_to_matrix, se3, transform_points

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
KITTI = REAL / "kitti_velodyne_patchwork"


def kitti(i=0):
    f = KITTI / f"{i:06d}.bin"
    if not f.is_file():
        pytest.skip(f"real KITTI scans not found at {KITTI} (clone shared/ beside the repo)")
    return np.fromfile(f, np.float32).reshape(-1, 4)[:, :3].astype(np.float64)


def test_image_shape_scale_and_pixel_mapping():
    cfg = BevConfig()
    img = bev_image(kitti(0), cfg)
    S = image_size(cfg)
    assert img.shape == (S, S) == (201, 201)
    assert img.max() == pytest.approx(255.0) and img.min() == 0.0
    # a single tall pole at (10, -6) m lands in the pixel the mapping says, with the cap reached
    rng = np.random.default_rng(0)
    pole = np.column_stack([np.full(200, 10.0), np.full(200, -6.0), rng.uniform(0, 8, 200)])
    ground = np.column_stack([rng.uniform(-30, 30, 300), rng.uniform(-30, 30, 300), np.zeros(300)])
    img = bev_image(np.vstack([pole, ground]), cfg)
    u, v = np.rint(metres_to_pixels([[10.0, -6.0]], cfg)[0]).astype(int)
    assert img[v, u] == 255.0
    assert np.allclose(pixels_to_metres([[u, v]], cfg), [[10.0, -6.0]])
    assert img[img > 0].min() < 255.0 / 5       # ground cells hold one voxel: far below the cap


def test_yaw_by_90_deg_rotates_the_image():
    cfg = BevConfig()
    p = kitti(0)
    a = bev_image(p, cfg)
    b = bev_image(transform_points(se3(rot_z(np.pi / 2)), p), cfg)
    # (x, y) -> (-y, x): pixel (u, v) -> (-v, u) about the centre, i.e. np.rot90(a, -1) in (row, col)
    r = np.rot90(a, -1)
    assert np.mean(np.isclose(r, b)[r > 0]) > 0.97
    assert np.mean(np.isclose(np.rot90(a, 1), b)[r > 0]) < 0.5     # the other sense does not fit


def test_tilted_sensor_is_levelled_by_the_extrinsic():
    cfg = BevConfig()
    p = kitti(0)
    T_base_sensor = se3(rpy_to_matrix(0.0, np.radians(31.0), 0.0), [0.1, 0.0, 0.3])   # MID-360-like tilt
    pts_sensor = transform_points(np.linalg.inv(T_base_sensor), p)
    levelled = scan_to_bev(ScanEvent(0.0, pts_sensor, T_base_sensor=T_base_sensor), cfg)
    raw = bev_image(pts_sensor, cfg)
    ref = bev_image(transform_points(T_base_sensor, pts_sensor), cfg)
    assert np.allclose(levelled, ref)
    assert not np.allclose(raw, ref)


@pytest.mark.parametrize("points, why", [
    (np.zeros((0, 3)), "empty"),
    (np.full((5000, 3), np.nan), "usable points"),
    (np.random.default_rng(0).uniform(-5, 5, (50, 3)), "usable points"),
    (np.full((5000, 3), np.inf), "NaN/inf"),
])
def test_bad_scans_are_rejected_with_a_reason(points, why):
    with pytest.raises(BevInputError, match=why):
        scan_to_bev(ScanEvent(0.0, points), BevConfig())


def test_nan_points_are_dropped_not_propagated():
    cfg = BevConfig()
    p = kitti(0)
    noisy = p.copy()
    noisy[::7] = np.nan
    img = bev_image(noisy, cfg)
    assert np.all(np.isfinite(img)) and img.max() == 255.0


def test_pixels_count_occupied_voxels_not_points():
    """A pixel is the number of distinct occupied voxels in its column (capped), however many points
    fall into one voxel; checked against a set-of-voxels reference on a real KITTI scan."""
    cfg = BevConfig()
    pts = kitti(0)
    pts = np.vstack([pts, pts[:5000] + 0.01])          # near-duplicates: same voxels, no new counts
    img = bev_image(pts, cfg)
    keep = (np.abs(pts[:, 0]) < cfg.crop_m) & (np.abs(pts[:, 1]) < cfg.crop_m) \
        & (pts[:, 2] > cfg.z_min_m) & (pts[:, 2] < cfg.z_max_m)
    vox = {tuple(v) for v in np.floor(pts[keep] / cfg.voxel_m + 0.5).astype(int)}
    ref = np.zeros_like(img)
    for i, j, _ in vox:
        u, v = np.rint(metres_to_pixels([[i * cfg.voxel_m, j * cfg.voxel_m]], cfg)[0]).astype(int)
        ref[v, u] += 1
    ref = np.minimum(ref, cfg.max_points_per_cell)
    assert np.allclose(img, ref * (255.0 / ref.max()))
