"""BEV database: FAISS index kinds, keyframe spacing, malformed maps (no network needed)."""
import numpy as np
import pytest

from geoloc_ros.bev.config import BevConfig
from geoloc_ros.bev.database import BevDatabase, BevMapError, build_database, make_index
from geoloc_ros.bev.features import Features
from geoloc_ros.geometry import rot_z, se3
from geoloc_ros.maps.mapdir import MapDir


def _unit(rng, n, d=64):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_index_kinds_find_the_nearest_descriptor(kind):
    rng = np.random.default_rng(0)
    X = _unit(rng, 4000)
    q = X[[5, 1234, 3999]] + 0.05 * rng.standard_normal((3, 64)).astype(np.float32)
    idx = make_index(X, kind, nlist=64, nprobe=8, use_gpu=False)
    _, nn = idx.search(q / np.linalg.norm(q, axis=1, keepdims=True), 1)
    assert list(nn[:, 0]) == [5, 1234, 3999]


def test_unknown_index_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="index_type"):
        make_index(_unit(np.random.default_rng(0), 10), "lsh")


def _feat(rng):
    return Features(_unit(rng, 1, 32)[0], rng.uniform(-30, 30, (50, 2)).astype(np.float32),
                    _unit(rng, 50, 128))


def test_index_holds_each_place_described_by_its_neighbouring_keyframes():
    """The index compares queries with each keyframe's descriptor averaged over its neighbours along
    the map (Gaussian in map-frame distance, retrieval_smooth_m): a query seen from between or beside
    keyframes meets the place, not one viewpoint; sparse keyframes and sigma 0 keep their own."""
    rng = np.random.default_rng(4)
    cfg = BevConfig(retrieval_smooth_m=1.0)
    db = BevDatabase(cfg, None, weights_sha256="test")
    xs = [0.0, 1.0, 2.0, 3.0, 50.0]                      # four keyframes 1 m apart, one far away
    for x in xs:
        db.add_keyframe(_feat(rng), se3(rot_z(0.0), [x, 0.0, 0.0]))
    G = np.stack(db.global_desc)
    D = db.retrieval_descriptors()
    w = np.exp(-0.5 * (np.array([1.0, 0.0, 1.0, 2.0]))[:, None] ** 2)   # keyframe 1 and its neighbours
    ref = (w * G[:4]).sum(0)
    assert np.allclose(D[1], ref / np.linalg.norm(ref), atol=1e-5)
    assert np.allclose(D[4], G[4], atol=1e-6)                           # 47 m from the others: its own
    assert np.allclose(np.linalg.norm(D, axis=1), 1.0, atol=1e-5)
    # a query between keyframes 1 and 2 (the mean of their views) retrieves one of them first
    q = G[1] + G[2]
    idx, _ = db.search(q / np.linalg.norm(q), 2)
    assert set(idx) == {1, 2}
    off = BevDatabase(BevConfig(retrieval_smooth_m=0.0), None, weights_sha256="test")
    for x in xs:
        off.add_keyframe(Features(G[xs.index(x)], np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32)),
                         se3(rot_z(0.0), [x, 0.0, 0.0]))
    assert np.array_equal(off.retrieval_descriptors(), G)


def test_build_database_keeps_keyframes_by_spacing_and_turn_and_skips_bad_poses():
    rng = np.random.default_rng(1)
    poses = [se3(rot_z(0.0), [0.25 * i, 0.0, 0.0]) for i in range(41)]          # 10 m straight
    poses += [se3(rot_z(np.radians(40.0)), [10.0, 0.0, 0.0])]                    # turn on the spot
    poses += [np.full((4, 4), np.nan)]
    db = build_database(((_feat(rng), T) for T in poses), BevConfig(), model=None, spacing_m=1.0)
    assert len(db) == 11 + 1 and db.skipped == 1


def test_malformed_map_is_a_clear_error(tmp_path):
    rng = np.random.default_rng(2)
    cfg = BevConfig()
    db = BevDatabase(cfg, None)
    for i in range(3):
        db.add_keyframe(_feat(rng), se3(None, [i, 0, 0]))
    md = MapDir.create(tmp_path / "m")
    db.save(md)
    # keypoint offsets that do not add up
    md.write_arrays("bev_keyframes", poses=np.stack(db.poses), global_desc=np.stack(db.global_desc),
                    kp_xy_m=np.zeros((10, 2), np.float32), kp_desc=np.zeros((10, 128), np.float16),
                    kp_offsets=np.array([0, 5, 20, 150]))
    md.close()
    with pytest.raises(BevMapError, match="inconsistent"):
        BevDatabase.load(MapDir.open(tmp_path / "m"), cfg)
    with pytest.raises(BevMapError, match="empty"):
        BevDatabase(cfg, None).save(MapDir.create(tmp_path / "e"))


def test_impostor_floor_follows_the_maps_wrong_pose_inliers(tmp_path):
    cfg = BevConfig(min_inliers=12, impostor_quantile=0.99, impostor_margin=1.0, impostor_min_samples=20)
    db = BevDatabase(cfg, None)
    rng = np.random.default_rng(3)
    for i in range(3):
        db.add_keyframe(_feat(rng), se3(None, [20.0 * i, 0, 0]))
    assert db.impostor_floor() == 12                                 # not calibrated: min_inliers
    db.impostor_inliers = np.array([5] * 99 + [30])
    assert db.impostor_floor() == 31                                 # the 0.99 quantile ('higher') is 30
    db.impostor_inliers = np.array([5] * 100)
    assert db.impostor_floor() == 12                                 # never below min_inliers
    db.impostor_inliers = np.array([40] * 10)
    assert db.impostor_floor() == 12                                 # too few samples to trust
    md = MapDir.create(tmp_path / "m")
    db.impostor_inliers = np.array([7] * 25)
    db.save(md)
    md.close()
    assert np.array_equal(BevDatabase.load(MapDir.open(tmp_path / "m"), cfg).impostor_inliers, [7] * 25)
    md = MapDir.create(tmp_path / "bad")
    db.save(md)
    md.write_json("bev_meta", {**db.meta(), "impostor_inliers": [7, -1, "x"]})
    md.close()
    with pytest.raises(BevMapError, match="impostor_inliers"):
        BevDatabase.load(MapDir.open(tmp_path / "bad"), cfg)


def test_calibration_counts_only_wrong_poses():
    """Keyframes 30 m apart that hold the same features at two poses give each other wrong poses
    with all keypoints as inliers; keyframes that see the same place at the right poses give none."""
    cfg = BevConfig()
    rng = np.random.default_rng(4)
    f = _feat(rng)
    same_place = BevDatabase(cfg, None)
    for x in (0.0, 30.0):                 # the same scan at two places: every pose between them is wrong
        same_place.add_keyframe(f, se3(None, [x, 0, 0]))
    s = same_place.calibrate_impostors()
    assert len(s) == 2 and np.all(s == 50)
    right = BevDatabase(cfg, None)
    for x in (0.0, 30.0):                 # the same points seen from two poses: the poses come out right
        g = Features(f.global_desc, (f.kp_xy_m - [x, 0.0]).astype(np.float32), f.kp_desc)
        right.add_keyframe(g, se3(None, [x, 0, 0]))
    assert len(right.calibrate_impostors()) == 0
