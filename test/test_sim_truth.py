"""The simulator tells the truth: its sensors agree with its own ground truth and scene."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from geoloc_ros.events import FixStatus
from geoloc_ros.geometry import transform_points
from geoloc_ros.sim import sensors
from geoloc_ros.sim.config import SimConfig
from geoloc_ros.sim.sensors import Fault
from geoloc_ros.sim.scenario import make_datum, make_faults, make_runs
from geoloc_ros.sim.world import make_world


@pytest.fixture(scope="module")
def town():
    world = make_world(3, size_m=100.0)
    runs = make_runs(world, 3, "tiny")
    return world, runs


def _scan_to_world(traj, scan):
    """Each point through the ground-truth pose at its own time."""
    T_ws = traj.poses(scan.t + scan.point_time_s) @ scan.T_base_sensor
    return np.einsum("nij,nj->ni", T_ws[:, :3, :3], scan.points.astype(float)) + T_ws[:, :3, 3]


@pytest.mark.parametrize("pattern", ["mid360", "qt64"])
def test_lidar_points_land_on_surfaces(town, pattern):
    world, runs = town
    traj = runs["loc_same"]
    scans = [s for _, s in zip(range(70), sensors.lidar_scans(world, traj, pattern, seed=1))][-3:]  # moving
    assert traj.state(scans[0].t).v[0] @ traj.state(scans[0].t).v[0] > 4.0  # robot is at speed
    for scan in scans:
        assert len(scan.points) > 5000 and scan.points.shape[1] == 3
        assert np.all(np.diff(np.unique(scan.point_time_s)) > 0) and scan.point_time_s.max() < 0.1
        p_w = _scan_to_world(traj, scan)
        d = world.distance_to_surface(p_w)
        sigma = world.cfg.lidar_range_sigma_m
        assert np.median(d) < 1.0 * sigma
        assert np.mean(d < 5 * sigma) > 0.995
        # ignoring the motion during the sweep (one pose for all points) is measurably wrong
        p_static = transform_points(traj.poses(scan.t) @ scan.T_base_sensor, scan.points.astype(float))
        obj = scan.object_ids > 0   # on the ground a shift along the surface goes unseen
        ok_static = np.mean(world.distance_to_surface(p_static[obj]) < 5 * sigma)
        assert ok_static < np.mean(d[obj] < 5 * sigma) - 0.03
        # object ids name the surface each point hit
        for oid in np.unique(scan.object_ids[scan.object_ids > 0])[:10]:
            o = world.object_by_id(int(oid))
            local = transform_points(np.linalg.inv(o.T_world_obj), p_w[scan.object_ids == oid])
            half = o.extents_m / 2 + 0.15 + (1.0 if o.cls == "pole" else 0.0)  # pole arm sticks out
            assert np.all(np.abs(local[:, :2]) <= half[:2] + 0.5 * (o.cls == "tree") * o.extents_m[0])
            assert np.all((local[:, 2] > -0.2) & (local[:, 2] < o.extents_m[2] + 0.15))


def test_rgbd_depth_and_instances_agree_with_scene(town):
    world, runs = town
    traj = runs["loc_same"]
    img = [f for _, f in zip(range(60), sensors.rgbd(world, traj, seed=2))][-1]
    K = img.intrinsics
    assert img.rgb.shape == (480, 640, 3) and img.rgb.dtype == np.uint8
    assert img.depth_m.shape == (480, 640) and img.instance.dtype == np.int32
    v, u = np.nonzero(img.depth_m > 0)
    z = img.depth_m[v, u].astype(float)
    p_cam = np.stack([(u - K.cx) / K.fx * z, (v - K.cy) / K.fy * z, z], 1)
    p_w = transform_points(traj.poses(img.t) @ img.T_base_sensor, p_cam)
    d = world.distance_to_surface(p_w)
    assert np.median(d) < 0.02 and np.mean(d < 0.1 + 0.01 * z ** 2) > 0.99
    ids = np.unique(img.instance)
    assert len(ids) > 2  # some objects in view besides ground
    for oid in ids[ids > 0]:
        o = world.object_by_id(int(oid))
        assert o is not None
        pts = p_w[img.instance[v, u] == oid]
        assert np.all(np.linalg.norm(pts[:, :2] - o.position[:2], axis=1) < np.linalg.norm(o.extents_m[:2]) + 1.5)


def test_trajectory_derivatives_are_consistent(town):
    _, runs = town
    traj = runs["loc_lateral"]
    t = np.linspace(traj.t0 + 0.01, traj.t1 - 0.01, 400)
    h = 1e-3   # unix stamps resolve 2.4e-7 s: h must dwarf that
    S, Sp, Sm = traj.state(t), traj.state(t + h), traj.state(t - h)
    assert np.abs((Sp.p - Sm.p) / (2 * h) - S.v).max() < 1e-3
    assert np.abs((Sp.v - Sm.v) / (2 * h) - S.a).max() < 1e-2
    W = np.einsum("nji,njk->nik", S.R, (Sp.R - Sm.R) / (2 * h))
    assert np.abs(np.stack([W[:, 2, 1], W[:, 0, 2], W[:, 1, 0]], 1) - S.w_body).max() < 1e-3
    # on the ground and rolling/pitching with it
    assert np.allclose(S.p[:, 2], traj.ground.height(S.p[:, 0], S.p[:, 1]) + traj.base_height_m)
    speed = np.linalg.norm(S.v, axis=1)
    assert 2.0 < np.median(speed) < 4.0


def _integrate(events, T0, v0, g=sensors.GRAVITY_MPS2):
    """Strapdown integration (trapezoid on bias-corrected samples)."""
    R, p, v = T0[:3, :3].copy(), T0[:3, 3].copy(), v0.copy()
    gv = np.array([0.0, 0.0, -g])
    for a, b in zip(events[:-1], events[1:]):
        dt = b.t - a.t
        w = 0.5 * ((a.gyr_rps - a.bias_gyr) + (b.gyr_rps - b.bias_gyr))
        R1 = R @ Rotation.from_rotvec(w * dt).as_matrix()
        acc = 0.5 * (R @ (a.acc_mps2 - a.bias_acc) + R1 @ (b.acc_mps2 - b.bias_acc)) + gv
        p = p + v * dt + 0.5 * acc * dt ** 2
        v = v + acc * dt
        R = R1
    return R, p, v


def test_imu_integrated_with_known_biases_follows_ground_truth(town):
    _, runs = town
    traj = runs["loc_same"]
    cfg = dataclasses.replace(SimConfig(), acc_n=0.0, gyr_n=0.0, acc_w=0.0, gyr_w=0.0,
                              acc_bias0_sigma=0.1, gyr_bias0_sigma=0.01)
    ev = [e for e in sensors.imu(traj, cfg=cfg, seed=4) if traj.t0 + 3.0 <= e.t <= traj.t0 + 13.0]
    assert abs(ev[-1].t - ev[0].t - 10.0) < 1e-6 and np.linalg.norm(ev[0].bias_acc) > 0.01
    S0 = traj.state(ev[0].t)
    R, p, _ = _integrate(ev, S0.poses()[0], S0.v[0])
    T1 = traj.poses(ev[-1].t)
    assert np.linalg.norm(p - T1[:3, 3]) < 0.02   # 10 s, ~30 m driven
    assert np.linalg.norm(Rotation.from_matrix(R.T @ T1[:3, :3]).as_rotvec()) < 1e-3
    # ignoring the biases is far off: the check above can fail
    ev0 = [dataclasses.replace(e, bias_acc=np.zeros(3), bias_gyr=np.zeros(3)) for e in ev]
    _, p0, _ = _integrate(ev0, S0.poses()[0], S0.v[0])
    assert np.linalg.norm(p0 - T1[:3, 3]) > 1.0


def test_imu_noise_matches_densities(town):
    _, runs = town
    traj = runs["mapping"]
    cfg = SimConfig()
    ev = list(sensors.imu(traj, cfg=cfg, seed=5))
    S = traj.state(np.array([e.t for e in ev]))
    f_true = np.einsum("nji,nj->ni", S.R, S.a + np.array([0, 0, sensors.GRAVITY_MPS2]))
    acc_res = np.array([e.acc_mps2 - e.bias_acc for e in ev]) - f_true
    gyr_res = np.array([e.gyr_rps - e.bias_gyr for e in ev]) - S.w_body
    rate = cfg.imu_rate_hz
    assert np.allclose(acc_res.std(0), cfg.acc_n * np.sqrt(rate), rtol=0.05)
    assert np.allclose(gyr_res.std(0), cfg.gyr_n * np.sqrt(rate), rtol=0.05)
    db = np.diff(np.array([e.bias_acc for e in ev]), axis=0)
    assert np.allclose(db.std(0), cfg.acc_w / np.sqrt(rate), rtol=0.1)
    dg = np.diff(np.array([e.bias_gyr for e in ev]), axis=0)
    assert np.allclose(dg.std(0), cfg.gyr_w / np.sqrt(rate), rtol=0.1)


def test_gnss_errors_match_reported_covariance_outside_faults(town):
    _, runs = town
    traj = runs["mapping"]   # 30 s
    cfg = SimConfig()
    datum = make_datum(cfg)
    assert {f.kind for f in make_faults(runs["loc_reverse"], 3, "loc_reverse")} >= {
        "denial_nofix", "denial_silent", "multipath", "drift", "spoofing", "slip"}
    t0 = traj.t0
    faults = [Fault("gnss", "denial_nofix", t0 + 5, t0 + 8), Fault("gnss", "multipath", t0 + 8, t0 + 12),
              Fault("gnss", "drift", t0 + 12, t0 + 20, {"rate_mps": 0.5, "dir_enu": [0.6, 0.8, 0.0]}),
              Fault("gnss", "spoofing", t0 + 20, t0 + 24, {"offset_enu_m": [30.0, -20.0, 0.0]}),
              Fault("gnss", "denial_silent", t0 + 24, t0 + 26)]
    T_ba = sensors.DEFAULT_EXTRINSICS["gnss"]
    ev = list(sensors.gnss(traj, datum, faults, seed=6))
    t = np.array([e.t for e in ev])
    T = traj.poses(t)
    p_true = np.einsum("nij,j->ni", T[:, :3, :3], T_ba[:3, 3]) + T[:, :3, 3]
    p_meas = np.array([datum.to_map(e.lat_deg, e.lon_deg, e.alt_m) for e in ev])
    err_enu = (p_meas - p_true) @ datum.R_enu_map.T
    in_fault = {k: np.zeros(len(t), bool) for k in ("denial_nofix", "multipath", "drift", "spoofing",
                                                    "denial_silent")}
    for f in faults:
        if f.sensor == "gnss":
            in_fault[f.kind] |= f.active(t)
    clean = ~np.any(list(in_fault.values()), axis=0)
    assert clean.sum() > 50
    nis = np.array([e @ np.linalg.solve(ev[i].cov_enu_m2, e) for i, e in enumerate(err_enu) if clean[i]])
    # chi-square, 3 dof: mean 3, 95 % below 7.815
    assert 2.4 < nis.mean() < 3.6
    assert 0.9 < np.mean(nis < 7.815) <= 1.0
    # the faults are what they claim to be
    assert not in_fault["denial_silent"].any()   # no messages at all
    assert all(ev[i].status == FixStatus.NO_FIX and ev[i].cov_enu_m2 is None
               for i in np.flatnonzero(in_fault["denial_nofix"]))
    mp = np.linalg.norm(err_enu[in_fault["multipath"], :2], axis=1)
    assert mp.min() > 3.0 and mp.max() < 35.0
    assert all(np.sqrt(ev[i].cov_enu_m2[0, 0]) < 1.0 for i in np.flatnonzero(in_fault["multipath"]))
    sp = err_enu[in_fault["spoofing"], :2]
    assert np.linalg.norm(sp.mean(0)) > 20.0 and sp.std(0).max() < 1.0
    assert np.allclose(sp.mean(0), [30.0, -20.0], atol=0.5)
    dr = err_enu[in_fault["drift"], :2] @ np.array([0.6, 0.8])
    slope = np.polyfit(t[in_fault["drift"]] - t0, dr, 1)[0]
    assert abs(slope - 0.5) < 0.15


def test_wheel_scale_and_slip(town):
    _, runs = town
    traj = runs["loc_same"]
    faults = make_faults(traj, 3, "loc_same")
    truth = {}
    ev = list(sensors.wheel(traj, faults, seed=7, truth=truth))
    assert 0.01 - 1e-9 <= abs(truth["wheel_scale"] - 1.0) <= 0.02 + 1e-9
    t = np.array([e.t for e in ev])
    S = traj.state(t)
    v_true = np.einsum("nji,nj->ni", S.R, S.v)[:, 0]
    v = np.array([e.v_mps for e in ev])
    slip = np.zeros(len(t), bool)
    for f in faults:
        if f.sensor == "wheel":
            slip |= f.active(t)
    assert slip.any()
    fast = (~slip) & (v_true > 1.0)
    assert abs(np.median(v[fast] / v_true[fast]) - truth["wheel_scale"]) < 0.005
    assert np.all(v[slip & (v_true > 1.0)] > 1.1 * v_true[slip & (v_true > 1.0)])


def test_changed_world_and_determinism():
    a, b, c = make_world(11, size_m=100.0), make_world(11, size_m=100.0), make_world(12, size_m=100.0)
    assert [o.to_dict() for o in a.objects] == [o.to_dict() for o in b.objects]
    assert [o.to_dict() for o in a.objects] != [o.to_dict() for o in c.objects]
    ch = a.move_objects(0.3, seed=1)
    kinds = {x["kind"] for x in ch.changes}
    assert kinds == {"moved", "removed", "added"}
    removed = {x["id"] for x in ch.changes if x["kind"] == "removed"}
    assert removed and not removed & set(ch.object_ids().tolist())
    assert len(a.objects) == len(b.objects)  # the original is untouched
    ra, rb = make_runs(a, 11, "tiny"), make_runs(b, 11, "tiny")
    sa = next(iter(sensors.lidar_scans(a, ra["mapping"], "qt64", seed=2)))
    sb = next(iter(sensors.lidar_scans(b, rb["mapping"], "qt64", seed=2)))
    assert np.array_equal(sa.points, sb.points) and np.array_equal(sa.object_ids, sb.object_ids)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="size_m"):
        make_world(0, size_m=float("nan"))
    world = make_world(0, size_m=60.0)
    runs = make_runs(world, 0, "tiny")
    with pytest.raises(ValueError, match="pattern"):
        next(iter(sensors.lidar_scans(world, runs["mapping"], "velodyne")))
    with pytest.raises(ValueError, match="scenario"):
        make_runs(world, 0, "nope")
    with pytest.raises(ValueError):
        type(runs["mapping"])(np.full((10, 2), np.nan), world.ground, 0.0, 20.0)
