"""Node helpers without DDS: message conversions round-trip, input guarding rejects what a live
sensor gets wrong, the bounded queue drops the oldest and counts, diagnostics carry the counts."""
from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2 wheels) not installed")

from geoloc_ros import events as ev  # noqa: E402
from geoloc_ros.geometry import rpy_to_matrix, se3  # noqa: E402
from geoloc_ros.nodes import common as C  # noqa: E402


def _pose(x, y, z, r, p, yaw):
    return se3(rpy_to_matrix(r, p, yaw), [x, y, z])


def test_stamp_round_trip_and_bad_values():
    for t in (0.0, 1.5, 1_700_000_000.123456789, 12.999999999):
        assert C.stamp_to_s(C.s_to_stamp(t)) == pytest.approx(t, abs=2e-9)
    assert C.s_to_stamp(float("nan")).sec == 0 and C.s_to_stamp(-3.0).sec == 0


def test_estimate_to_messages_round_trip():
    T = _pose(3.0, -2.0, 0.5, 0.02, -0.01, 2.5)
    A = np.random.default_rng(0).normal(size=(6, 6))
    cov = A @ A.T + np.eye(6) * 0.1
    est = ev.PoseEstimate(t=12.25, T_map_base=T, cov6=cov, twist=np.array([1.0, 0, 0, 0, 0, 0.2]))
    m = C.estimate_to_pose_msg(est, "map")
    assert m.header.frame_id == "map" and C.stamp_to_s(m.header.stamp) == pytest.approx(12.25)
    assert np.allclose(C.msg_to_pose(m.pose.pose), T, atol=1e-9)
    assert np.allclose(np.asarray(m.pose.covariance).reshape(6, 6), cov)
    o = C.estimate_to_odometry(est, "map", "base_link")
    assert o.child_frame_id == "base_link" and o.twist.twist.linear.x == 1.0
    assert o.twist.twist.angular.z == pytest.approx(0.2)


def test_candidates_pose_array_skips_no_fix_and_keeps_rank():
    good = [ev.Candidate(_pose(i, 0, 0, 0, 0, 0), np.eye(6), 1.0 - 0.1 * i, ev.CandidateStatus.OK)
            for i in range(3)]
    bad = ev.Candidate(None, None, 0.0, ev.CandidateStatus.NO_FIX, "no match")
    pa = C.candidates_to_pose_array([good[0], bad, good[1], good[2]], "map", 5.0)
    assert [p.position.x for p in pa.poses] == [0.0, 1.0, 2.0]


def test_pointcloud2_encoding_decodes_with_io():
    from geoloc_ros.msgs import pointcloud2_to_numpy
    P = np.random.default_rng(1).normal(size=(100, 3))
    P[5] = np.nan
    d = pointcloud2_to_numpy(C.numpy_to_pointcloud2(P, "map", 3.0))
    assert d["frame_id"] == "map" and len(d["xyz"]) == 99
    assert np.allclose(d["xyz"], np.delete(P, 5, axis=0), atol=1e-6)


def test_validate_event_rejects_bad_input_and_accepts_good():
    ok_imu = ev.ImuEvent(t=1.0, acc_mps2=np.array([0, 0, 9.8]), gyr_rps=np.zeros(3))
    assert C.validate_event(ok_imu) is None
    assert C.validate_event(ev.ImuEvent(t=1.0, acc_mps2=np.array([np.nan, 0, 9.8]), gyr_rps=np.zeros(3))) == "nan"
    assert C.validate_event(ev.ImuEvent(t=float("inf"), acc_mps2=np.zeros(3), gyr_rps=np.zeros(3))) == "bad_stamp"
    assert C.validate_event(ev.ScanEvent(t=1.0, points=np.zeros((0, 3)))) == "empty"
    assert C.validate_event(ev.ScanEvent(t=1.0, points=np.full((100, 3), np.nan))) == "empty"
    assert C.validate_event(ev.ScanEvent(t=1.0, points=np.ones((100, 3)))) is None
    assert C.validate_event(ev.WheelEvent(t=1.0, v_mps=float("nan"), yaw_rate_rps=0.0)) == "nan"
    g = ev.GnssEvent(t=1.0, lat_deg=float("nan"), lon_deg=1.0, alt_m=0.0, cov_enu_m2=None)
    assert C.validate_event(g) == "nan"
    g.status = ev.FixStatus.NO_FIX   # the filter's outage timer needs NO_FIX epochs
    assert C.validate_event(g) is None
    assert C.validate_event(ev.GnssEvent(t=1.0, lat_deg=95.0, lon_deg=1.0, alt_m=0.0, cov_enu_m2=None)) == "out_of_range"
    fix = ev.PoseFixEvent(t=1.0, T_map_base=np.eye(4), cov6=-np.eye(6))
    assert C.validate_event(fix) == "bad_covariance"


def test_event_queue_drops_oldest_and_counts():
    q = C.EventQueue(3)
    assert all(q.put(i) for i in range(3))
    assert q.put(3) is False and q.put(4) is False
    assert q.dropped == 2 and len(q) == 3 and q.high_water == 3
    assert [q.get(0.0) for _ in range(3)] == [2, 3, 4]
    assert q.get(0.01) is None


def test_diagnostics_carry_counts_levels_and_reasons():
    d = C.Diagnostics("geoloc", ["imu"])
    s = d["imu"]
    s.received = 5
    for _ in range(3):
        s.tick(0.004)
    s.reject("nan")
    s.reject("nan")
    s.reject("stale")
    arr = d.to_msg(10.0)
    st = arr.status[0]
    kv = {k.key: k.value for k in st.values}
    assert st.name == "geoloc: imu"
    assert kv["accepted"] == "3" and kv["rejected"] == "3" and kv["rejected.nan"] == "2"
    assert float(kv["latency_ms_mean"]) == pytest.approx(4.0)
    assert d.total_rejected() == 3


def test_object_markers_from_an_object_map():
    class Objs:
        centroids = np.array([[1.0, 2.0, 0.5], [np.nan, 0, 0], [4.0, 5.0, 1.0]])
        extents = np.array([[1.0, 1.0, 1.0], [1, 1, 1], [2.0, 1.0, 3.0]])

    class Map:
        objects = Objs()

    class Engine:
        map = Map()
    arr = C.object_map_markers(Engine(), "map", 1.0, associations=[(0, np.array([1.1, 2.1, 0.5]))])
    cubes = [m for m in arr.markers if m.ns == "map_objects"]
    assert len(cubes) == 2 and cubes[1].scale.z == 3.0            # the NaN object is skipped
    lines = [m for m in arr.markers if m.ns == "associations"]
    assert len(lines) == 1 and len(lines[0].points) == 2
    assert arr.markers[0].action == arr.markers[0].DELETEALL
    assert C.object_map_markers(None, "map", 0.0) is None


def test_summary_names_the_best_candidates():
    from geoloc_ros.nodes.geoloc import summarize_candidates
    c = ev.Candidate(_pose(10.0, -4.0, 0, 0, 0, math.radians(90)), np.eye(6), 0.87, ev.CandidateStatus.OK,
                     source="bev")
    s = summarize_candidates([c, c])
    assert s.startswith("2 candidate(s)") and "(10.00, -4.00, 90.0 deg)" in s and "[bev]" in s
    assert summarize_candidates([]) == "no candidate"


def test_validate_event_rejects_a_malformed_imu_sample():
    """The scheduler's IMU merge averages (3,) vectors: a sample of another shape is refused (the
    same rule decides what the node lets in and what the merge may fold)."""
    assert C.validate_event(ev.ImuEvent(t=1.0, acc_mps2=np.zeros(2), gyr_rps=np.zeros(3))) == "malformed"
    assert C.validate_event(ev.ImuEvent(t=1.0, acc_mps2=np.zeros(3), gyr_rps=np.zeros((3, 1)))) == "malformed"


def test_fusion_diagnostics_report_the_estimated_wheel_scale():
    """A robot engineer reads the wheel calibration the filter found off /diagnostics; a reset
    (no estimate) removes it rather than showing a stale value."""
    from geoloc_ros.nodes.diagnostics import ComponentStats, update_fusion_status
    fus, gn = ComponentStats("fusion"), ComponentStats("gnss")
    est = ev.PoseEstimate(1.0, np.eye(4), np.eye(6) * 0.01, mode="localized", wheel_scale=1.0237,
                          wheel_scale_std=0.0021)
    update_fusion_status(fus, gn, est, resets=0)
    assert fus.values["wheel_scale"] == 1.0237 and fus.values["wheel_scale_std"] == 0.0021
    update_fusion_status(fus, gn, None, resets=1)
    assert "wheel_scale" not in fus.values and "wheel_scale_std" not in fus.values


def test_validate_event_calls_fields_that_are_not_numbers_malformed():
    """A stamp or field that is not a number at all is refused with a reason, never an exception
    (the IMU merge asks the same question of every queued sample)."""
    assert C.validate_event(ev.ImuEvent(t="soon", acc_mps2=np.zeros(3), gyr_rps=np.zeros(3))) == "malformed"
    assert C.validate_event(ev.WheelEvent(t=1.0, v_mps="fast", yaw_rate_rps=0.0)) == "malformed"
    assert C.validate_event(ev.ImuEvent(t=1.0, acc_mps2=np.array(["a", "b", "c"]), gyr_rps=np.zeros(3))) == "malformed"
