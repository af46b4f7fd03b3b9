"""The split layout over real DDS: bev_localizer and object_localizer publish fixes that
fusion_node (real filter) consumes; object_localizer follows fusion_node's local odometry.
The engines are stand-ins that answer a known pose (their accuracy is tested in test_bev_* /
test_objects_*); what is tested here is the wiring, the message types, frames and QoS.
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
from geoloc_ros.nodes.common import OUTPUT_QOS, SENSOR_QOS, msg_to_pose, numpy_to_pointcloud2, s_to_stamp  # noqa: E402

T0 = 500.0
TRUE = se3(rot_z(math.radians(-60.0)), [42.0, -17.0, 0.0])


class FakeBev:
    """Answers the true pose with a 0.3 m / 2 deg covariance for any usable scan."""

    def __init__(self):
        self.calls = 0

    def localize(self, scan):
        self.calls += 1
        return [ev.Candidate(TRUE.copy(), np.diag([0.09, 0.09, 0.25, 0.01, 0.01, 0.0012]), 0.9,
                             ev.CandidateStatus.OK, "fake", "bev")]


class FakeObjects:
    """Completes a 'submap' every 5 scans and answers the true pose (4-DoF)."""

    def __init__(self):
        self.scans, self.odom = 0, []

    def add_scan(self, scan, T_odom_base):
        self.scans += 1
        self.odom.append(np.asarray(T_odom_base))

    def add_image(self, img, T_odom_base):
        pass

    def step(self):
        if self.scans and self.scans % 5 == 0:
            return ev.Candidate(TRUE.copy(), np.diag([0.04, 0.04, 0.04, 0.01, 0.01, 0.0008]), 12.0,
                                ev.CandidateStatus.OK, "fake", "objects", {})
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


def test_split_layout_fixes_flow_to_fusion():
    from geoloc_ros.nodes.bev_localizer import BevLocalizerNode
    from geoloc_ros.nodes.fusion import FusionNode
    from geoloc_ros.nodes.object_localizer import ObjectLocalizerNode
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=(os.getpid() % 150) + 50)
    bev_engine, obj_engine = FakeBev(), FakeObjects()
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
    try:
        assert wait(lambda: pub_imu.get_subscription_count() >= 1 and pub_pts.get_subscription_count() >= 2, 10)
        cloud = np.random.default_rng(0).uniform(-20, 20, size=(2000, 3))
        for i in range(300):                      # 3 s of IMU at 100 Hz, scans at 10 Hz
            t = T0 + i * 0.01
            pub_imu.publish(imu_msg(t))
            if i % 10 == 5:
                pub_pts.publish(numpy_to_pointcloud2(cloud, "lidar", t))
            time.sleep(0.003)
        assert wait(lambda: len(bev_fixes) >= 2, 10.0), "bev_localizer published no fix"
        assert bev_fixes[0].header.frame_id == "map"
        assert np.allclose(msg_to_pose(bev_fixes[0].pose.pose), TRUE, atol=1e-6)
        # fusion_node initialised from the BEV fix and publishes the true pose in map
        assert wait(lambda: len(poses) > 10, 10.0), "fusion_node published no pose"
        x, y, yaw = se2_from_matrix(msg_to_pose(poses[-1].pose.pose))
        assert poses[-1].header.frame_id == "map"
        assert math.hypot(x - 42.0, y + 17.0) < 0.5 and abs(yaw - math.radians(-60)) < math.radians(3)
        assert fusion.diag["bev"].accepted >= 1
        # fusion_node's local odometry reaches object_localizer, whose fixes reach fusion_node
        assert local and local[-1].header.frame_id == "odom"
        assert wait(lambda: len(obj_fixes) >= 1, 10.0), dict(obj.diag["points"].rejected)
        assert wait(lambda: fusion.diag["objects"].accepted >= 1, 5.0)
        assert obj_engine.odom and np.all(np.isfinite(obj_engine.odom[-1]))
        # the service on bev_localizer answers with the candidates
        cli = client.create_client(Trigger, "geoloc/global_localize")
        assert cli.wait_for_service(timeout_sec=5.0)
        fut = cli.call_async(Trigger.Request())
        assert wait(fut.done, 10.0)
        r = fut.result()
        assert r.success and "(42.00, -17.00, -60.0 deg)" in r.message, r.message
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
