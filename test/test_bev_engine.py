"""BevLocalizer end to end on a simulated street: revisits, map persistence, and every kind of bad input."""
from pathlib import Path

import numpy as np
import pytest
import torch

from geoloc_ros.bev import simdata
from geoloc_ros.bev.config import BevConfig
from geoloc_ros.bev.database import BevDatabase, BevMapError, build_database
from geoloc_ros.bev.engine import BevLocalizer
from geoloc_ros.bev.rein import ReinNet, default_weights_path, load_rein
from geoloc_ros.events import CandidateStatus, ScanEvent
from geoloc_ros.geometry import wrap_angle, yaw_of
from geoloc_ros.maps.mapdir import MapDir

KITTI = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "kitti_velodyne_patchwork"


@pytest.fixture(scope="module")
def street():
    """A 60 m street of world 7 mapped every 2 m; the localization pass sees the changed world."""
    torch.set_num_threads(1)
    if not default_weights_path().is_file():
        pytest.skip("shipped REIN weights geoloc_ros/data/rein.pt missing")
    from geoloc_ros.sim.world import make_world
    cfg = BevConfig()
    net = load_rein(cfg)
    world = make_world(7, size_m=100.0)
    poses = simdata.road_poses(world, 2.0)
    poses = poses[(np.abs(poses[:, 1, 3] - poses[0, 1, 3]) < 0.1)]          # one road along x
    rng = np.random.default_rng(0)
    scans = [(simdata.scan_event(simdata.cast_scan(world, T, rng), t=float(i)), T) for i, T in enumerate(poses)]
    db = build_database(scans, cfg, net, spacing_m=1.9)
    return cfg, net, world, world.move_objects(0.2, seed=1), db, poses


def _query(world, T, seed=5):
    return simdata.scan_event(simdata.cast_scan(world, T, np.random.default_rng(seed)))


def test_revisits_are_localized(street):
    cfg, net, world, changed, db, poses = street
    assert len(db) == len(poses)
    loc = BevLocalizer(cfg, db, net)
    y = poses[0, 1, 3]
    for x, dy, yaw in ((3.1, 0.0, 0.05), (-12.7, 0.3, np.pi - 0.03), (8.4, -3.0, 0.0), (-20.0, 2.5, 2.0)):
        Tq = simdata._pose(changed, x, y + dy, yaw)
        c = loc.localize(_query(changed, Tq))[0]
        assert c.status == CandidateStatus.OK, c.reason
        assert np.linalg.norm(c.T_map_base[:2, 3] - Tq[:2, 3]) < 1.0
        assert abs(np.degrees(wrap_angle(yaw_of(c.T_map_base) - yaw))) < 2.0
        P = c.cov6[np.ix_([0, 1, 5], [0, 1, 5])]
        assert np.all(np.linalg.eigvalsh(P) > 0) and c.info["inliers"] >= cfg.min_inliers


def test_map_round_trip_and_keyframe_size(street, tmp_path):
    cfg, net, world, changed, db, poses = street
    md = MapDir.create(tmp_path / "map")
    db.save(md)
    md.close()
    size = (tmp_path / "map" / "bev_keyframes.npz").stat().st_size
    assert size / len(db) <= 200 * 1024
    db2 = BevDatabase.load(MapDir.open(tmp_path / "map"), cfg, net)
    assert len(db2) == len(db)
    assert np.array_equal(np.stack(db2.global_desc), np.stack(db.global_desc))
    assert np.array_equal(np.stack(db2.poses), np.stack(db.poses))
    assert all(np.array_equal(a, b) for a, b in zip(db2.kp_desc, db.kp_desc))
    assert db2.search(db.global_desc[3], 1)[0][0] == 3


def test_map_from_another_configuration_is_refused(street, tmp_path):
    cfg, net, world, changed, db, poses = street
    md = MapDir.create(tmp_path / "map")
    db.save(md)
    md.close()
    with pytest.raises(BevMapError, match="voxel_m"):
        BevDatabase.load(MapDir.open(tmp_path / "map"), BevConfig(voxel_m=0.5), net)
    other = ReinNet()
    f = tmp_path / "other.pt"
    torch.save(other.state_dict(), f)
    cfg2 = BevConfig(weights=str(f))
    with pytest.raises(BevMapError, match="other REIN weights"):
        BevDatabase.load(MapDir.open(tmp_path / "map"), cfg2, load_rein(cfg2))


@pytest.mark.parametrize("points, why", [
    (np.zeros((0, 3)), "empty"),
    (np.full((3000, 3), np.nan), "usable points"),
    (np.random.default_rng(0).uniform(-5, 5, (60, 3)), "usable points"),
])
def test_bad_scans_give_no_fix_with_reason(street, points, why):
    cfg, net, world, changed, db, poses = street
    out = BevLocalizer(cfg, db, net).localize(ScanEvent(0.0, points))
    assert len(out) == 1 and out[0].status == CandidateStatus.NO_FIX and why in out[0].reason
    assert out[0].T_map_base is None


def test_scan_far_outside_the_map_is_no_fix(street):
    cfg, net, world, changed, db, poses = street
    loc = BevLocalizer(cfg, db, net)
    from geoloc_ros.sim.world import make_world
    other = make_world(123, size_m=100.0)
    for x in (-25.0, 10.0):   # a street of another town
        c = loc.localize(_query(other, simdata._pose(other, x, other.road_coords_m[-1] - 1.75, 0.3)))[0]
        assert c.status == CandidateStatus.NO_FIX, c.info
    if (KITTI / "000000.bin").is_file():     # a real KITTI street is not in a simulated town either
        p = np.fromfile(KITTI / "000000.bin", np.float32).reshape(-1, 4)[:, :3]
        c = loc.localize(ScanEvent(0.0, p))[0]
        assert c.status == CandidateStatus.NO_FIX, c.info


def _copy_db(db, cfg, net, shift_m=None):
    """The street's keyframes again; with ``shift_m`` each one a second time, ``shift_m`` further
    along y (a town that repeats the street: every revisit matches two places equally)."""
    from geoloc_ros.bev.features import Features
    out = BevDatabase(cfg, net)
    for k in range(len(db)):
        T, kp, kd = db.keyframe(k)
        f = Features(db.global_desc[k], kp, kd)
        out.add_keyframe(f, T)
        if shift_m is not None:
            T2 = T.copy()
            T2[1, 3] += shift_m
            out.add_keyframe(f, T2)
    out.impostor_inliers = db.impostor_inliers
    return out


def test_a_place_the_map_holds_twice_is_no_fix(street):
    """Two keyframes per place at poses 30 m apart: each pose has a rival as good as itself."""
    cfg, net, world, changed, db, poses = street
    twice = _copy_db(db, cfg, net, shift_m=30.0)
    Tq = simdata._pose(changed, 3.1, poses[0, 1, 3], 0.05)
    scan = _query(changed, Tq)
    c = BevLocalizer(cfg, twice, net).localize(scan)[0]
    assert c.status == CandidateStatus.NO_FIX and "no distinct pose" in c.reason, c.reason
    import dataclasses
    off = dataclasses.replace(cfg, distinct_ratio=0.0)        # the distinctiveness gate is what refuses it
    c = BevLocalizer(off, twice, net).localize(scan)[0]
    assert c.status == CandidateStatus.OK, c.reason


def test_the_maps_own_wrong_poses_set_the_inlier_floor(street, tmp_path):
    cfg, net, world, changed, db, poses = street
    s = db.impostor_inliers
    assert s is not None and len(s) >= cfg.impostor_min_samples
    assert db.impostor_floor() > np.quantile(s, cfg.impostor_quantile) and db.impostor_floor() >= cfg.min_inliers
    md = MapDir.create(tmp_path / "map")
    db.save(md)
    md.close()
    assert np.array_equal(BevDatabase.load(MapDir.open(tmp_path / "map"), cfg, net).impostor_inliers, s)
    Tq = simdata._pose(changed, 3.1, poses[0, 1, 3], 0.05)
    c = BevLocalizer(cfg, db, net).localize(_query(changed, Tq))[0]
    assert c.status == CandidateStatus.OK and c.info["inliers"] >= c.info["impostor_floor"] == db.impostor_floor()
    strict = _copy_db(db, cfg, net)
    strict.impostor_inliers = np.full(50, c.info["inliers"])   # wrong poses here would get as many
    c = BevLocalizer(cfg, strict, net).localize(_query(changed, Tq))[0]
    assert c.status == CandidateStatus.NO_FIX and "wrong poses in this map reach" in c.reason, c.reason
