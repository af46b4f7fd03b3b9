"""The all-in-one node over real DDS (rclpy + Fast DDS), in-process on a private domain.

A real ``Localizer`` without a map (dead reckoning from an initial pose): the robot drives a
known straight line at 1 m/s; the node must publish ``geoloc/pose`` in ``map`` near the truth and
within its own covariance, report diagnostics, answer its services, and survive a burst of
malformed messages (NaN, empty cloud, wrong frame, stamps from the past, a 10x flood) while
staying correct.
"""
from __future__ import annotations

import math
import os
import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2 wheels) not installed")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import PoseWithCovarianceStamped  # noqa: E402
from nav_msgs.msg import Odometry, Path  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import Imu, NavSatFix, PointCloud2  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from geoloc_ros.geometry import se2_from_matrix  # noqa: E402
from geoloc_ros.nodes.common import OUTPUT_QOS, SENSOR_QOS, msg_to_pose, numpy_to_pointcloud2, s_to_stamp  # noqa: E402

T0 = 1000.0                       # stamp of the first message, s
X0, Y0, YAW0 = 10.0, 5.0, math.radians(30.0)
V = 1.0                           # forward speed, m/s
DRIVE_S = 3.0                     # driving time after the initial pose, s


def truth(t: float) -> tuple[float, float, float]:
    """(x, y, yaw) of base_link in map at stamp t: still until T0 + 0.5 s, then 1 m/s ahead."""
    d = V * max(0.0, t - (T0 + 0.5))
    return X0 + d * math.cos(YAW0), Y0 + d * math.sin(YAW0), YAW0


class World:
    """rclpy context + executor thread + the node under test + a test-side client node."""

    def __init__(self, **overrides):
        from geoloc_ros.nodes.geoloc import GeolocNode
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=(os.getpid() % 150) + 50)
        ov = {"publish_tf": False, "node.publish_period_s": 0.0}
        ov.update(overrides)
        self.node = GeolocNode(context=self.ctx, overrides=ov)
        self.client = Node("test_client", context=self.ctx)
        self.ex = MultiThreadedExecutor(num_threads=3, context=self.ctx)
        self.ex.add_node(self.node)
        self.ex.add_node(self.client)
        self.thread = threading.Thread(target=self.ex.spin, daemon=True)
        self.thread.start()
        self.poses: list[PoseWithCovarianceStamped] = []
        self.odoms: list[Odometry] = []
        self.paths: list[Path] = []
        self.diags: list[DiagnosticArray] = []
        c = self.client
        c.create_subscription(PoseWithCovarianceStamped, "geoloc/pose", self.poses.append, OUTPUT_QOS)
        c.create_subscription(Odometry, "geoloc/odometry", self.odoms.append, OUTPUT_QOS)
        c.create_subscription(Path, "geoloc/path", self.paths.append, OUTPUT_QOS)
        c.create_subscription(DiagnosticArray, "/diagnostics", self.diags.append, OUTPUT_QOS)
        self.pub_imu = c.create_publisher(Imu, "imu", SENSOR_QOS)
        self.pub_wheel = c.create_publisher(Odometry, "wheel_odom", SENSOR_QOS)
        self.pub_init = c.create_publisher(PoseWithCovarianceStamped, "initialpose", OUTPUT_QOS)
        self.pub_points = c.create_publisher(PointCloud2, "points", SENSOR_QOS)
        self.pub_gnss = c.create_publisher(NavSatFix, "gnss/fix", SENSOR_QOS)
        wait_for(lambda: all(p.get_subscription_count() > 0 for p in
                             (self.pub_imu, self.pub_wheel, self.pub_init, self.pub_points)), 10.0)

    def close(self):
        self.ex.remove_node(self.client)
        self.ex.remove_node(self.node)
        self.ex.shutdown()
        self.node.destroy_node()
        self.client.destroy_node()
        rclpy.shutdown(context=self.ctx)

    def call(self, name: str, timeout_s: float = 10.0) -> Trigger.Response:
        cli = self.client.create_client(Trigger, name)
        assert cli.wait_for_service(timeout_sec=timeout_s), f"service {name} not available"
        fut = cli.call_async(Trigger.Request())
        wait_for(fut.done, timeout_s)
        return fut.result()

    def stats(self, name: str):
        return self.node.diag[name]


def wait_for(pred, timeout_s: float) -> bool:
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        if pred():
            return True
        time.sleep(0.02)
    return bool(pred())


def imu_msg(t: float, frame: str = "imu", acc=(0.0, 0.0, 9.80665), gyr=(0.0, 0.0, 0.0)) -> Imu:
    m = Imu()
    m.header.stamp, m.header.frame_id = s_to_stamp(t), frame
    m.linear_acceleration.x, m.linear_acceleration.y, m.linear_acceleration.z = acc
    m.angular_velocity.x, m.angular_velocity.y, m.angular_velocity.z = gyr
    m.orientation_covariance[0] = -1.0
    return m


def wheel_msg(t: float, v: float, frame: str = "odom") -> Odometry:
    m = Odometry()
    m.header.stamp, m.header.frame_id = s_to_stamp(t), frame
    m.child_frame_id = "base_link"
    m.twist.twist.linear.x = v
    m.twist.covariance[0], m.twist.covariance[35] = 0.01, 0.001
    return m


def init_msg(t: float) -> PoseWithCovarianceStamped:
    from geoloc_ros.geometry import rot_z, se3
    from geoloc_ros.nodes.common import pose_to_msg
    m = PoseWithCovarianceStamped()
    m.header.stamp, m.header.frame_id = s_to_stamp(t), "map"
    m.pose.pose = pose_to_msg(se3(rot_z(YAW0), [X0, Y0, 0.0]))
    cov = np.diag([0.04, 0.04, 0.04, 0.01, 0.01, 0.003])
    m.pose.covariance = [float(v) for v in cov.reshape(-1)]
    return m


def drive(w: World, t_from: float, t_to: float, imu_hz: float = 100.0, wheel_hz: float = 20.0,
          pace_s: float = 0.002) -> float:
    """Publish IMU + wheel for stamps [t_from, t_to); returns t_to."""
    n = int(round((t_to - t_from) * imu_hz))
    every = int(round(imu_hz / wheel_hz))
    for i in range(n):
        t = t_from + i / imu_hz
        w.pub_imu.publish(imu_msg(t))
        if i % every == 0:
            w.pub_wheel.publish(wheel_msg(t, V if t >= T0 + 0.5 else 0.0))
        time.sleep(pace_s)
    return t_to


def check_pose(msg: PoseWithCovarianceStamped, n_sigma: float = 3.0, tol_m: float = 0.3):
    """The published pose is in map, has a valid covariance, and the truth is inside it."""
    from geoloc_ros.nodes.common import stamp_to_s
    assert msg.header.frame_id == "map"
    t = stamp_to_s(msg.header.stamp)
    x, y, yaw = se2_from_matrix(msg_to_pose(msg.pose.pose))
    xt, yt, yawt = truth(t)
    C = np.asarray(msg.pose.covariance).reshape(6, 6)
    assert np.all(np.isfinite(C)) and np.all(np.linalg.eigvalsh(0.5 * (C + C.T)) > 0)
    err = math.hypot(x - xt, y - yt)
    sig = math.sqrt(max(C[0, 0], C[1, 1]))
    assert err < tol_m + n_sigma * sig, f"pose error {err:.3f} m, sigma {sig:.3f} m at t={t:.2f}"
    assert err < 1.0, f"pose error {err:.3f} m at t={t:.2f}"
    dyaw = abs((yaw - yawt + math.pi) % (2 * math.pi) - math.pi)
    assert dyaw < math.radians(5) + n_sigma * math.sqrt(C[5, 5])
    return err, sig


@pytest.fixture(scope="module")
def world():
    w = World()
    yield w
    w.close()


def test_pose_arrives_in_map_near_truth(world):
    w = world
    t = drive(w, T0, T0 + 0.2)
    w.pub_init.publish(init_msg(T0 + 0.2))
    assert wait_for(lambda: w.stats("initialpose").accepted >= 1, 5.0), "initial pose not accepted"
    t = drive(w, t, T0 + 0.5 + DRIVE_S)
    assert wait_for(lambda: len(w.poses) > 50, 10.0), "no geoloc/pose"
    assert wait_for(lambda: w.node.pending() == 0, 10.0)
    time.sleep(0.3)
    last = w.poses[-1]
    err, sig = check_pose(last)
    # it moved: the last pose is about V * DRIVE_S ahead of the start
    x, y, _ = se2_from_matrix(msg_to_pose(last.pose.pose))
    assert math.hypot(x - X0, y - Y0) > 0.7 * V * DRIVE_S
    assert w.odoms and w.odoms[-1].header.frame_id == "map" and w.odoms[-1].child_frame_id == "base_link"
    assert w.odoms[-1].twist.twist.linear.x == pytest.approx(V, abs=0.3)
    assert wait_for(lambda: len(w.paths) > 0 and len(w.paths[-1].poses) >= 2, 5.0)
    assert w.paths[-1].header.frame_id == "map"


def test_diagnostics_report_inputs_and_engines(world):
    w = world
    assert wait_for(lambda: len(w.diags) >= 2, 5.0), "no /diagnostics"
    names = {s.name for s in w.diags[-1].status}
    for want in ("imu", "wheel_odom", "bev", "objects", "fusion", "gnss", "queue"):
        assert f"geoloc: {want}" in names
    imu = next(s for s in w.diags[-1].status if s.name == "geoloc: imu")
    kv = {k.key: k.value for k in imu.values}
    assert int(kv["accepted"]) > 100 and float(kv["rate_hz"]) >= 0.0 and "latency_ms_p95" in kv


def test_services_answer(world):
    w = world
    r = w.call("geoloc/global_localize")
    assert r.success is False and "no candidate" in r.message  # no map: no engine to run
    assert wait_for(lambda: w.node.pending() == 0, 5.0)


INPUTS = ("imu", "points", "wheel_odom", "gnss/fix")


def counts(w: World) -> dict:
    """What the node itself reports per input: received (callbacks), accepted (processed),
    rejected by reason (DDS losses apart), dropped from its queue, merged (IMU)."""
    out = {}
    for k in INPUTS:
        s = w.stats(k)
        out[k] = {"received": s.received, "accepted": s.accepted, "merged": w.node.queue.merged_by.get(k, 0),
                  "rejected": sum(v for r, v in s.rejected.items() if r != "lost_in_transport"),
                  "dropped": w.node.queue.dropped_by_input().get(k, 0),
                  "lost_in_transport": s.rejected.get("lost_in_transport", 0), "missing": s.missing}
    return out


def settle(w: World, timeout_s: float = 30.0, quiet_s: float = 0.5) -> bool:
    """Wait until the node holds nothing and no message arrived for ``quiet_s`` (DDS may still
    be delivering a backlog when the node's own queues run empty)."""
    t_end = time.monotonic() + timeout_s
    last, t_last = None, time.monotonic()
    while time.monotonic() < t_end:
        now_state = (sum(w.stats(k).received for k in INPUTS), w.node.pending())
        if now_state != last:
            last, t_last = now_state, time.monotonic()
        elif now_state[1] == 0 and time.monotonic() - t_last >= quiet_s:
            return True
        time.sleep(0.02)
    return False


def raw_cloud(pts: np.ndarray, t_s: float):
    """A PointCloud2 of ``pts`` (N, 3) as they are, NaN/inf included (numpy_to_pointcloud2 drops them)."""
    m = numpy_to_pointcloud2(np.zeros((len(pts), 3)), "lidar", t_s)
    m.data = np.asarray(pts).astype("<f4").tobytes()
    m.is_dense = False
    return m


def delta(a: dict, b: dict) -> dict:
    return {k: {f: b[k][f] - a[k][f] for f in a[k]} for k in a}


def test_malformed_burst_leaves_node_alive_and_correct(world):
    """Every bad message that reaches the node is rejected under a reason, none is processed,
    none goes uncounted. Delivery is best effort (SensorDataQoS), so the test asserts on what
    the node reports it received, not on what was sent."""
    w = world
    t = T0 + 0.5 + DRIVE_S
    c0 = counts(w)
    reasons0 = {k: dict(w.stats(k).rejected) for k in INPUTS}
    nan = float("nan")
    for i in range(20):
        w.pub_imu.publish(imu_msg(t + 0.001 * i, acc=(nan, 0.0, 9.8)))           # NaN
        w.pub_imu.publish(imu_msg(t + 0.001 * i, frame="some_other_imu"))        # wrong frame
        w.pub_imu.publish(imu_msg(t - 30.0 - 0.001 * i))                         # from the past
        w.pub_points.publish(numpy_to_pointcloud2(np.zeros((0, 3)), "lidar", t))  # empty cloud
        w.pub_points.publish(raw_cloud(np.full((50, 3), nan), t))                # all-NaN cloud
        w.pub_wheel.publish(wheel_msg(t, nan))                                   # NaN twist
        g = NavSatFix()
        g.header.stamp, g.header.frame_id = s_to_stamp(t), "gnss"
        g.latitude, g.longitude, g.altitude = nan, 200.0, 0.0
        g.status.status = 0
        w.pub_gnss.publish(g)                                                    # NaN lat
        time.sleep(0.02)
    assert settle(w)
    d = delta(c0, counts(w))
    for k, c in d.items():
        assert c["received"] > 0, f"{k}: the node counted nothing of the burst: {c}"
        assert c["accepted"] == 0, f"{k}: a malformed message was processed: {c}"
        # a sample may be folded into its neighbour by the IMU merge (same frame, 1 ms apart:
        # faster than the IMU can be) before the filter rejects the pair: counted as merged
        assert c["rejected"] + c["dropped"] + c.get("merged", 0) == c["received"], \
            f"{k}: messages not accounted for: {c}"
        assert w.node.unaccounted(k) == 0, k
    # ... each under its reason
    new = {k: {r: v - reasons0[k].get(r, 0) for r, v in w.stats(k).rejected.items()
               if v > reasons0[k].get(r, 0) and r != "lost_in_transport"} for k in INPUTS}
    assert set(new["imu"]) <= {"nan", "wrong_frame", "stale"} and new["imu"], new
    assert set(new["points"]) <= {"empty"} and set(new["wheel_odom"]) <= {"nan"}, new
    assert set(new["gnss/fix"]) <= {"nan", "out_of_range"}, new
    if d["imu"]["received"] >= 45:   # most of the burst arrived: all three kinds were seen
        assert set(new["imu"]) == {"nan", "wrong_frame", "stale"}, new
    assert w.node.resets == 0, "a burst of stale stamps must not reset the filter"
    # still alive and correct: keep driving, the pose follows the truth
    n_before = len(w.poses)
    drive(w, t, t + 1.0)
    assert wait_for(lambda: len(w.poses) > n_before + 20, 30.0), "node stopped publishing"
    assert wait_for(lambda: w.node.pending() == 0, 10.0)
    time.sleep(0.2)
    check_pose(w.poses[-1])
    # the rejections are in the diagnostics
    assert wait_for(lambda: any(s.name == "geoloc: imu" and any(k.key == "rejected.nan" for k in s.values)
                                for s in w.diags[-1].status), 5.0)


def test_flood_keeps_the_queue_bounded_and_the_node_correct(world):
    """1 s of IMU at 2 kHz (10x): the node keeps up by merging samples instead of dropping
    them, counts every message it received, reports what DDS lost (stamp gaps), keeps its
    queue within its bound, and stays correct."""
    w = world
    q = w.node.queue
    t = w.node._t_newest
    n = 2000  # 1 s of IMU at 2 kHz: 10x the nominal rate
    c0 = counts(w)
    q.reset_high_water()
    wall0 = time.monotonic()
    for i in range(n):
        w.pub_imu.publish(imu_msg(t + 0.01 + i * 5e-4))
        delay = (i + 1) * 5e-4 - (time.monotonic() - wall0)
        if delay > 0:
            time.sleep(delay)
    assert settle(w), "queue did not drain"
    d = delta(c0, counts(w))["imu"]
    assert d["received"] > 0, f"the node counted nothing of the flood: {d}"
    # every received sample was processed or merged into one that was (never silently lost)
    assert d["accepted"] + d["merged"] + d["rejected"] + d["dropped"] == d["received"], d
    assert d["dropped"] == 0, f"IMU samples were dropped: {d}"
    assert w.node.unaccounted("imu") == 0
    assert q.high_water <= q.maxlen
    # what DDS lost before the callback is reported as stamp gaps (an estimate: most of it)
    lost = n - d["received"]
    if lost > 0.1 * n:
        assert d["missing"] + d["lost_in_transport"] > 0.5 * lost, f"{lost} lost, reported: {d}"
    kv = {k.key: k.value for s in w.diags[-1].status if s.name == "geoloc: queue" for k in s.values}
    assert int(kv["capacity"]) == q.maxlen and "imu_merged" in kv
    n_before = len(w.poses)
    drive(w, t + 0.01 + n * 5e-4, t + 2.0)
    assert wait_for(lambda: len(w.poses) > n_before + 20, 10.0), "node stopped publishing after the flood"
    assert wait_for(lambda: w.node.pending() == 0, 10.0)
    time.sleep(0.2)
    check_pose(w.poses[-1])


def test_backward_time_jump_resets_and_reset_service(world):
    w = world
    assert math.isfinite(w.node._t_newest)
    resets = w.node.resets
    # a bag loop: stamps restart far in the past and keep coming -> one reset with a warning
    t = T0 - 100.0
    for i in range(400):
        w.pub_imu.publish(imu_msg(t + i * 0.01))
        time.sleep(0.001)
    assert wait_for(lambda: w.node.resets == resets + 1, 10.0), "time jump backwards did not reset"
    assert wait_for(lambda: w.node.pending() == 0, 10.0)
    assert w.node._t_newest < T0 - 90.0, "the node did not follow the new time base"
    r = w.call("geoloc/reset")
    assert r.success and w.node.resets == resets + 2


def test_global_localize_recovers_from_a_wrong_pose(world):
    """The operator's "where am I?": the best candidate re-initializes the filter, even far from
    the current estimate. The BEV engine is a stand-in answering a known pose (its accuracy is
    tested in test_bev_*); the filter, the node and DDS are real."""
    from geoloc_ros import events as ev
    from geoloc_ros.geometry import rot_z, se3
    w = world
    T_true = se3(rot_z(math.radians(-120.0)), [80.0, -40.0, 0.0])

    class FakeBev:
        def localize(self, scan):
            return [ev.Candidate(T_true.copy(), np.diag([0.04, 0.04, 0.1, 0.01, 0.01, 0.001]), 0.9,
                                 ev.CandidateStatus.OK, "fake", "bev")]
    t = drive(w, 2000.0, 2000.3)          # after the reset of the previous test: a fresh start
    assert wait_for(lambda: w.node.pending() == 0, 30.0)
    w.node.localizer.bev = FakeBev()
    w.node.localizer.last_scan = ev.ScanEvent(t=t, points=np.ones((100, 3)))
    try:
        r = w.call("geoloc/global_localize")
        assert r.success and "(80.00, -40.00, -120.0 deg)" in r.message and "re-initialized" in r.message
        n0 = len(w.poses)
        drive(w, t + 0.01, t + 0.5)
        assert wait_for(lambda: len(w.poses) > n0 + 10, 30.0)
        assert wait_for(lambda: w.node.pending() == 0, 30.0)
        time.sleep(0.2)
        x, y, yaw = se2_from_matrix(msg_to_pose(w.poses[-1].pose.pose))
        assert math.hypot(x - 80.0, y + 40.0) < 2.0, (x, y)
        assert abs((yaw - math.radians(-120.0) + math.pi) % (2 * math.pi) - math.pi) < math.radians(5)
    finally:
        w.node.localizer.bev = None


def test_a_node_not_localized_reports_its_bad_inputs(world):
    """Before the filter initializes there is no estimate; the pipeline's input checks (here: a
    LiDAR dropout, "no scan for N s") still reach /diagnostics."""
    w = world
    key = "counter.pipeline.scan.gaps"
    before = int(w.node.diag["fusion"].values.get(key, 0))
    assert w.call("geoloc/reset").success                     # forget any initial pose
    pts = np.random.default_rng(3).uniform(-10.0, 10.0, size=(300, 3))
    t = 3000.0
    for k in range(3):                                        # LiDAR at 10 Hz ...
        w.pub_points.publish(numpy_to_pointcloud2(pts, "lidar", t + 0.1 * k))
        drive(w, t + 0.1 * k, t + 0.1 * (k + 1))
    drive(w, t + 0.3, t + 3.0)                                # ... then silent for 2.7 s (timeout 2 s)
    assert wait_for(lambda: w.node.pending() == 0, 10.0)
    assert not w.node.localizer.filter_initialized()
    assert w.node.localizer.counters["scan.gaps"] > 0, dict(w.node.localizer.counters)

    def fusion_status():
        st = next((s for s in w.diags[-1].status if s.name == "geoloc: fusion"), None) if w.diags else None
        return st, ({kv.key: kv.value for kv in st.values} if st is not None else {})

    def reported():
        st, kv = fusion_status()
        return st is not None and st.message.startswith("no estimate yet") and int(kv.get(key, 0)) > before
    assert wait_for(reported, 5.0), fusion_status()
    st, kv = fusion_status()
    assert "no scan for" in kv.get("reason.pipeline.scan", ""), kv
    assert kv["mode"] == "no estimate" and "sigma_x_m" not in kv, kv   # nothing left of the estimate before the reset


def test_nan_points_of_a_live_cloud_are_counted(world):
    """A live cloud with some NaN/inf points is used (its finite points) and its bad points are
    counted by the pipeline's input checks, so /diagnostics shows them (the decoder keeps them
    for that instead of dropping them silently)."""
    w = world
    key = "counter.pipeline.scan.nan_scans"
    before_scans = int(w.node.localizer.counters["scan.nan_scans"])
    before_pts = int(w.node.localizer.counters["scan.nan_points_dropped"])
    pts = np.random.default_rng(4).uniform(-10.0, 10.0, size=(300, 3))
    pts[:40] = np.nan
    pts[40:45, 2] = np.inf
    t = 4000.0
    for k in range(3):
        w.pub_points.publish(raw_cloud(pts, t + 0.1 * k))
        drive(w, t + 0.1 * k, t + 0.1 * (k + 1))
    assert settle(w)
    got_scans = int(w.node.localizer.counters["scan.nan_scans"]) - before_scans
    got_pts = int(w.node.localizer.counters["scan.nan_points_dropped"]) - before_pts
    assert got_scans >= 1, (dict(w.node.localizer.counters), vars(w.stats("points")))
    assert got_pts == 45 * got_scans, (got_pts, got_scans)

    def reported():
        st = next((s for s in w.diags[-1].status if s.name == "geoloc: fusion"), None) if w.diags else None
        return st is not None and int({kv.key: kv.value for kv in st.values}.get(key, 0)) > before_scans
    assert wait_for(reported, 5.0)
