"""REIN: yaw-invariant global descriptor, equivariant local features, weights loading errors."""
from pathlib import Path

import numpy as np
import pytest
import torch

from geoloc_ros.bev.config import BevConfig
from geoloc_ros.bev.image import bev_image, metres_to_pixels, pixels_to_metres
from geoloc_ros.bev.pose import fast_keypoints
from geoloc_ros.bev.rein import ReinNet, WeightsError, default_weights_path, load_rein, sample_local
from geoloc_ros.geometry import rot_z, se3, transform_points

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"


def _need(p: Path) -> Path:
    if not p.exists():
        pytest.skip(f"real data not found: {p} (clone shared/ beside the repo)")
    return p


def _kitti(i):
    f = _need(REAL / "kitti_velodyne_patchwork" / f"{i:06d}.bin")
    return np.fromfile(f, np.float32).reshape(-1, 4)[:, :3].astype(np.float64)


def _pcd(name):
    import open3d as o3d
    return np.asarray(o3d.io.read_point_cloud(str(_need(REAL / "fast_gicp_scans" / name))).points)


@pytest.fixture(scope="module")
def net():
    torch.set_num_threads(1)
    if not default_weights_path().is_file():
        pytest.skip("shipped REIN weights geoloc_ros/data/rein.pt missing")
    return load_rein(BevConfig())


@torch.no_grad()
def _run(net, pts, cfg):
    img = bev_image(pts, cfg)
    g, loc = net(torch.from_numpy(img)[None, None] / 255.0)
    return img, g[0].numpy(), loc


def test_real_scan_stays_nearest_to_itself_under_arbitrary_yaw(net):
    """Database: KITTI scans 0 and 3 (2 m apart) and the two fast_gicp scans; KITTI 0 yawed by
    angles that are not multiples of 45 deg must retrieve KITTI 0."""
    cfg = BevConfig()
    db_pts = [_kitti(0), _kitti(3), _pcd("251370668.pcd"), _pcd("251371071.pcd")]
    G = np.stack([_run(net, p, cfg)[1] for p in db_pts])
    for yaw_deg in (17.0, 100.0, 203.0, -66.0):
        q = transform_points(se3(rot_z(np.radians(yaw_deg))), db_pts[0])
        g = _run(net, q, cfg)[1]
        sims = G @ g
        assert sims.argmax() == 0, (yaw_deg, sims)
        assert sims[0] > 0.9


def test_local_features_are_equivariant(net):
    """Descriptors at a keypoint and at its rotated position agree far better than at other keypoints."""
    cfg = BevConfig()
    p = _kitti(0)
    for yaw_deg in (90.0, 30.0):
        yaw = np.radians(yaw_deg)
        img, _, loc = _run(net, p, cfg)
        img2, _, loc2 = _run(net, transform_points(se3(rot_z(yaw)), p), cfg)
        uv = fast_keypoints(img, cfg.fast_threshold, 200)
        xy2 = pixels_to_metres(uv, cfg) @ rot_z(yaw)[:2, :2].T
        d1 = sample_local(loc, uv, img.shape[0])
        d2 = sample_local(loc2, metres_to_pixels(xy2, cfg), img.shape[0])
        same = (d1 * d2).sum(1)
        other = (d1 * np.roll(d2, 7, axis=0)).sum(1)
        assert np.median(same) > 0.8, yaw_deg
        assert np.median(same) > np.median(other) + 0.2
        # nearest neighbour of each rotated descriptor is mostly its own keypoint (within 2 px)
        nn = (d1 @ d2.T).argmax(0)
        assert np.mean(np.linalg.norm(uv[nn] - uv, axis=1) <= 2.0) > 0.5


def test_wrong_shape_weights_are_a_clear_error(tmp_path):
    small = ReinNet(widths=(8, 16, 32))
    f = tmp_path / "small.pt"
    torch.save(small.state_dict(), f)
    with pytest.raises(WeightsError, match="wrong shape"):
        load_rein(BevConfig(weights=str(f)))


def test_corrupt_or_missing_weights_are_a_clear_error(tmp_path):
    f = tmp_path / "junk.pt"
    f.write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="not a readable"):
        load_rein(BevConfig(weights=str(f)))
    with pytest.raises(WeightsError, match="not found"):
        load_rein(BevConfig(weights=str(tmp_path / "none.pt")))


def test_shipped_weights_are_small_and_plain():
    p = default_weights_path()
    if not p.is_file():
        pytest.skip("shipped REIN weights missing")
    assert p.stat().st_size <= 20 * 1024 * 1024
    state = torch.load(p, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert int(state["pca_fitted"]) == 1


def test_inference_path_matches_the_training_graph_and_sparse_local_matches_dense(net):
    """The eval encoder (BatchNorm folded, channels-last, all convs bf16 where native) gives the
    descriptors of the plain graph; local descriptors computed only at keypoints equal the dense map's."""
    cfg = BevConfig()
    img = bev_image(_kitti(0), cfg)
    x = torch.from_numpy(img)[None, None] / 255.0
    uv = fast_keypoints(img, cfg.fast_threshold, 300)
    with torch.enable_grad():                       # grad mode: the plain modules
        g_ref, loc_ref = net(x)
    d_ref = sample_local(loc_ref.detach(), uv, img.shape[0])
    for bf16, dense_f2 in ((False, True), (False, False), (True, False)):
        net.bf16 = bf16
        with torch.inference_mode():
            g, f2, f3 = net.encode(x, dense_f2=dense_f2)      # dense_f2=False: stride-4 maps pooled at points
            d = net.local_at(f2, f3, uv, img.shape[0])
        cos = float((g[0] * g_ref[0].detach()).sum())
        # bf16 rounding of the encoder, amplified by the whitened PCA: 0.995 measured on KITTI 0
        assert cos > (0.99 if bf16 else 0.99999), (bf16, cos)
        assert np.median((d * d_ref).sum(1)) > (0.999 if bf16 else 0.99999), bf16
        if not bf16:
            assert np.abs(d - d_ref).max() < 1e-4, dense_f2
    net.bf16 = BevConfig().bf16
    # the folded encoder follows the weights: changing a BatchNorm statistic changes the output
    with torch.no_grad():
        before = net.encode(x)[0].clone()
        net.stage2[1].running_mean += 0.5
        after = net.encode(x)[0].clone()
        net.stage2[1].running_mean -= 0.5
    assert float((before * after).sum()) < 0.9999


def test_whitened_pca_equalises_the_component_variances():
    rng = np.random.default_rng(0)
    net = ReinNet(pca_dim=16)
    D = net.vlad.centroids.numel()
    basis = np.linalg.qr(rng.standard_normal((D, 16)))[0].T                  # (16, D) orthonormal
    V = (rng.standard_normal((500, 16)) * np.geomspace(10.0, 0.1, 16)) @ basis
    net.fit_pca(V.astype(np.float32), whiten_power=0.0)
    sd_plain = ((torch.as_tensor(V, dtype=torch.float32) - net.pca_mean) @ net.pca_matrix.T).std(0)
    assert sd_plain[0] / sd_plain[-1] > 50
    net.fit_pca(V.astype(np.float32), whiten_power=1.0, eps_rel=0.0)
    sd = ((torch.as_tensor(V, dtype=torch.float32) - net.pca_mean) @ net.pca_matrix.T).std(0)
    assert float(sd.max() / sd.min()) < 1.05


def test_group_pooling_turns_each_rotation_back_by_its_own_angle():
    """The pooled map equals, by definition, the max over rotations k of the k-th encoder map turned
    back by -k*360/R with one bilinear rotation (the quarter turns taken as exact permutations must not
    change it)."""
    import math

    from geoloc_ros.bev.rein import rotate_images
    torch.manual_seed(0)
    R, B, q = 8, 2, 2
    f = torch.randn(B * R, 5, 26, 26)
    back = tuple(-k * (2 * math.pi / R) for k in range(1, q))
    pooled = ReinNet._pool_quarter(f, B, q, back)
    u = f.unflatten(0, (B, 4, q))                        # rotation (quarter turn m, base i): m*90 + i*45 deg
    ref = torch.stack([rotate_images(u[:, m, i], -(m * math.pi / 2 + i * 2 * math.pi / R))
                       for m in range(4) for i in range(q)], 1).amax(1)
    disc = torch.linspace(-1, 1, 26)
    inside = (disc[None] ** 2 + disc[:, None] ** 2) <= 0.95      # the corners leave the grid when turned
    assert torch.allclose(pooled[..., inside], ref[..., inside], atol=1e-5)


def test_a_query_split_over_two_threads_gives_the_one_thread_features(net):
    """query_threads 2 (keypoints, part of the rotations and the local descriptors on a worker
    thread) is a scheduling choice only: the same global descriptor, keypoints and local
    descriptors as all on one thread, on the real KITTI scans."""
    from dataclasses import replace
    from geoloc_ros.bev.features import extract_features
    cfg = BevConfig()
    for i in (0, 3):
        img = bev_image(_kitti(i), cfg)
        one = extract_features(net, img, replace(cfg, query_threads=1))
        two = extract_features(net, img, replace(cfg, query_threads=2))
        assert len(one.kp_xy_m) > 100
        np.testing.assert_array_equal(one.kp_xy_m, two.kp_xy_m)
        np.testing.assert_allclose(two.global_desc, one.global_desc, atol=1e-6)
        np.testing.assert_allclose(two.kp_desc, one.kp_desc, atol=1e-6)
        assert set(two.timings_ms) == {"network", "keypoints"}
