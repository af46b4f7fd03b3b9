"""Object map persistence and the ObjectLocalizer engine end to end (synthetic LiDAR sweeps)."""
import json

import numpy as np
import pytest

from geoloc_ros.events import CandidateStatus, ScanEvent
from geoloc_ros.geometry import rot_z, se3, se3_inverse, wrap_angle, yaw_of
from geoloc_ros.maps.mapdir import MapDir, MapError
from geoloc_ros.objects import synth
from geoloc_ros.objects.config import ObjectsConfig
from geoloc_ros.objects.descriptor import Descriptors
from geoloc_ros.objects.engine import ObjectLocalizer, match_submap
from geoloc_ros.objects.map import ObjectMap, ObjectMapBuilder
from geoloc_ros.objects.submap import make_submap

CFG = ObjectsConfig()


@pytest.fixture(scope="module")
def world():
    """A scene, its object map from a mapping drive along +x, and the mapping poses."""
    rng = np.random.default_rng(0)
    sc = synth.make_scene(3)
    b = ObjectMapBuilder(CFG)
    for i, x in enumerate(np.arange(-30.0, 31.0, 2.5)):
        T = se3(rot_z(0.0), [x, 0.5, 0.0])
        b.add_scan(ScanEvent(float(i), synth.lidar_scan(sc, T, rng)), T)
    return sc, b.finish()


def test_map_builder_and_roundtrip(world, tmp_path):
    _, om = world
    assert len(om) >= 30 and len(om.centres) >= 6
    md = MapDir.create(tmp_path / "m")
    om.save(md)
    md.close()
    om2 = ObjectMap.load(MapDir.open(tmp_path / "m"))
    assert len(om2) == len(om)
    np.testing.assert_allclose(om2.objects.centroids, om.objects.centroids)
    np.testing.assert_allclose(om2.centres, om.centres)


def test_corrupt_or_empty_object_map_is_a_clear_error(world, tmp_path):
    _, om = world
    md = MapDir.create(tmp_path / "m")
    om.save(md)
    md.close()
    (tmp_path / "m" / "objects.npz").write_bytes(b"garbage")
    with pytest.raises(MapError, match="objects.npz"):
        ObjectMap.load(MapDir.open(tmp_path / "m"))
    with pytest.raises(MapError, match="objects"):  # checksum skipped: content check still catches it
        ObjectMap.load(MapDir.open(tmp_path / "m", verify=False))
    # NaN centroids written by a buggy builder
    bad = ObjectMap(om.objects.subset(np.arange(len(om))), om.centres)
    bad.objects.centroids[0] = np.nan
    md = MapDir.create(tmp_path / "n")
    bad.save(md)
    md.close()
    with pytest.raises(MapError, match="NaN"):
        ObjectMap.load(MapDir.open(tmp_path / "n"))
    # wrong version
    md = MapDir.create(tmp_path / "v")
    md.write_arrays("objects", submap_T=om.centres, **om.objects.to_arrays("obj_"))
    md.write_json("objects_meta", {"version": 99})
    md.close()
    with pytest.raises(MapError, match="version"):
        ObjectMap.load(MapDir.open(tmp_path / "v"))
    # a map without objects gives no fix with a reason
    empty = ObjectMap(Descriptors.empty(), np.zeros((0, 4, 4)))
    q = make_submap(om.objects, om.centres[2], 15.0, 40)
    c = match_submap(q, empty, CFG)
    assert c.status == CandidateStatus.NO_FIX and "no object map" in c.reason


def _drive(eng, sc, xs, T_map_odom, heading, y, rng, t0=100.0):
    out = []
    for i, x in enumerate(xs):
        T_map_base = se3(rot_z(heading), [x, y, 0.0])
        eng.add_scan(ScanEvent(t0 + i, synth.lidar_scan(sc, T_map_base, rng)),
                     se3_inverse(T_map_odom) @ T_map_base)
        c = eng.step()
        if c is not None:
            out.append((c, T_map_base))
    return out


def test_engine_localizes_driving_the_opposite_way(world):
    sc, om = world
    rng = np.random.default_rng(1)
    eng = ObjectLocalizer(CFG, om)
    T_map_odom = se3(rot_z(2.0), [5.0, -3.0, 0.0])  # unknown to the engine
    fixes = _drive(eng, sc, np.arange(22.0, -23.0, -2.5), T_map_odom, np.pi, -0.5, rng)
    assert len(fixes) >= 3
    ok = [(c, T) for c, T in fixes if c.status == CandidateStatus.OK]
    assert len(ok) >= 2, [c.reason for c, _ in fixes]
    for c, T in ok:
        E = se3_inverse(T) @ c.T_map_base
        assert np.linalg.norm(E[:3, 3]) < 1.0 and abs(np.degrees(wrap_angle(yaw_of(E)))) < 5.0
        assert c.cov6.shape == (6, 6) and np.all(np.linalg.eigvalsh(c.cov6) > 0)
        assert c.score >= CFG.min_associations and c.source == "objects"


def test_engine_bad_input_and_no_map(world):
    sc, om = world
    eng = ObjectLocalizer(CFG, None)
    rng = np.random.default_rng(2)
    fixes = _drive(eng, sc, np.arange(-20.0, 5.0, 2.5), np.eye(4), 0.0, 0.5, rng)
    assert fixes and all(c.status == CandidateStatus.NO_FIX and "no object map" in c.reason for c, _ in fixes)
    eng = ObjectLocalizer(CFG, om)
    T = np.eye(4)
    eng.add_scan(ScanEvent(5.0, synth.lidar_scan(sc, T, rng)), T)
    eng.add_scan(ScanEvent(4.0, synth.lidar_scan(sc, T, rng)), T)  # out of order
    bad = T.copy()
    bad[0, 3] = np.nan
    eng.add_scan(ScanEvent(6.0, synth.lidar_scan(sc, T, rng)), bad)
    eng.add_scan(ScanEvent(7.0, np.full((50, 3), np.nan)), T)
    assert eng.rejected == {"out-of-order stamp": 1, "invalid odometry pose": 1}
    eng.force_submap()
    c = eng.step()
    assert c is not None  # a fix or a reasoned refusal, never a crash
    assert c.status == CandidateStatus.OK or c.reason
    with pytest.raises(ValueError):
        ObjectLocalizer(CFG, om, method="nope")


def test_engine_gives_no_fix_in_an_unmapped_place(world):
    """Driving through a different scene with the same kinds of objects: chance cliques exist in
    every query submap, none may become a fix."""
    _, om = world
    other = synth.make_scene(103)
    eng = ObjectLocalizer(CFG, om)
    fixes = _drive(eng, other, np.arange(30.0, -21.0, -2.5), np.eye(4), np.pi, -0.5, np.random.default_rng(3))
    assert len(fixes) >= 3
    assert all(c.status == CandidateStatus.NO_FIX and c.reason for c, _ in fixes), \
        [c.reason for c, _ in fixes]
