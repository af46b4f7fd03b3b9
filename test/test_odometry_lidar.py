"""LiDAR odometry on real scans: its motion agrees with open3d's ICP on six consecutive KITTI
HDL-64E scans and with the reference pose of the fast_gicp pair (within its own covariance);
the covariance sees degenerate geometry; bad input gives no update, a counted reason, and the
odometry recovers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from geoloc_ros.events import ScanEvent
from geoloc_ros.odometry.config import OdometryConfig
from geoloc_ros.odometry.lidar import LidarOdometry, deskew, odometry_enabled

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
KITTI = REAL / "kitti_velodyne_patchwork"
GICP = REAL / "fast_gicp_scans"


def _kitti():
    files = sorted(KITTI.glob("*.bin"))
    if len(files) < 6:
        pytest.skip(f"KITTI scans not found in {KITTI}")
    return [np.fromfile(f, np.float32).reshape(-1, 4)[:, :3] for f in files]


def _rot_deg(R) -> float:
    return float(np.degrees(np.linalg.norm(Rotation.from_matrix(R).as_rotvec())))


@pytest.fixture(scope="module")
def kitti_run():
    scans = _kitti()
    odo = LidarOdometry(OdometryConfig(max_range_m=80.0))
    res = [odo.step(ScanEvent(0.1 * i, p)) for i, p in enumerate(scans)]
    return scans, res


def test_kitti_motion_agrees_with_open3d_point_to_plane_icp(kitti_run):
    o3d = pytest.importorskip("open3d")
    reg = o3d.pipelines.registration
    scans, res = kitti_run
    assert all(r.ok for r in res), [r.reason for r in res]
    assert all(r.velocity is not None for r in res[1:])
    from bench.odometry import reference_cloud
    clouds = [reference_cloud(p) for p in scans]
    for i in range(5):
        ref = reg.registration_icp(clouds[i + 1], clouds[i], 1.0, np.eye(4),
                                   reg.TransformationEstimationPointToPlane(reg.TukeyLoss(k=0.3)),
                                   reg.ICPConvergenceCriteria(max_iteration=60)).transformation
        ours = np.linalg.inv(res[i].T_odom_base) @ res[i + 1].T_odom_base
        E = np.linalg.inv(ref) @ ours
        assert 0.6 < ours[0, 3] < 0.8, f"step {i}: {ours[:3, 3]} (the car drives ~0.7 m per scan)"
        assert np.linalg.norm(E[:3, 3]) < 0.02, f"step {i}: ours {ours[:3, 3]} vs open3d {ref[:3, 3]}"
        assert _rot_deg(E[:3, :3]) < 0.1, f"step {i}: rotation differs by {_rot_deg(E[:3, :3]):.3f} deg"
        # the velocity is the motion over the scan interval, in base_link
        v = res[i + 1].velocity
        assert np.allclose(v.v_mps, ours[:3, 3] / 0.1, atol=0.05)
        assert np.isclose(v.t, 0.1 * i + 0.05)


def test_kitti_covariance_is_from_the_fit_not_a_constant(kitti_run):
    _, res = kitti_run
    stds = np.array([np.sqrt(np.diag(r.velocity.cov_v)) for r in res[1:]])
    assert np.all(stds > 0.01) and np.all(stds < 1.0), stds
    assert np.ptp(stds[:, 0]) > 1e-4, "velocity covariance does not depend on the scan"
    for r in res[1:]:
        assert np.all(np.linalg.eigvalsh(r.velocity.cov_v) > 0)
        assert np.all(np.linalg.eigvalsh(r.velocity.cov_w) > 0)


def test_fast_gicp_pair_matches_the_reference_pose():
    o3d = pytest.importorskip("open3d")
    if not (GICP / "relative.txt").is_file():
        pytest.skip(f"fast_gicp scans not found in {GICP}")
    tgt = np.asarray(o3d.io.read_point_cloud(str(GICP / "251370668.pcd")).points)
    src = np.asarray(o3d.io.read_point_cloud(str(GICP / "251371071.pcd")).points)
    ref = np.loadtxt(GICP / "relative.txt")   # source -> target
    odo = LidarOdometry()
    assert odo.step(ScanEvent(0.0, tgt)).ok
    r = odo.step(ScanEvent(0.1, src))
    assert r.ok, r.reason
    E = np.linalg.inv(ref) @ r.T_odom_base
    assert np.linalg.norm(E[:3, 3]) < 0.05, f"translation {r.T_odom_base[:3, 3]} vs {ref[:3, 3]}"
    assert _rot_deg(E[:3, :3]) < 0.6, f"rotation off by {_rot_deg(E[:3, :3]):.2f} deg"
    # the claimed covariance covers the error (chi-square 6 dof, 99.9 %)
    e = np.concatenate([E[:3, 3], Rotation.from_matrix(E[:3, :3]).as_rotvec()])
    assert e @ np.linalg.solve(r.cov6, e) < 22.5


def _corridor(rng, n=20000):
    """Two parallel walls (y = +-2 m) and a floor, 60 m long along x: x is unconstrained."""
    x = rng.uniform(-30, 30, n)
    side = rng.integers(0, 3, n)
    y = np.where(side == 0, -2.0, np.where(side == 1, 2.0, rng.uniform(-2, 2, n)))
    z = np.where(side == 2, -1.0, rng.uniform(-1, 2, n))
    return np.stack([x, y, z], 1) + rng.normal(0, 0.01, (n, 3))


def test_degenerate_corridor_gets_a_large_variance_along_it():
    rng = np.random.default_rng(0)
    odo = LidarOdometry(OdometryConfig(min_range_m=0.0))
    odo.step(ScanEvent(0.0, _corridor(rng)))
    r = odo.step(ScanEvent(0.1, _corridor(rng) - [0.0, 0.05, 0.0]))
    assert r.ok, r.reason
    assert abs(r.T_odom_base[1, 3] - 0.05) < 0.02
    sx, sy = np.sqrt(r.cov6[0, 0]), np.sqrt(r.cov6[1, 1])
    assert sx > 20 * sy, f"std along the corridor {sx:.3f} m, across {sy:.3f} m"


def test_deskew_undoes_constant_motion():
    rng = np.random.default_rng(1)
    p = rng.uniform(-20, 20, (500, 3))
    dt = rng.uniform(-0.05, 0.05, 500)
    v, w = np.array([3.0, 0.5, 0.0]), np.array([0.0, 0.0, 0.8])
    # points seen from base_link at t + dt: p_dt = Exp(dt w)^T (p - dt v)
    p_dt = np.stack([Rotation.from_rotvec(-d * w).apply(q - d * v) for q, d in zip(p, dt)])
    assert np.abs(deskew(p_dt, dt, v, w) - p).max() < 0.01


def test_bad_input_gives_no_update_with_a_counted_reason_and_recovers(kitti_run):
    scans, _ = kitti_run
    odo = LidarOdometry(OdometryConfig(max_range_m=80.0))
    assert odo.step(ScanEvent(0.0, scans[0])).ok
    bad = [ScanEvent(0.02, np.zeros((0, 3), np.float32)),
           ScanEvent(0.03, np.full((1000, 3), np.nan, np.float32)),
           ScanEvent(0.04, scans[1][:20]),
           ScanEvent(0.05, np.ones((10, 2), np.float32)),
           ScanEvent(float("nan"), scans[1]),
           ScanEvent(-0.01, scans[1])]   # older than the last usable scan (0.0)
    for ev in bad:
        r = odo.step(ev)
        assert not r.ok and r.velocity is None and r.reason, r
    assert odo.counters["rejected"] == len(bad)
    assert odo.counters["rejected.no finite point within the range band"] == 1
    assert any(k.startswith("rejected.only") for k in odo.counters)
    # NaN points inside a good scan are dropped, the scan is used
    s1 = scans[1].copy()
    s1[::7] = np.nan
    r = odo.step(ScanEvent(0.1, s1))
    assert r.ok and r.velocity is not None, r.reason
    assert 6.0 < r.velocity.v_mps[0] < 8.0
    # a scan that cannot be registered (the robot 'teleported') restarts the map; then it recovers
    r = odo.step(ScanEvent(0.2, scans[2] + [0.0, 30.0, 0.0]))
    assert not r.ok and "registration failed" in r.reason
    assert odo.step(ScanEvent(0.3, scans[3])).reason == "map restarted"
    r = odo.step(ScanEvent(0.4, scans[4]))
    assert r.ok and r.velocity is not None and 6.0 < r.velocity.v_mps[0] < 8.0


def test_auto_enables_odometry_without_wheels_only():
    from geoloc_ros.io.profiles import load_profile
    cfg = OdometryConfig()
    assert odometry_enabled(cfg, load_profile("oxford_spires"))
    assert not odometry_enabled(cfg, load_profile("m3dgr"))
    assert not odometry_enabled(cfg, None)
    assert odometry_enabled(OdometryConfig(enable="on"), load_profile("m3dgr"))
    assert not odometry_enabled(OdometryConfig(enable="off"), load_profile("oxford_spires"))
    with pytest.raises(ValueError, match="odometry.enable"):
        odometry_enabled(OdometryConfig(enable="maybe"))


def test_localizer_counts_unusable_scans_and_keeps_going(kitti_run):
    from geoloc_ros.config import GeolocConfig
    from geoloc_ros.events import ImuEvent
    from geoloc_ros.pipeline import Localizer
    scans, _ = kitti_run
    cfg = GeolocConfig(profile="oxford_spires")
    cfg.odometry.max_range_m = 80.0
    loc = Localizer(cfg)
    assert loc.lidar_odom is not None
    loc.process(ImuEvent(0.0, np.array([0.0, 0.0, 9.81]), np.zeros(3)))
    for ev in (ScanEvent(0.01, np.zeros((0, 3), np.float32)), ScanEvent(0.02, np.full((500, 3), np.nan, np.float32)),
               ScanEvent(0.05, scans[0]), ScanEvent(0.15, scans[1])):
        loc.process(ev)
    st = loc.stats["odometry"]
    assert st.queries == 4 and st.fixes == 1, (st.queries, st.fixes, dict(st.no_fix_reasons))
    assert sum(st.no_fix_reasons.values()) == 2, dict(st.no_fix_reasons)
    xyyaw = loc.lidar_odom.odom_xyyaw()
    assert 0.6 < xyyaw[0] < 0.8


def test_sweep_middle_stamp_of_a_scan():
    """A whole-sweep product refers to the middle of the sweep: stamp + midpoint of the per-point
    times; no times, mismatched or absurd ones (> 1 s) fall back to the stamp; NaN times are ignored."""
    from geoloc_ros.events import ScanEvent
    pts = np.zeros((5, 3))
    assert ScanEvent(10.0, pts, point_time_s=np.linspace(0.0, 0.1, 5)).t_middle == pytest.approx(10.05)
    assert ScanEvent(10.0, pts, point_time_s=np.array([-0.1, np.nan, 0.0, -0.05, -0.02])).t_middle == \
        pytest.approx(9.95)                                  # stamped at the end of the sweep
    assert ScanEvent(10.0, pts).t_middle == 10.0
    assert ScanEvent(10.0, pts, point_time_s=np.linspace(0.0, 0.1, 4)).t_middle == 10.0
    assert ScanEvent(10.0, pts, point_time_s=np.linspace(0.0, 5.0, 5)).t_middle == 10.0
    assert ScanEvent(10.0, pts, point_time_s=np.full(5, np.nan)).t_middle == 10.0
