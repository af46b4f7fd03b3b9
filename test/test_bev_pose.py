"""BEV pose: FAST keypoints, RANSAC + least squares against references on real scans and synthetic truth."""
from pathlib import Path

import numpy as np
import pytest

from geoloc_ros.bev.config import BevConfig
from geoloc_ros.bev.features import extract_features
from geoloc_ros.bev.image import bev_image
from geoloc_ros.bev.pose import estimate_pose, estimate_poses, fast_keypoints, fit_rigid_2d, se2_pose_to_map
from geoloc_ros.bev.rein import default_weights_path, load_rein
from geoloc_ros.geometry import rot_z, se3, se2_from_matrix, yaw_of

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"


def _need(p: Path) -> Path:
    if not p.exists():
        pytest.skip(f"real data not found: {p} (clone shared/ beside the repo)")
    return p


@pytest.fixture(scope="module")
def net():
    if not default_weights_path().is_file():
        pytest.skip("shipped REIN weights geoloc_ros/data/rein.pt missing")
    return load_rein(BevConfig())


def _kitti(i):
    f = _need(REAL / "kitti_velodyne_patchwork" / f"{i:06d}.bin")
    return np.fromfile(f, np.float32).reshape(-1, 4)[:, :3].astype(np.float64)


def _pcd(name):
    import open3d as o3d
    return np.asarray(o3d.io.read_point_cloud(str(_need(REAL / "fast_gicp_scans" / name))).points)


def _pose(net, cfg, src, tgt):
    fq = extract_features(net, bev_image(src, cfg), cfg)
    fk = extract_features(net, bev_image(tgt, cfg), cfg)
    return estimate_pose(fq.kp_xy_m.astype(float), fq.kp_desc, fk.kp_xy_m.astype(float), fk.kp_desc, cfg)


def test_fast_finds_corners_of_a_box_not_flat_areas():
    img = np.zeros((101, 101), np.float32)
    img[30:60, 40:80] = 255.0
    uv = fast_keypoints(img, 20.0, 50)
    assert len(uv) >= 4
    corners = np.array([[40, 30], [79, 30], [40, 59], [79, 59]])
    d = np.linalg.norm(uv[:, None] - corners[None], axis=2).min(1)
    assert np.all(d <= 2.0)                  # only the corners fire, not the edges or the inside


def test_ransac_recovers_truth_among_outliers_and_covariance_tracks_noise():
    cfg = BevConfig()
    rng = np.random.default_rng(3)
    q = rng.uniform(-35, 35, (200, 2))
    yaw, t = np.radians(-127.0), np.array([3.2, -1.4])
    p = q @ rot_z(yaw)[:2, :2].T + t
    desc = rng.normal(size=(200, 128)).astype(np.float32)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    covs = []
    for sigma in (0.03, 0.15):
        pn = p + rng.normal(0, sigma, p.shape)
        pn[:120] = rng.uniform(-35, 35, (120, 2))         # 60 % outliers
        r = estimate_pose(q, desc, pn, desc, cfg, rng)
        assert r.ok and 70 <= r.inliers <= 85
        assert np.hypot(r.x_m - t[0], r.y_m - t[1]) < 5 * sigma
        assert abs(np.degrees(r.yaw_rad - yaw)) < 0.5
        covs.append(r.cov3)
    assert np.trace(covs[1][:2, :2]) > 5 * np.trace(covs[0][:2, :2])    # not a constant


def test_poses_against_several_keyframes_at_once_equal_one_at_a_time():
    """estimate_poses (the engine's re-ranking of the top-k) answers each keyframe as estimate_pose
    would: the right pose where there is one, each refusal with its own reason."""
    import dataclasses
    rng = np.random.default_rng(7)
    q = rng.uniform(-35, 35, (200, 2))
    desc = rng.normal(size=(200, 128)).astype(np.float32)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    truths = [(np.radians(-127.0), np.array([3.2, -1.4])), (np.radians(33.0), np.array([-6.0, 2.5]))]
    kfs = []
    for yaw, t in truths:
        p = q @ rot_z(yaw)[:2, :2].T + t + rng.normal(0, 0.05, q.shape)
        p[:110] = rng.uniform(-35, 35, (110, 2))
        kfs.append((p, desc))
    kfs.append((rng.uniform(-35, 35, (200, 2)), desc))                 # a wrong place: too few inliers
    kfs.append((q[:5], desc[:5]))                                      # too few keypoints
    kfs.insert(1, kfs.pop())
    for cfg in (BevConfig(ransac_preselect_hypotheses=0), BevConfig()):
        batched = estimate_poses(q, desc, kfs, cfg, np.random.default_rng(0))
        seq_rng = np.random.default_rng(0)
        single = [estimate_pose(q, desc, kp, kd, cfg, seq_rng) for kp, kd in kfs]
        assert [r.ok for r in batched] == [True, False, True, False]
        assert "keypoints" in batched[1].reason and "inlier" in batched[3].reason
        for r, (yaw, t) in zip((batched[0], batched[2]), truths):
            assert np.hypot(r.x_m - t[0], r.y_m - t[1]) < 0.1 and abs(np.degrees(r.yaw_rad - yaw)) < 0.3
            assert 80 <= r.inliers <= 95 and np.all(np.isfinite(r.cov3))
        if not cfg.ransac_preselect_hypotheses:    # same random draws in the same order: the same answers
            for a, b in zip(batched, single):
                assert (a.ok, a.inliers, a.reason) == (b.ok, b.inliers, b.reason)
                assert np.allclose([a.x_m, a.y_m, a.yaw_rad], [b.x_m, b.y_m, b.yaw_rad], atol=1e-9)
                assert np.allclose(a.cov3, b.cov3, equal_nan=True)


def test_too_few_inliers_is_no_fix_with_reason():
    cfg = BevConfig()
    rng = np.random.default_rng(1)
    q = rng.uniform(-35, 35, (100, 2))
    desc = rng.normal(size=(100, 128)).astype(np.float32)
    r = estimate_pose(q, desc, rng.uniform(-35, 35, (100, 2)), desc, cfg, rng)
    assert not r.ok and "inlier" in r.reason


def test_pose_to_map_composes_and_rotates_covariance():
    from geoloc_ros.bev.pose import PoseResult
    T_map_kf = se3(rot_z(np.pi / 2), [10.0, 5.0, 1.0])
    r = PoseResult(True, x_m=2.0, y_m=0.0, yaw_rad=0.1, cov3=np.diag([0.04, 0.01, 0.001]))
    T, cov = se2_pose_to_map(T_map_kf, r)
    assert np.allclose(T[:3, 3], [10.0, 7.0, 1.0]) and yaw_of(T) == pytest.approx(np.pi / 2 + 0.1)
    assert cov[0, 0] == pytest.approx(0.01) and cov[1, 1] == pytest.approx(0.04) and cov[5, 5] == 0.001


def test_fast_gicp_pair_matches_reference(net):
    """source -> target relative pose of the real fast_gicp pair within 0.3 m and 1 deg."""
    cfg = BevConfig()
    ref = np.loadtxt(_need(REAL / "fast_gicp_scans" / "relative.txt"))
    r = _pose(net, cfg, _pcd("251371071.pcd"), _pcd("251370668.pcd"))
    assert r.ok, r.reason
    x, y, yaw = se2_from_matrix(ref)
    assert np.hypot(r.x_m - x, r.y_m - y) < 0.3
    assert abs(np.degrees(r.yaw_rad - yaw)) < 1.0


def test_kitti_0_to_5_agrees_with_icp(net):
    import open3d as o3d
    cfg = BevConfig()
    s, t = _kitti(5), _kitti(0)
    r = _pose(net, cfg, s, t)
    assert r.ok, r.reason

    def pc(p):
        c = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(p))
        return c.voxel_down_sample(0.4)
    # reference: ICP chained over the consecutive scans 0->1->...->5, each started from identity
    T = np.eye(4)
    for i in range(5):
        step = o3d.pipelines.registration.registration_icp(
            pc(_kitti(i + 1)), pc(_kitti(i)), 1.0, np.eye(4),
            o3d.pipelines.registration.TransformationEstimationPointToPoint())
        T = T @ step.transformation
    icp = o3d.pipelines.registration.registration_icp(
        pc(s), pc(t), 0.5, T, o3d.pipelines.registration.TransformationEstimationPointToPoint())
    x, y, yaw = se2_from_matrix(icp.transformation)
    assert x > 3.0                                    # the car drove ~3.6 m forward
    assert np.hypot(r.x_m - x, r.y_m - y) < 0.3
    assert abs(np.degrees(r.yaw_rad - yaw)) < 1.0


def test_fit_rigid_2d_exact():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(10, 2))
    p = q @ rot_z(0.7)[:2, :2].T + [1.0, 2.0]
    yaw, t = fit_rigid_2d(q, p)
    assert yaw == pytest.approx(0.7) and np.allclose(t, [1.0, 2.0])


def _fast_reference(img, threshold, arc=9):
    """Per-pixel FAST-arc test and score (the definition in fast_keypoints' docstring), slow."""
    from geoloc_ros.bev.pose import _CIRCLE
    H, W = img.shape
    pad = np.pad(img.astype(np.float32), 3)
    score = np.zeros((H, W), np.float32)
    for v in range(H):
        for u in range(W):
            d = np.array([pad[v + 3 + dv, u + 3 + du] for du, dv in _CIRCLE]) - img[v, u]
            for sgn in (1, -1):
                ok = np.concatenate([sgn * d > threshold] * 2)
                run = best = 0
                for b in ok:
                    run = run + 1 if b else 0
                    best = max(best, run)
                if best >= arc:
                    score[v, u] = np.maximum(np.abs(d) - threshold, 0).sum()
    return score


def test_fast_keypoints_equal_the_per_pixel_definition():
    from scipy.ndimage import maximum_filter
    rng = np.random.default_rng(4)
    img = np.zeros((61, 61), np.float32)
    img[rng.integers(0, 61, 300), rng.integers(0, 61, 300)] = rng.uniform(30, 255, 300)
    img[20:35, 10:22] = 200.0
    score = _fast_reference(img, 45.0)
    c = 30.0
    vv, uu = np.mgrid[0:61, 0:61]
    score[(uu - c) ** 2 + (vv - c) ** 2 > (c - 4) ** 2] = 0
    peak = (score > 0) & (score >= maximum_filter(score, size=3, mode="constant"))
    v, u = np.nonzero(peak)
    ref = {(int(a), int(b)) for a, b in zip(u, v)}
    got = fast_keypoints(img, 45.0, 10_000)
    assert len(ref) > 10
    assert {(int(a), int(b)) for a, b in got} == ref
