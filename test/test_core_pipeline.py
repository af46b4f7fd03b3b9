"""pipeline.Localizer: how engine answers reach the filter, and what it survives.

The robot drives straight along +x at 2 m/s (IMU + wheel, no GNSS, no map); global fixes are
offered as an engine would offer them.
"""
import numpy as np
import pytest

from geoloc_ros.events import Candidate, CandidateStatus, ImuEvent, PoseFixEvent, ScanEvent, WheelEvent
from geoloc_ros.geometry import rot_z, se3
from geoloc_ros.pipeline import Localizer

V = 2.0
X0, Y0 = 50.0, -20.0


def truth(t):
    return se3(rot_z(0.0), [X0 + V * t, Y0, 0.0])


def cand(T, std=0.3):
    return Candidate(T_map_base=T, cov6=np.diag([std**2, std**2, 1.0, 0.01, 0.01, 0.003]), score=50.0,
                     status=CandidateStatus.OK, source="bev")


def drive(loc, t0, t1, imu_hz=200, wheel_hz=20):
    est = None
    for i in range(int(round((t1 - t0) * imu_hz))):
        t = t0 + i / imu_hz
        est = loc.process(ImuEvent(t, np.array([0.0, 0.0, 9.80665]), np.zeros(3))) or est
        if i % (imu_hz // wheel_hz) == 0:
            est = loc.process(WheelEvent(t, V, 0.0)) or est
    return est


def test_a_lone_wrong_fix_never_initializes_but_agreeing_fixes_do():
    loc = Localizer()
    drive(loc, 0.0, 1.0)
    wrong = truth(1.0)
    wrong[:3, 3] += [40.0, 25.0, 0.0]          # a confident place-recognition mistake
    assert not loc._offer(cand(wrong), 1.0, "bev")
    assert not loc.filter_initialized()
    accepted, prev = [], 1.0
    for t in (1.5, 3.0, 4.5):                  # three right answers over 6 m of travel
        drive(loc, prev, t)
        prev = t
        accepted.append(loc._offer(cand(truth(t)), t, "bev"))
    assert accepted == [False, False, True]
    assert loc.filter_initialized()
    est = drive(loc, 4.5, 6.0)
    err = np.linalg.norm(est.T_map_base[:2, 3] - truth(6.0)[:2, 3])
    assert err < 1.0, f"error {err:.2f} m after initialization"
    assert loc.stats["bev"].no_fix_reasons["awaiting fixes that agree through odometry"] == 3


def test_fixes_that_disagree_through_odometry_do_not_confirm_each_other():
    loc = Localizer()
    drive(loc, 0.0, 1.0)
    for k, t in enumerate((1.0, 4.0, 7.0)):
        if k:
            drive(loc, t - 3.0, t)
        T = truth(t)
        T[:3, 3] += [0.0, 6.0 * k, 0.0]        # each answer a different wrong street
        assert not loc._offer(cand(T), t, "bev")
    assert not loc.filter_initialized()


class _BrokenEngine:
    def localize(self, scan):
        raise RuntimeError("boom")


def test_an_engine_failure_is_counted_not_fatal():
    loc = Localizer()
    loc.bev = _BrokenEngine()
    pts = np.random.default_rng(0).normal(size=(500, 3))
    assert loc.process(ScanEvent(0.0, pts)) is None
    assert loc.stats["bev"].no_fix_reasons["engine error: RuntimeError"] == 1


def test_time_jump_backwards_resets_and_recovers():
    loc = Localizer()
    drive(loc, 0.0, 1.0)
    loc.cfg.confirm_fixes = 1
    assert loc._offer(cand(truth(1.0)), 1.0, "bev")
    assert loc.filter_initialized()
    drive(loc, 1.0, 2.0)
    loc.process(ImuEvent(-50.0, np.array([0.0, 0.0, 9.80665]), np.zeros(3)))   # bag looped
    assert loc.resets == 1 and not loc.filter_initialized()
    est = loc.process(ImuEvent(float("nan"), np.zeros(3), np.zeros(3)))
    assert est is None


def test_unsupported_event_is_a_type_error():
    with pytest.raises(TypeError, match="unsupported event"):
        Localizer().process(object.__new__(type("Weird", (), {"t": 0.0})))


def test_without_wheels_fixes_confirm_through_plausible_motion():
    loc = Localizer()
    for t in np.arange(0.0, 1.0, 0.005):       # IMU only: no wheel odometry
        loc.process(ImuEvent(float(t), np.array([0.0, 0.0, 9.80665]), np.zeros(3)))
    wrong = truth(1.0)
    wrong[:3, 3] += [0.0, 80.0, 0.0]
    assert not loc._offer(cand(wrong), 1.0, "bev")              # 80 m away: cannot agree with later ones
    assert [loc._offer(cand(truth(t)), t, "bev") for t in (2.0, 3.5, 5.0)] == [False, False, True]


def test_time_jump_forwards_resets_instead_of_integrating_the_gap():
    loc = Localizer()
    drive(loc, 0.0, 1.0)
    loc.cfg.confirm_fixes = 1
    assert loc._offer(cand(truth(1.0)), 1.0, "bev")
    drive(loc, 1.0, 1.5)
    loc.process(ImuEvent(1.5 + 3600.0, np.array([0.0, 0.0, 9.80665]), np.zeros(3)))   # clock jumped
    assert loc.resets == 1 and not loc.filter_initialized()
    assert loc.stats["filter"].no_fix_reasons["reset: time jumped forwards"] == 1


def test_a_lost_filter_is_reinitialized_by_fixes_that_agree_with_each_other():
    loc = Localizer()
    drive(loc, 0.0, 1.0)
    loc.cfg.confirm_fixes = 1
    lost = truth(1.0)
    lost[:3, 3] += [30.0, 0.0, 0.0]                 # initialized 30 m wrong, confidently
    assert loc._offer(cand(lost, std=0.05), 1.0, "bev")
    loc.cfg.confirm_fixes = 3
    prev, out = 1.0, []
    for t in (2.0, 3.5, 5.0):
        drive(loc, prev, t)
        prev = t
        out.append(loc._offer(cand(truth(t)), t, "bev"))
    assert out == [False, False, True], loc.stats["bev"].no_fix_reasons
    est = drive(loc, 5.0, 6.0)
    assert np.linalg.norm(est.T_map_base[:2, 3] - truth(6.0)[:2, 3]) < 1.0


def test_nan_points_are_dropped_and_counted_before_the_engines():
    loc = Localizer()
    seen = []
    loc._on_scan = seen.append                  # what the engines would get
    rng = np.random.default_rng(1)
    pts = rng.normal(size=(400, 3)).astype(np.float32)
    pts[:50, 0] = np.nan
    pts[50:60, 2] = np.inf
    inten = np.arange(400, dtype=np.float32)
    loc.process(ScanEvent(0.0, pts, intensity=inten))
    loc.process(ScanEvent(0.1, pts[60:]))       # a clean scan: nothing counted
    assert len(seen[0].points) == 340 and np.isfinite(seen[0].points).all()
    assert np.array_equal(seen[0].intensity, inten[60:])   # per-point fields stay aligned
    assert loc.counters["scan.nan_points_dropped"] == 60 and loc.counters["scan.nan_scans"] == 1
    assert pts[0, 0] != pts[0, 0], "the input scan was modified"


def test_wrong_frames_are_rejected_and_counted():
    loc = Localizer()
    drive(loc, 0.0, 1.0)
    n_imu = loc.filter.counters["imu.accepted"]
    imu = ImuEvent(1.0, np.array([0.0, 0.0, 9.80665]), np.zeros(3), frame_id="imu_link")
    assert loc.process(imu) is None                     # not converted to base_link
    assert loc.process(WheelEvent(1.0, V, 0.0, frame_id="odom")) is None
    assert loc.filter.counters["imu.accepted"] == n_imu
    fix = PoseFixEvent(1.0, truth(1.0), np.diag([0.1, 0.1, 1.0, 0.01, 0.01, 0.003]), source="initialpose",
                       frame_id="odom")
    assert loc.process(fix) is None and not loc.filter_initialized()
    seen = []
    loc._on_scan = seen.append
    pts = np.ones((10, 3))
    for k in range(3):
        loc.process(ScanEvent(1.0 + 0.1 * k, pts, frame_id="lidar"))
    loc.process(ScanEvent(1.3, pts, frame_id="camera"))   # the stream's frame changed
    assert len(seen) == 3
    c = loc.counters
    assert (c["imu.rejected.wrong frame"], c["wheel.rejected.wrong frame"], c["fix.rejected.wrong frame"],
            c["scan.rejected.wrong frame"]) == (1, 1, 1, 1)
    loc.cfg.confirm_fixes = 1
    fix.frame_id = "map"
    est = loc.process(fix)
    assert est is not None and est.counters["pipeline.imu.rejected.wrong frame"] == 1   # diagnostics see it


def test_a_lidar_dropout_is_counted_while_it_lasts():
    loc = Localizer()
    loc._on_scan = lambda s: None
    pts = np.ones((10, 3))
    for t in np.arange(0.0, 2.0, 0.1):
        loc.process(ScanEvent(float(t), pts))
    drive(loc, 2.0, 2.0 + loc.cfg.scan_timeout_s - 0.2)
    assert loc.counters["scan.gaps"] == 0
    drive(loc, 2.0 + loc.cfg.scan_timeout_s - 0.2, 7.0)   # 5 s without scans
    assert loc.counters["scan.gaps"] == 1 and "no scan for" in loc.reasons["scan"]
    loc.process(ScanEvent(7.0, pts))
    drive(loc, 7.0, 8.0)
    assert loc.counters["scan.gaps"] == 1


def _imu_only(loc, t0, t1, w_rps=0.0):
    for t in np.arange(t0, t1, 0.005):
        loc.process(ImuEvent(float(t), np.array([0.0, 0.0, 9.80665]), np.array([0.0, 0.0, w_rps])))


def test_without_wheels_fix_headings_must_turn_as_the_gyro_turned():
    """IMU only: three answers close enough in position whose headings turn 0.5 rad per 1.5 s
    confirm each other only when the gyro turned the robot that much too."""
    for w, expected in ((0.0, [False, False, False]), (0.5 / 1.5, [False, False, True])):
        loc = Localizer()
        prev, out = 0.0, []
        for k, t in enumerate((2.0, 3.5, 5.0)):
            _imu_only(loc, prev, t, w)
            prev = t
            T = truth(t)
            T[:3, :3] = rot_z(0.5 * k)
            out.append(loc._offer(cand(T), t, "bev"))
        assert out == expected, (w, out)
        assert loc.filter_initialized() == expected[-1]


def test_a_flood_is_counted_against_the_usual_rate():
    loc = Localizer()
    drive(loc, 0.0, 5.0)                        # 200 Hz IMU, 20 Hz wheel
    assert not any(k.endswith(".flood") for k in loc.counters)
    drive(loc, 5.0, 7.0, imu_hz=2000)           # 10x the IMU rate for 2 s
    drive(loc, 7.0, 10.0)
    assert loc.counters["imu.flood"] == 2 and "10.0x" in loc.reasons["imu"]
    assert loc.counters["wheel.flood"] == 0


def test_a_second_lidar_is_its_own_stream_not_a_wrong_frame():
    loc = Localizer()
    seen = []
    loc._on_scan = seen.append
    pts = np.ones((10, 3))
    T2 = se3(rot_z(0.0), [0.1, 0.0, -0.1])
    for k in range(4):
        loc.process(ScanEvent(0.1 * k, pts, frame_id="livox_frame"))
        loc.process(ScanEvent(0.1 * k + 0.05, pts, frame_id="avia_frame", T_base_sensor=T2))
    assert len(seen) == 8 and loc.counters["scan.rejected.wrong frame"] == 0


def test_engine_fixes_from_another_node_are_confirmed_like_in_process_ones():
    loc = Localizer()
    drive(loc, 0.0, 1.0)
    wrong = truth(1.0)
    wrong[:3, 3] += [60.0, 0.0, 0.0]
    loc.process(PoseFixEvent(1.0, wrong, np.diag([0.09, 0.09, 1.0, 0.01, 0.01, 0.003]), source="bev"))
    assert not loc.filter_initialized()
    assert loc.stats["bev"].no_fix_reasons["awaiting fixes that agree through odometry"] == 1
    # right answers from the other node confirm each other through odometry, as in-process ones do
    prev = 1.0
    for t in (1.5, 3.0, 4.5):
        drive(loc, prev, t)
        prev = t
        est = loc.process(PoseFixEvent(t, truth(t), np.diag([0.09, 0.09, 1.0, 0.01, 0.01, 0.003]), source="bev"))
        assert (est is not None) == (t == 4.5) and loc.filter_initialized() == (t == 4.5)
    est = drive(loc, 4.5, 6.0)
    assert np.linalg.norm(est.T_map_base[:2, 3] - truth(6.0)[:2, 3]) < 1.0
    assert loc.stats["bev"].accepted == 1 and loc.stats["bev"].fixes == 4


def test_late_fixes_from_another_node_are_confirmed_against_the_odometry_at_their_stamp():
    """Fixes stamped when the scan was taken but delivered 0.05 to 0.85 s later (another
    process's query time; later ones the node drops as stale): at 2 m/s the odometry then is up
    to 1.7 m ahead of the fix, over the 1 m within which they must agree here."""
    from geoloc_ros.config import GeolocConfig
    cfg = GeolocConfig()
    cfg.confirm_dist_m = 1.0
    loc = Localizer(cfg)
    prev = 0.0
    est = None
    for t_fix, latency_s in ((1.0, 0.85), (3.0, 0.05), (5.0, 0.8)):
        drive(loc, prev, t_fix + latency_s)
        prev = t_fix + latency_s
        est = loc.process(PoseFixEvent(t_fix, truth(t_fix), np.diag([0.09, 0.09, 1.0, 0.01, 0.01, 0.003]),
                                       source="bev"))
    assert est is not None and loc.filter_initialized(), dict(loc.stats["bev"].no_fix_reasons)
    est = drive(loc, prev, 8.0)
    assert np.linalg.norm(est.T_map_base[:2, 3] - truth(8.0)[:2, 3]) < 1.0


def test_an_operators_initial_pose_initializes_at_once():
    loc = Localizer()
    drive(loc, 0.0, 1.0)
    est = loc.process(PoseFixEvent(1.0, truth(1.0), np.diag([0.25, 0.25, 1.0, 0.01, 0.01, 0.01]),
                                   source="initialpose"))
    assert est is not None and loc.filter_initialized()
    assert loc.stats["bev"].fixes == 0


def test_a_malformed_fix_from_another_node_is_counted_by_the_filter():
    loc = Localizer()
    drive(loc, 0.0, 1.0)
    assert loc.process(PoseFixEvent(1.0, np.full((4, 4), np.nan), np.eye(6), source="bev")) is None
    assert not loc.filter_initialized() and loc.stats["bev"].fixes == 0
    assert loc.filter.counters["fix.rejected.NaN/inf or malformed pose/covariance"] == 1
