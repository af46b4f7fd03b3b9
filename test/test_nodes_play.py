"""``geoloc play`` over real DDS: a bag in a dataset layout (M3DGR: ROS 1, Livox CustomMsg, IMU
in g, GPS-time GNSS stamps; Oxford Spires: ROS 2 PointCloud2) is published on the node's topics
with /clock, and the node decodes it back to what was written."""
from __future__ import annotations

import math
import os
import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2 wheels) not installed")
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import Imu, NavSatFix, PointCloud2  # noqa: E402

from geoloc_ros.events import FixStatus, GnssEvent, ImuEvent, ScanEvent, WheelEvent  # noqa: E402
from geoloc_ros.nodes.common import SENSOR_QOS, stamp_to_s  # noqa: E402

T0 = 1_700_000_000.0   # unix s
DUR = 2.0


def _scan(t: float, frame: str) -> ScanEvent:
    """A ring of 360 points at 8 m with a per-point sweep time over 0.1 s."""
    a = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    pts = np.column_stack([8 * np.cos(a), 8 * np.sin(a), 0.5 * np.sin(3 * a)])
    return ScanEvent(t=t, points=pts, intensity=np.full(360, 50.0), point_time_s=np.linspace(0, 0.099, 360),
                     ring=np.zeros(360, np.int32), frame_id=frame)


def write_bag(path, profile: str, lidar_frame: str, dur_s: float = DUR):
    from geoloc_ros.io.writer import BagWriter
    n_imu = int(dur_s * 100)
    with BagWriter(path, profile) as w:
        for i in range(n_imu):
            t = T0 + i * 0.01
            w.write(ImuEvent(t=t, acc_mps2=np.array([0.0, 0.0, 9.80665]), gyr_rps=np.zeros(3)))
            if i % 10 == 0:
                w.write(_scan(t + 0.005, lidar_frame))
            if profile == "m3dgr" and i % 5 == 0:
                w.write(WheelEvent(t=t + 0.002, v_mps=0.5, yaw_rate_rps=0.0))
            if profile == "m3dgr" and i % 20 == 0:
                w.write(GnssEvent(t=t + 0.003, lat_deg=31.0, lon_deg=121.4, alt_m=10.0,
                                  cov_enu_m2=np.eye(3) * 4.0, status=FixStatus.FIX))
    return w.path


class Rig:
    def __init__(self, profile: str):
        from geoloc_ros.nodes.geoloc import GeolocNode
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=(os.getpid() % 150) + 50)
        self.node = GeolocNode(context=self.ctx, overrides={"profile": profile, "publish_tf": False})
        self.client = Node("play_test", context=self.ctx)
        self.ex = MultiThreadedExecutor(num_threads=3, context=self.ctx)
        self.ex.add_node(self.node)
        self.ex.add_node(self.client)
        threading.Thread(target=self.ex.spin, daemon=True).start()
        self.clock, self.imu, self.gnss, self.points = [], [], [], []
        self.client.create_subscription(Clock, "/clock", self.clock.append, 10)
        self.client.create_subscription(Imu, "imu", self.imu.append, SENSOR_QOS)
        self.client.create_subscription(NavSatFix, "gnss/fix", self.gnss.append, SENSOR_QOS)
        self.client.create_subscription(PointCloud2, "points", self.points.append, SENSOR_QOS)

    def play(self, bag, profile, rate=2.0):
        from geoloc_ros.play import play
        player = Node("geoloc_play", context=self.ctx)
        stats = play(bag, profile, rate=rate, node=player)
        time.sleep(0.5)
        wait(lambda: self.node.pending() == 0, 10.0)
        player.destroy_node()
        return stats

    def close(self):
        self.ex.remove_node(self.node)
        self.ex.remove_node(self.client)
        self.ex.shutdown()
        self.node.destroy_node()
        self.client.destroy_node()
        rclpy.shutdown(context=self.ctx)


def wait(pred, timeout_s):
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end and not pred():
        time.sleep(0.02)
    return pred()


def test_play_m3dgr_livox_and_quirks_reach_the_node(tmp_path):
    bag = write_bag(tmp_path / "run.bag", "m3dgr", "livox_frame")
    rig = Rig("m3dgr")
    try:
        stats = rig.play(bag, "m3dgr")
        # gnss_comm (receiver_pvt) is not importable in rclpy: not published, but its accuracy
        # becomes the NavSatFix covariance (the dataset's fixes carry none)
        assert "/ublox_driver/receiver_pvt" not in stats.published
        assert stats.published.get("points") == DUR * 10 and stats.published.get("imu") == DUR * 100
        n = rig.node.diag
        # every cloud that arrived decoded (none rejected); one the node had no time for is
        # dropped from its bounded queue, counted (a loaded machine): none is unaccounted
        assert n["points"].received >= 0.5 * DUR * 10 and not n["points"].rejected, dict(n["points"].rejected)
        assert n["points"].accepted >= 1 and rig.node.unaccounted("points") == 0
        assert n["imu"].accepted + rig.node.queue.merged_by["imu"] >= 0.5 * DUR * 100, dict(n["imu"].rejected)
        assert n["gnss/fix"].accepted >= 1, dict(n["gnss/fix"].rejected)
        # Livox CustomMsg became PointCloud2 with the per-point time; the node decoded it with the
        # profile's extrinsic
        scan = rig.node.localizer.last_scan
        assert scan is not None and len(scan.points) == 360 and scan.frame_id == "livox_frame"
        assert np.nanmin(scan.point_time_s) >= 0 and np.nanmax(scan.point_time_s) == pytest.approx(0.099, abs=1e-3)
        assert np.allclose(np.linalg.norm(scan.points[:, :2], axis=1), 8.0, atol=1e-3)
        from geoloc_ros.io.profiles import load_profile
        prof = load_profile("m3dgr")
        assert np.allclose(scan.T_base_sensor, prof.roles["lidar"].T_base_sensor)
        # IMU in g on the wire (the dataset's quirk), m/s^2 after the node's decoder
        from geoloc_ros.nodes.inputs import InputDecoder
        dec = InputDecoder(prof)
        raw = rig.imu[-1]
        assert math.isclose(raw.linear_acceleration.z ** 2 + raw.linear_acceleration.x ** 2, 1.0, rel_tol=1e-3)
        assert np.linalg.norm(dec.imu(raw).acc_mps2) == pytest.approx(9.80665, rel=1e-3)
        # GNSS header stamps in GPS time on the wire, UTC after decoding
        g = rig.gnss[0]
        assert stamp_to_s(g.header.stamp) - T0 == pytest.approx(18.003, abs=1e-3)
        ge = dec.gnss(g)
        assert ge.t == pytest.approx(T0 + 0.003, abs=1e-3)
        assert ge.cov_enu_m2 is not None and np.allclose(np.diag(ge.cov_enu_m2), 4.0, rtol=1e-3)
        assert len(rig.gnss) == stats.published["gnss/fix"] == DUR * 5
        # /clock follows the record time, monotonic, inside the bag
        cl = [stamp_to_s(c.clock) for c in rig.clock]
        assert len(cl) >= 10 and np.all(np.diff(cl) >= 0) and T0 <= cl[0] and cl[-1] <= T0 + DUR + 0.1
    finally:
        rig.close()


def test_play_oxford_spires_pointcloud2_passthrough(tmp_path):
    bag = write_bag(tmp_path / "spires", "oxford_spires", "pandar")
    rig = Rig("oxford_spires")
    try:
        stats = rig.play(bag, "oxford_spires")
        assert stats.published.get("points") == DUR * 10 and not stats.errors
        pts = rig.node.diag["points"]
        assert pts.received >= 0.8 * DUR * 10 and not pts.rejected, dict(pts.rejected)
        assert pts.accepted >= 1 and rig.node.unaccounted("points") == 0
        scan = rig.node.localizer.last_scan
        assert scan is not None and len(scan.points) == 360
        assert np.allclose(np.linalg.norm(scan.points[:, :2], axis=1), 8.0, atol=1e-3)
        assert scan.point_time_s is not None and np.nanmax(scan.point_time_s) == pytest.approx(0.099, abs=2e-3)
    finally:
        rig.close()


def test_play_cli_rejects_a_missing_bag_with_a_message(tmp_path, capsys):
    from geoloc_ros.play import main
    rc = main([str(tmp_path / "nope.bag"), "--profile", "m3dgr"])
    assert rc == 2
    assert "not found" in capsys.readouterr().err


def test_play_loop_starts_over_and_the_node_resets(tmp_path):
    from geoloc_ros.play import play
    dur = 4.0   # longer than twice the stale threshold, so that a loop shows as one
    bag = write_bag(tmp_path / "spires", "oxford_spires", "pandar", dur)
    rig = Rig("oxford_spires")
    try:
        player = Node("geoloc_play", context=rig.ctx)
        calls = [0]
        per_loop = int(dur * 100 + dur * 10)

        def stop():
            calls[0] += 1
            return calls[0] > 1.7 * per_loop
        stats = play(bag, "oxford_spires", rate=4.0, loop=True, node=player, stop=stop)
        player.destroy_node()
        assert stats.loops == 1
        # the second pass restarts the stamps 4 s back: a bag loop, not stray old messages
        assert wait(lambda: rig.node.resets >= 1, 10.0), dict(rig.node.diag["imu"].rejected)
    finally:
        rig.close()


def test_gnss_fix_waits_for_the_pvt_of_its_own_epoch():
    """M3DGR: each NavSatFix gets the accuracy of the receiver PVT of ITS epoch, not that of the
    previous one that happens to have arrived already (10 Hz: 0.1 s apart)."""
    from types import SimpleNamespace

    from sensor_msgs.msg import NavSatFix

    from geoloc_ros.msgs import gps_week_tow_to_unix
    from geoloc_ros.nodes.common import s_to_stamp
    from geoloc_ros.play import GnssPvtMerger
    week, tow0 = 2300, 100000.0
    t0 = gps_week_tow_to_unix(week, tow0, 18)

    def pvt(dt, h):
        return SimpleNamespace(time=SimpleNamespace(week=week, tow=tow0 + dt), fix_type=3, carr_soln=0, num_sv=12,
                               h_acc=h, v_acc=2 * h, p_dop=1.0, latitude=31.0, longitude=121.0, altitude=10.0)

    def fix(dt):
        m = NavSatFix()
        m.header.stamp = s_to_stamp(t0 + dt + 18.0)     # GPS time on the wire
        return m
    mg = GnssPvtMerger(stamp_offset_s=-18.0, leap_s=18)
    mg.add_pvt(pvt(0.0, 0.5))
    assert len(mg.ready(0.0)) == 0                      # no fix yet
    mg.add_fix(fix(0.1), 0.1)                           # the fix of epoch 0.1 before its PVT
    assert mg.ready(0.1) == [], "matched the previous epoch's PVT"
    mg.add_pvt(pvt(0.1, 1.0))
    out = mg.ready(0.12)
    assert len(out) == 1 and out[0].position_covariance[0] == pytest.approx(0.5)   # h^2 / 2 of ITS PVT
    mg.add_fix(fix(0.18), 0.2)                          # its PVT never comes: nearest after wait_s
    assert mg.ready(0.25) == [] and len(mg.ready(0.6)) == 1 and mg.unmatched == 0
