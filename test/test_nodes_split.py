"""The split layout over real DDS: bev_localizer and object_localizer publish fixes that
fusion_node (real filter) consumes; object_localizer follows fusion_node's local odometry.
The engines are stand-ins that answer the true pose (their accuracy is tested in test_bev_* /
test_objects_*); what is tested here is the wiring, the message types, frames and QoS.
fusion_node treats the engines' fixes as the all-in-one node treats its engines' answers: they
initialize the filter only once ``confirm_fixes`` agree through odometry over ``confirm_travel_m``,
so the robot either drives (wheel odometry, 10 m) or is given an initial pose (stationary).
Also: with use_sim_time, /clock jumping backwards resets the filter."""
from __future__ import annotations

import math
import os
import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2 wheels) not installed")
from geometry_msgs.msg import PoseWithCovarianceStamped  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import Imu, PointCloud2  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from geoloc_ros import events as ev  # noqa: E402
from geoloc_ros.geometry import rot_z, se2_from_matrix, se3  # noqa: E402
from geoloc_ros.nodes.common import (OUTPUT_QOS, SENSOR_QOS, msg_to_pose, numpy_to_pointcloud2,  # noqa: E402
                                     pose_to_msg, s_to_stamp)

T0 = 500.0
TRUE = se3(rot_z(math.radians(-60.0)), [42.0, -17.0, 0.0])   # the robot's pose at T0


def truth(t, v_mps):
    """The robot's pose at t: from TRUE straight ahead (base_link +x) at v_mps."""
    return TRUE @ se3(np.eye(3), [v_mps * (t - T0), 0.0, 0.0])


class FakeBev:
    """Answers the true pose at the scan's stamp with a 0.3 m / 2 deg covariance for any scan."""

    def __init__(self, v_mps):
        self.calls, self.v_mps, self.t_last = 0, v_mps, None

    def localize(self, scan):
        self.calls += 1
        self.t_last = scan.t
        return [ev.Candidate(truth(scan.t, self.v_mps), np.diag([0.09, 0.09, 0.25, 0.01, 0.01, 0.0012]), 0.9,
                             ev.CandidateStatus.OK, "fake", "bev")]


class FakeObjects:
    """Completes a 'submap' every 5 scans and answers the true pose at its last scan (4-DoF)."""

    def __init__(self, v_mps):
        self.scans, self.odom, self.v_mps, self.t = 0, [], v_mps, T0

    def add_scan(self, scan, T_odom_base):
        self.scans += 1
        self.odom.append(np.asarray(T_odom_base))
        self.t = scan.t

    def add_image(self, img, T_odom_base):
        pass

    def step(self):
        if self.scans and self.scans % 5 == 0:
            return ev.Candidate(truth(self.t, self.v_mps), np.diag([0.04, 0.04, 0.04, 0.01, 0.01, 0.0008]),
                                12.0, ev.CandidateStatus.OK, "fake", "objects", {})
        return None


def wait(pred, timeout_s):
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end and not pred():
        time.sleep(0.02)
    return pred()


def imu_msg(t):
    m = Imu()
    m.header.stamp, m.header.frame_id = s_to_stamp(t), "imu"
    m.linear_acceleration.z = 9.80665
    m.orientation_covariance[0] = -1.0
    return m


def stamp(m):
    return m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec


def wheel_msg(t, v_mps):
    m = Odometry()
    m.header.stamp, m.child_frame_id = s_to_stamp(t), "base_link"
    m.twist.twist.linear.x = v_mps
    m.twist.covariance[0], m.twist.covariance[35] = 0.01, 0.001
    return m


def initial_pose_msg(t, T, std_m):
    m = PoseWithCovarianceStamped()
    m.header.stamp, m.header.frame_id = s_to_stamp(t), "map"
    m.pose.pose = pose_to_msg(T)
    m.pose.covariance = np.diag([std_m**2, std_m**2, 1.0, 0.01, 0.01, 0.01]).ravel().tolist()
    return m


@pytest.mark.parametrize("start", ["drives", "initial_pose"])
def test_split_layout_fixes_flow_to_fusion(start):
    """``drives``: 10 m at 2.5 m/s with wheel odometry, the BEV fixes confirm each other and
    initialize fusion_node. ``initial_pose``: standing still (BEV fixes never confirm), an
    operator's initial pose 1 m off initializes it, and the BEV fixes pull it onto the truth."""
    from geoloc_ros.nodes.bev_localizer import BevLocalizerNode
    from geoloc_ros.nodes.fusion import FusionNode
    from geoloc_ros.nodes.object_localizer import ObjectLocalizerNode
    v = 2.5 if start == "drives" else 0.0
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=(os.getpid() % 150) + 50)
    bev_engine, obj_engine = FakeBev(v), FakeObjects(v)
    ov = {"publish_tf": False, "bev_period_s": 0.5}
    fusion = FusionNode(context=ctx, overrides=ov)
    bev = BevLocalizerNode(context=ctx, overrides=ov, engine=bev_engine)
    obj = ObjectLocalizerNode(context=ctx, overrides=ov, engine=obj_engine)
    client = Node("split_client", context=ctx)
    ex = MultiThreadedExecutor(num_threads=4, context=ctx)
    for n in (fusion, bev, obj, client):
        ex.add_node(n)
    threading.Thread(target=ex.spin, daemon=True).start()
    poses, bev_fixes, obj_fixes, local = [], [], [], []
    client.create_subscription(PoseWithCovarianceStamped, "geoloc/pose", poses.append, OUTPUT_QOS)
    client.create_subscription(PoseWithCovarianceStamped, "geoloc/bev_fix", bev_fixes.append, OUTPUT_QOS)
    client.create_subscription(PoseWithCovarianceStamped, "geoloc/object_fix", obj_fixes.append, OUTPUT_QOS)
    client.create_subscription(Odometry, "geoloc/local_odometry", local.append, OUTPUT_QOS)
    pub_imu = client.create_publisher(Imu, "imu", SENSOR_QOS)
    pub_pts = client.create_publisher(PointCloud2, "points", SENSOR_QOS)
    pub_wheel = client.create_publisher(Odometry, "wheel_odom", SENSOR_QOS)
    pub_init = client.create_publisher(PoseWithCovarianceStamped, "initialpose", OUTPUT_QOS)
    n_imu = 400                                   # 4 s of IMU at 100 Hz, wheels at 20 Hz, scans at 10 Hz
    try:
        assert wait(lambda: pub_imu.get_subscription_count() >= 1 and pub_pts.get_subscription_count() >= 2
                    and pub_wheel.get_subscription_count() >= 1 and pub_init.get_subscription_count() >= 1, 10)
        cloud = np.random.default_rng(0).uniform(-20, 20, size=(2000, 3))
        T_init = TRUE @ se3(np.eye(3), [0.6, -0.8, 0.0])   # the operator's click, 1 m off
        for i in range(n_imu):
            t = T0 + i * 0.01
            pub_imu.publish(imu_msg(t))
            if i % 5 == 0:
                pub_wheel.publish(wheel_msg(t, v))
            if i % 10 == 5:
                pub_pts.publish(numpy_to_pointcloud2(cloud, "lidar", t))
            if i == 115:   # 3 BEV fixes sent, 2.9 m driven or standing: none may have initialized it
                assert not fusion.localizer.filter_initialized()
            if start == "initial_pose" and i in (120, 130):   # best effort: sent twice
                pub_init.publish(initial_pose_msg(t, T_init, 1.0))
            time.sleep(0.003)
        t_end = T0 + (n_imu - 1) * 0.01
        assert wait(lambda: len(bev_fixes) >= 2, 10.0), "bev_localizer published no fix"
        assert bev_fixes[0].header.frame_id == "map"
        assert np.allclose(msg_to_pose(bev_fixes[0].pose.pose), truth(stamp(bev_fixes[0]), v), atol=1e-5)
        # fusion_node initialised (from confirmed BEV fixes, or the initial pose) and publishes
        # the true pose in map
        assert wait(lambda: len(poses) > 10 and stamp(poses[-1]) > t_end - 0.2, 10.0), \
            f"fusion_node published {len(poses)} poses"
        last = poses[-1]
        assert last.header.frame_id == "map"
        t_last = stamp(last)
        x, y, yaw = se2_from_matrix(msg_to_pose(last.pose.pose))
        xt, yt, yawt = se2_from_matrix(truth(t_last, v))
        assert math.hypot(x - xt, y - yt) < 0.5 and abs(yaw - yawt) < math.radians(3), (x, y, yaw, xt, yt)
        # the BEV fixes reached the filter; while not localized none did alone
        bev_stats = fusion.localizer.stats["bev"]
        assert bev_stats.accepted >= 1
        waited = bev_stats.no_fix_reasons["awaiting fixes that agree through odometry"]
        assert waited >= 2, dict(bev_stats.no_fix_reasons)   # drives: < 5 m; initial_pose: before it
        fusion._update_engine_diag()                          # ... and /diagnostics says so
        d = fusion.diag["bev"]
        assert d.values["no_fix.awaiting fixes that agree through odometry"] == waited
        assert d.values["filter_accepted"] == bev_stats.accepted and f"{bev_stats.accepted} accepted" in d.message
        # fusion_node's local odometry reaches object_localizer, whose fixes reach fusion_node
        assert local and local[-1].header.frame_id == "odom"
        assert wait(lambda: len(obj_fixes) >= 1, 10.0), dict(obj.diag["points"].rejected)
        assert wait(lambda: fusion.diag["objects"].accepted >= 1, 5.0)
        assert wait(lambda: fusion.localizer.stats["objects"].accepted >= 1, 5.0), \
            dict(fusion.localizer.stats["objects"].no_fix_reasons)
        assert obj_engine.odom and np.all(np.isfinite(obj_engine.odom[-1]))
        # the service on bev_localizer answers with the candidates
        cli = client.create_client(Trigger, "geoloc/global_localize")
        assert cli.wait_for_service(timeout_sec=5.0)
        fut = cli.call_async(Trigger.Request())
        assert wait(fut.done, 10.0)
        r = fut.result()
        xs, ys, _ = se2_from_matrix(truth(bev_engine.t_last, v))   # the newest scan's true pose
        assert r.success and f"({xs:.2f}, {ys:.2f}, -60.0 deg)" in r.message, (r.message, xs, ys)
    finally:
        for n in (fusion, bev, obj, client):
            ex.remove_node(n)
        ex.shutdown()
        for n in (fusion, bev, obj, client):
            n.destroy_node()
        rclpy.shutdown(context=ctx)


def test_sim_time_clock_jump_backwards_resets_the_filter():
    from geoloc_ros.nodes.geoloc import GeolocNode
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=(os.getpid() % 150) + 50)
    node = GeolocNode(context=ctx, overrides={"publish_tf": False},
                      parameter_overrides=[Parameter("use_sim_time", value=True)])
    client = Node("clock_client", context=ctx)
    ex = MultiThreadedExecutor(num_threads=3, context=ctx)
    ex.add_node(node)
    ex.add_node(client)
    threading.Thread(target=ex.spin, daemon=True).start()
    pub = client.create_publisher(Clock, "/clock", 10)
    try:
        assert wait(lambda: pub.get_subscription_count() >= 1, 10.0)

        def tick(t):
            c = Clock()
            c.clock = s_to_stamp(t)
            pub.publish(c)
        for i in range(20):
            tick(2000.0 + 0.1 * i)
            time.sleep(0.02)
        assert wait(lambda: node.get_clock().now().nanoseconds * 1e-9 > 2001.0, 5.0)
        time.sleep(0.3)
        assert node.resets == 0
        for i in range(10):                         # the bag loops
            tick(1000.0 + 0.1 * i)
            time.sleep(0.02)
        assert wait(lambda: node.resets == 1, 5.0), "clock jump backwards did not reset the filter"
    finally:
        ex.remove_node(node)
        ex.remove_node(client)
        ex.shutdown()
        node.destroy_node()
        client.destroy_node()
        rclpy.shutdown(context=ctx)
