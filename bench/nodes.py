"""Benchmark of the ROS 2 door over real DDS (rclpy + Fast DDS, in-process, private domain).

Rows: the all-in-one node (real pipeline, no map: dead reckoning from an initial pose) fed
IMU 200 Hz + wheel 20 Hz at the nominal rate, then a 10x IMU flood; and ``geoloc play``
converting an M3DGR-layout bag (Livox CustomMsg -> PointCloud2) as fast as it can.
Reported: receive -> estimate latency (mean, p95), pose messages per second, queue high water,
events dropped, play throughput. Never asserts timings.

    python -c "from pathlib import Path; import bench.nodes as b; b.run(Path('bench_out'))"
"""
from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.common import print_table, write_result


def _feed(node_pub_imu, node_pub_wheel, t0: float, dur_s: float, imu_hz: float, wheel_hz: float, paced: bool):
    from geoloc_ros.nodes.common import s_to_stamp
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import Imu
    n = int(dur_s * imu_hz)
    every = max(1, int(round(imu_hz / wheel_hz)))
    wall0 = time.monotonic()
    for i in range(n):
        t = t0 + i / imu_hz
        m = Imu()
        m.header.stamp, m.header.frame_id = s_to_stamp(t), "imu"
        m.linear_acceleration.z = 9.80665
        m.orientation_covariance[0] = -1.0
        node_pub_imu.publish(m)
        if i % every == 0:
            w = Odometry()
            w.header.stamp, w.header.frame_id = s_to_stamp(t), "odom"
            w.twist.twist.linear.x = 1.0
            node_pub_wheel.publish(w)
        if paced:
            delay = (i + 1) / imu_hz - (time.monotonic() - wall0)
            if delay > 0:
                time.sleep(delay)
    return t0 + n / imu_hz


def _node_rows(dur_s: float) -> dict:
    import rclpy
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from nav_msgs.msg import Odometry
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import Imu

    from geoloc_ros.geometry import se3
    from geoloc_ros.nodes.common import OUTPUT_QOS, SENSOR_QOS, pose_to_msg, s_to_stamp
    from geoloc_ros.nodes.geoloc import GeolocNode

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=(os.getpid() % 150) + 50)
    node = GeolocNode(context=ctx, overrides={"publish_tf": False, "node.publish_period_s": 0.0})
    cl = Node("bench_client", context=ctx)
    ex = MultiThreadedExecutor(num_threads=3, context=ctx)
    ex.add_node(node)
    ex.add_node(cl)
    threading.Thread(target=ex.spin, daemon=True).start()
    poses = []
    cl.create_subscription(PoseWithCovarianceStamped, "geoloc/pose", poses.append, OUTPUT_QOS)
    pi = cl.create_publisher(Imu, "imu", SENSOR_QOS)
    pw = cl.create_publisher(Odometry, "wheel_odom", SENSOR_QOS)
    pinit = cl.create_publisher(PoseWithCovarianceStamped, "initialpose", OUTPUT_QOS)
    t_end = time.monotonic() + 10
    while time.monotonic() < t_end and (pi.get_subscription_count() == 0 or pinit.get_subscription_count() == 0):
        time.sleep(0.05)
    out = {}
    try:
        t = _feed(pi, pw, 100.0, 0.3, 200, 20, paced=True)
        im = PoseWithCovarianceStamped()
        im.header.stamp, im.header.frame_id = s_to_stamp(t), "map"
        im.pose.pose = pose_to_msg(se3(None, [1.0, 2.0, 0.0]))
        im.pose.covariance = list(np.diag([0.1, 0.1, 0.1, 0.01, 0.01, 0.01]).reshape(-1))
        pinit.publish(im)
        time.sleep(0.3)
        for label, rate, paced in (("nominal", 200.0, True), ("flood_10x", 2000.0, True)):
            st = node.diag["imu"]
            st._lat_ms.clear()
            drop0, n0, acc0, rx0 = node.queue.dropped, len(poses), st.accepted, st.received
            rej0, lost0, miss0 = sum(st.rejected.values()), st.rejected["lost_in_transport"], st.missing
            node.queue.high_water = 0
            w0 = time.monotonic()
            t = _feed(pi, pw, t + 0.01, dur_s, rate, 20, paced)
            time.sleep(0.5)
            t_end = time.monotonic() + 30
            while time.monotonic() < t_end and node.pending():
                time.sleep(0.02)
            wall = time.monotonic() - w0
            mean, p95 = st.latency_ms()
            out[label] = {"latency_ms.mean": mean, "latency_ms.p95": p95,
                          "poses_per_s": (len(poses) - n0) / wall,
                          "imu_processed_fraction": (st.accepted - acc0) / max(1, int(dur_s * rate)),
                          "imu_received_fraction": (st.received - rx0) / max(1, int(dur_s * rate)),
                          "imu_rejected": sum(st.rejected.values()) - rej0,
                          "imu_lost_in_transport": st.rejected["lost_in_transport"] - lost0,
                          "imu_missing_by_stamp_gaps": st.missing - miss0,
                          "dropped": node.queue.dropped - drop0, "queue_high_water": node.queue.high_water}
    finally:
        ex.remove_node(node)
        ex.remove_node(cl)
        ex.shutdown()
        node.destroy_node()
        cl.destroy_node()
        rclpy.shutdown(context=ctx)
    return out


def _play_row(dur_s: float) -> dict:
    import rclpy
    from rclpy.node import Node

    from geoloc_ros.events import ImuEvent, ScanEvent
    from geoloc_ros.io.writer import BagWriter
    from geoloc_ros.play import play
    with tempfile.TemporaryDirectory() as d:
        bag = Path(d) / "bench.bag"
        rng = np.random.default_rng(0)
        with BagWriter(bag, "m3dgr") as w:
            for i in range(int(dur_s * 200)):
                t = 1_700_000_000.0 + i / 200
                w.write(ImuEvent(t=t, acc_mps2=np.array([0, 0, 9.8]), gyr_rps=np.zeros(3)))
                if i % 20 == 0:   # MID-360: 20k points per 10 Hz sweep
                    pts = rng.uniform(-30, 30, size=(20000, 3))
                    w.write(ScanEvent(t=t, points=pts, intensity=np.full(20000, 10.0),
                                      point_time_s=np.linspace(0, 0.1, 20000), frame_id="livox_frame"))
        ctx = rclpy.Context()
        rclpy.init(context=ctx, domain_id=(os.getpid() % 150) + 50)
        node = Node("geoloc_play", context=ctx)
        try:
            w0 = time.monotonic()
            st = play(bag, "m3dgr", rate=0.0, node=node, wait_subscribers_s=0.0)
            wall = time.monotonic() - w0
        finally:
            node.destroy_node()
            rclpy.shutdown(context=ctx)
    n = sum(st.published.values())
    return {"msgs_per_s": n / wall, "realtime_factor": dur_s / wall,
            "scans_per_s": st.published.get("points", 0) / wall}


def run(out_dir: Path, quick: bool = False) -> dict:
    t0 = time.perf_counter()
    dur = 2.0 if quick else 5.0
    rows = _node_rows(dur)
    playr = _play_row(dur)
    metrics = {}
    for label, r in rows.items():
        for k, v in r.items():
            metrics[f"node.{label}.{k}"] = float(v)
    metrics.update({f"play.{k}": float(v) for k, v in playr.items()})
    print_table(["load", "latency mean ms", "latency p95 ms", "poses/s", "IMU received", "IMU processed",
                 "rejected", "lost in DDS", "missing (gaps)", "dropped", "queue high water"],
                [[k, r["latency_ms.mean"], r["latency_ms.p95"], r["poses_per_s"], r["imu_received_fraction"],
                  r["imu_processed_fraction"], r["imu_rejected"], r["imu_lost_in_transport"],
                  r["imu_missing_by_stamp_gaps"], r["dropped"],
                  r["queue_high_water"]]
                 for k, r in rows.items()],
                title="geoloc_node over DDS (dead reckoning, IMU 200 Hz + wheel 20 Hz; flood = 10x IMU)")
    print_table(["play", "msgs/s", "scans/s", "x real time"],
                [["m3dgr Livox->PointCloud2", playr["msgs_per_s"], playr["scans_per_s"], playr["realtime_factor"]]],
                title="geoloc play (as fast as possible)")
    secs = time.perf_counter() - t0
    write_result("nodes", metrics, f"geoloc bench nodes{' --quick' if quick else ''}", secs, out_dir)
    return metrics
