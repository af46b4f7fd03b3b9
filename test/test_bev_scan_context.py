"""Scan Context baseline: yaw from the column shift, retrieval of the right keyframe."""
from pathlib import Path

import numpy as np
import pytest

from geoloc_ros.bev.scan_context import ScanContextDB, scan_context, sc_distance
from geoloc_ros.geometry import rot_z, se3, transform_points, wrap_angle

KITTI = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "kitti_velodyne_patchwork"


def kitti(i):
    f = KITTI / f"{i:06d}.bin"
    if not f.is_file():
        pytest.skip(f"real KITTI scans not found at {KITTI}")
    return np.fromfile(f, np.float32).reshape(-1, 4)[:, :3].astype(np.float64)


def test_descriptor_shape_and_height():
    d = scan_context(kitti(0))
    assert d.shape == (20, 60) and d.min() >= 0.0 and d.max() > 2.0


@pytest.mark.parametrize("yaw_deg", [36.0, -90.0, 150.0])
def test_yaw_from_best_shift(yaw_deg):
    """A query yawed by +yaw relative to the keyframe is reported as +yaw (to one sector, 6 deg)."""
    p = kitti(0)
    db = ScanContextDB()
    db.add(p, np.eye(4))
    # the robot turned by +yaw: the world appears rotated by -yaw in its frame
    q = transform_points(se3(rot_z(-np.radians(yaw_deg))), p)
    i, d, yaw = db.query(q)[0]
    assert i == 0 and d < 0.15
    assert abs(np.degrees(wrap_angle(yaw - np.radians(yaw_deg)))) <= 6.0
    T = db.pose(db.query(q)[0])
    assert abs(np.degrees(np.arctan2(T[1, 0], T[0, 0])) - yaw_deg) <= 6.0 or abs(yaw_deg) > 179


def test_retrieves_the_same_place_among_others():
    db = ScanContextDB()
    rng = np.random.default_rng(0)
    for k in range(4):                       # distractors: random boxes world
        pts = rng.uniform(-40, 40, (20000, 3)) * [1, 1, 0.1]
        db.add(pts, se3(None, [100.0 * (k + 1), 0, 0]))
    db.add(kitti(0), np.eye(4))
    best = db.query(kitti(1))[0]
    assert best[0] == 4
    others = [sc_distance(scan_context(kitti(1)), d)[0] for d in db.descs[:4]]
    assert best[1] < min(others)
