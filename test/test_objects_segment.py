"""Segmentation (real KITTI scans, synthetic clouds, RGB-D), camera colouring and tracking."""
from pathlib import Path

import numpy as np
import pytest

from geoloc_ros.events import CameraIntrinsics, ImageEvent, ScanEvent
from geoloc_ros.geometry import se3
from geoloc_ros.objects.config import ObjectsConfig
from geoloc_ros.objects.descriptor import describe, make_embedder
from geoloc_ros.objects.segment import LidarSegmenter, RgbdSegmenter, Segment, colour_points, project
from geoloc_ros.objects.submap import make_submap
from geoloc_ros.objects.track import ObjectTracker
from geoloc_ros.objects.align import align_roman

KITTI = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "kitti_velodyne_patchwork"
CFG = ObjectsConfig()
T_BASE_VELO = se3(None, [0.0, 0.0, 1.73])  # KITTI Velodyne height above the road
# frame-to-frame forward motion measured by ICP (realdata README), frame i -> i+1
KITTI_DX = [0.668, 0.692, 0.744, 0.742, 0.710]


def _kitti(i):
    f = KITTI / f"{i:06d}.bin"
    if not f.is_file():
        pytest.skip(f"KITTI scans missing: {f}")
    return np.fromfile(f, np.float32).reshape(-1, 4)[:, :3]


def _describe(segs):
    return [describe(s.points) for s in segs]


@pytest.fixture(scope="module")
def kitti_segments():
    """Segments of the six real KITTI sweeps (base_link of each sweep), computed once."""
    seg = LidarSegmenter(CFG)
    return [seg.segment(ScanEvent(float(i), _kitti(i), T_base_sensor=T_BASE_VELO)) for i in range(6)]


def _copy(segs, dx):
    return [Segment(s.points + [dx, 0.0, 0.0], s.colors) for s in segs]


def test_kitti_scan_gives_poles_and_cars_and_passes_filters(kitti_segments):
    segs = kitti_segments[0]
    D = _describe(segs)
    assert 20 <= len(D) <= 200
    ext = np.array([d["extents"] for d in D])
    for s in segs:
        e = s.points.max(0) - s.points.min(0)
        assert e.max() >= CFG.min_extent_m and e.max() <= CFG.max_extent_m and e[2] >= CFG.min_height_m
    poles = (ext[:, 0] < 0.6) & (ext[:, 2] > 1.5)
    cars = (ext[:, 0] > 3.3) & (ext[:, 0] < 5.5) & (ext[:, 2] > 1.0) & (ext[:, 2] < 2.8)
    assert poles.sum() >= 1 and cars.sum() >= 4
    # no ground left: segments start above the road, not a road-sized blob
    assert all(d["extents"][0] < CFG.max_extent_m for d in D)


def test_kitti_tracking_follows_objects_across_frames(kitti_segments):
    tr = ObjectTracker(CFG)
    x = 0.0
    for i in range(3):  # into the first frame (odom) with the ICP motion
        tr.update(_copy(kitti_segments[i], x), float(i))
        x += KITTI_DX[i]
    conf = tr.confirmed()
    assert len(conf) >= 15  # static objects are seen again
    assert max(t.sightings for t in conf) >= 3
    D = tr.objects()
    assert len(D) == len(conf) and np.all(D.valid_mask())


def test_kitti_submaps_align_with_the_icp_motion(kitti_segments):
    """Real data: objects tracked over sweeps 3-5 align with those of sweeps 0-2 (ROMAN)."""
    X = np.concatenate([[0.0], np.cumsum(KITTI_DX)])

    def submap(frames):
        tr = ObjectTracker(CFG)
        for i in frames:
            tr.update(_copy(kitti_segments[i], X[i] - X[frames[0]]), float(i))
        return make_submap(tr.objects(), np.eye(4), CFG.submap_radius_m, CFG.submap_max_objects)

    a, b = submap([0, 1, 2]), submap([3, 4, 5])
    r = align_roman(b.objects, a.objects, CFG)
    assert r.ok, r.reason
    assert np.linalg.norm(r.T[:3, 3] - [X[3], 0.0, 0.0]) < 0.3
    assert abs(np.arctan2(r.T[1, 0], r.T[0, 0])) < np.deg2rad(2.0)


def _synthetic_cloud(rng):
    pts = []
    g = np.mgrid[-15:15:0.1, -15:15:0.1].reshape(2, -1).T
    pts.append(np.column_stack([g, rng.normal(0, 0.01, len(g))]))  # ground
    centres = [(5.0, 3.0), (-4.0, 6.0), (8.0, -5.0)]
    for cx, cy in centres:  # poles r = 0.15 m, 4 m tall
        th = rng.uniform(0, 2 * np.pi, 1500)
        z = rng.uniform(0, 4, 1500)
        pts.append(np.column_stack([cx + 0.15 * np.cos(th), cy + 0.15 * np.sin(th), z]))
    w = np.mgrid[-10:10:0.05, 0:3:0.05].reshape(2, -1).T  # a 20 m wall at y = -12
    pts.append(np.column_stack([w[:, 0], np.full(len(w), -12.0), w[:, 1]]))
    pts.append(np.array([[1.0, 1.0, 0.3]]))  # a lone outlier
    return np.concatenate(pts), centres


def test_synthetic_cloud_segments_poles_drops_ground_and_wall():
    rng = np.random.default_rng(0)
    P, centres = _synthetic_cloud(rng)
    segs = LidarSegmenter(CFG).segment(ScanEvent(0.0, P))
    C = np.array([describe(s.points)["centroid"] for s in segs])
    assert len(segs) == 3
    for cx, cy in centres:
        assert np.min(np.linalg.norm(C[:, :2] - [cx, cy], axis=1)) < 0.2


def test_bad_scans_give_no_segments():
    seg = LidarSegmenter(CFG)
    assert seg.segment(ScanEvent(0.0, np.zeros((0, 3)))) == []
    assert seg.segment(ScanEvent(0.0, np.full((100, 3), np.nan))) == []
    assert seg.segment(ScanEvent(0.0, np.zeros((10, 2)))) == []  # wrong shape
    assert seg.segment(ScanEvent(0.0, np.ones((100, 3)), T_base_sensor=np.full((4, 4), np.nan))) == []
    P, _ = _synthetic_cloud(np.random.default_rng(1))
    P[::7] = np.nan
    assert len(seg.segment(ScanEvent(0.0, P))) == 3
    PI = np.column_stack([P, np.ones(len(P))])  # x, y, z, intensity
    assert len(seg.segment(ScanEvent(0.0, PI))) == 3


def _camera():
    K = CameraIntrinsics(64, 48, 40.0, 40.0, 32.0, 24.0)
    # optical frame (x right, y down, z forward) -> base (x forward, y left, z up)
    R = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float)
    return K, se3(R, [0.0, 0.0, 1.0])


def _rgbd_scene():
    K, T = _camera()
    depth = np.full((48, 64), 0.0, np.float32)
    inst = np.zeros((48, 64), np.int32)
    rgb = np.zeros((48, 64, 3), np.uint8)
    depth[5:40, 8:24] = 4.0      # object 1, red, 4 m ahead, left of centre
    inst[5:40, 8:24] = 7
    rgb[5:40, 8:24] = (200, 30, 30)
    depth[10:45, 40:58] = 6.0    # object 2, blue, 6 m
    inst[10:45, 40:58] = 9
    rgb[10:45, 40:58] = (30, 30, 200)
    depth[:, :][depth == 0] = 9.0  # background beyond max depth
    rgb[depth == 9.0] = (90, 90, 90)
    return ImageEvent(0.0, rgb, depth, inst, K, "camera", T)


def _check_two_objects(segs):
    assert len(segs) == 2
    D = sorted((describe(s.points, s.colors) for s in segs), key=lambda d: d["centroid"][0])
    assert D[0]["centroid"][0] == pytest.approx(4.0, abs=0.1) and D[0]["centroid"][1] > 0  # left
    assert D[1]["centroid"][0] == pytest.approx(6.0, abs=0.1) and D[1]["centroid"][1] < 0  # right
    assert not np.allclose(D[0]["appearance"], D[1]["appearance"])


def test_rgbd_instance_masks_back_project():
    _check_two_objects(RgbdSegmenter(CFG).segment(_rgbd_scene()))


def test_rgbd_region_growing_without_instance_image():
    img = _rgbd_scene()
    img.instance = None
    cfg = ObjectsConfig(min_mask_px=40)
    _check_two_objects(RgbdSegmenter(cfg).segment(img))


def test_rgbd_bad_frames_do_not_crash():
    seg = RgbdSegmenter(CFG)
    img = _rgbd_scene()
    img.rgb = img.rgb[:20]  # colour image not registered with the depth image
    assert len(seg.segment(img)) == 2  # segmented from the instance masks, colour ignored
    img = _rgbd_scene()
    img.depth_m = np.full_like(img.depth_m, np.nan)
    assert seg.segment(img) == []
    img = _rgbd_scene()
    img.instance = img.instance[:10]
    assert seg.segment(img) == []
    img = _rgbd_scene()
    img.intrinsics = None
    assert seg.segment(img) == []
    K, T = _camera()
    small = ImageEvent(0.0, np.zeros((5, 5, 3), np.uint8), None, None, K, "camera", T)  # < intrinsics
    assert np.all(np.isnan(colour_points(np.array([[4.0, 1.0, 1.0]]), small)))


def test_projection_pinhole_and_fisheye():
    K, T = _camera()
    uv, ok = project(np.array([[0.0, 0.0, 5.0], [1.0, 0.0, 4.0], [0.0, 0.0, -1.0]]), K)
    assert ok.tolist() == [True, True, False]
    assert np.allclose(uv[0], [32, 24]) and np.allclose(uv[1], [42, 24])
    F = CameraIntrinsics(200, 200, 20.0, 20.0, 100.0, 100.0, model="equidistant", D=np.zeros(4))
    uv, ok = project(np.array([[1.0, 0.0, 1.0], [0.0, 1.0, -0.05]]), F)  # 45 deg, and 93 deg off axis
    assert ok.all()
    assert np.allclose(uv[0], [100 + 20 * np.pi / 4, 100])
    assert np.allclose(uv[1], [100, 100 + 20 * (np.pi / 2 + np.arctan(0.05))])
    img = _rgbd_scene()
    c = colour_points(np.array([[4.0, 1.0, 1.0], [-3.0, 0.0, 1.0]]), img)  # in front / behind
    assert np.allclose(c[0], (200, 30, 30)) and np.all(np.isnan(c[1]))


def test_tracker_merges_duplicates_and_needs_two_sightings():
    cfg = ObjectsConfig()
    tr = ObjectTracker(cfg)
    rng = np.random.default_rng(0)
    pole = lambda: np.column_stack([rng.normal(0, 0.1, (200, 2)), rng.uniform(0, 3, 200)])
    tr.update([Segment(pole() + [5, 0, 0])], 0.0)
    assert len(tr.confirmed()) == 0
    tr.update([Segment(pole() + [5.05, 0, 0]), Segment(pole() + [-5, 0, 0])], 0.1)
    assert len(tr.confirmed()) == 1 and len(tr.tracks) == 2
    # a duplicate track of the first pole (e.g. from a split cluster) is merged into it
    tr.tracks[99] = tr.tracks[0].__class__(99, tr.tracks[0].points.copy(), tr.tracks[0].colors.copy(),
                                           tr.tracks[0].keys.copy(), tr.tracks[0].keys.copy(), 1)
    tr._set_geometry(tr.tracks[99])
    assert tr.merge_duplicates() == 1 and len(tr.tracks) == 2


def test_open_vocabulary_appearance_hook_replaces_colour_histograms():
    # a stand-in embedder (a real one is ClipEmbedder with a local weights file)
    def embed(crop):
        return np.concatenate([crop.reshape(-1, 3).mean(0), [1.0]])

    seg = RgbdSegmenter(CFG, appearance_fn=embed)
    tr = ObjectTracker(CFG)
    for t in (0.0, 0.1):
        tr.update(seg.segment(_rgbd_scene()), t)
    D = tr.objects()
    assert len(D) == 2 and D.appearance.shape[1] == 4
    assert np.allclose(np.linalg.norm(D.appearance, axis=1), 1.0)
    assert D.appearance[:, 0].max() > 0.6 and D.appearance[:, 2].max() > 0.6  # red one, blue one
    cfg = ObjectsConfig(clip_weights="/nonexistent/clip.pt")
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        make_embedder(cfg)


def test_segments_of_simulated_lidar_match_the_simulator_objects():
    """Against the simulator's per-point truth: segments are pure, and the poles, cars, trees and
    bins the sweep sees well come out as segments."""
    sim = pytest.importorskip("geoloc_ros.sim.sensors", reason="simulator not available")
    from scipy.spatial import cKDTree

    from geoloc_ros.geometry import transform_points
    from geoloc_ros.sim.scenario import make_runs
    from geoloc_ros.sim.world import make_world

    world = make_world(0)
    traj = make_runs(world, 0, scenario="demo")["mapping"]

    class Window:  # one 10 Hz sweep every 8 s of the mapping run
        def __init__(self, start_s):
            self.t0, self.duration_s, self.poses = traj.t0 + start_s, 0.1, traj.poses

    seg = LidarSegmenter(CFG)
    cls = {o.id: o.cls for o in world.objects}
    purity, found, wanted = [], 0, 0
    for start in np.arange(6.0, 180.0, 8.0):
        scan = next(iter(sim.lidar_scans(world, Window(start), rate_hz=10.0)))
        raw = transform_points(scan.T_base_sensor, scan.points)
        tree = cKDTree(raw)
        segs = seg.segment(scan)
        majority = set()
        for s in segs:
            ids = scan.object_ids[tree.query(s.points)[1]]
            ids = ids[ids > 0]
            if len(ids) == 0:
                continue
            vals, cnt = np.unique(ids, return_counts=True)
            purity.append(cnt.max() / len(ids))
            majority.add(int(vals[cnt.argmax()]))
        near = np.linalg.norm(raw[:, :2], axis=1) < 20.0
        ids, cnt = np.unique(scan.object_ids[near & (scan.object_ids > 0)], return_counts=True)
        for i, c in zip(ids, cnt):
            if cls[int(i)] in ("pole", "car", "tree", "bin") and c >= 60:
                wanted += 1
                found += int(i) in majority
    assert wanted >= 20, f"only {wanted} well-seen objects in the test sweeps"
    assert np.median(purity) > 0.95 and np.mean(purity) > 0.85
    assert found / wanted > 0.85, f"{found}/{wanted} well-seen objects segmented"
