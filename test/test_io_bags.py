"""Bag reading and writing: the real Husky bag, write->read round trips in the M3DGR (ROS 1) and
Oxford Spires (ROS 2) layouts with their quirks, and clear errors for bad bags."""
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from geoloc_ros.events import FixStatus, GnssEvent, ImageEvent, ImuEvent, ScanEvent, WheelEvent
from geoloc_ros.io.assemble import AssemblerStats
from geoloc_ros.io.bags import BagError, bag_info, list_topics, read_events, read_messages
from geoloc_ros.io.profiles import load_profile
from geoloc_ros.io.writer import BagWriter
from geoloc_ros.io import encoders as E

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
HUSKY = REAL / "rl_husky_gps" / "husky_imu_odom_gps.bag"
T0 = 1_737_500_000.0  # a 2025 unix time


def needs_husky():
    if not HUSKY.is_file():
        pytest.skip(f"real Husky bag not found at {HUSKY} (shared/realdata beside the repo)")


# ---- the real Husky recording --------------------------------------------------------------------
def test_husky_bag_counts_match_readme():
    needs_husky()
    info = bag_info(HUSKY)
    assert info.ros_version == 1
    assert {t: i.count for t, i in info.topics.items()} == {
        "/imu/data": 11865, "/husky_velocity_controller/odom": 3952, "/fix": 989}
    assert info.topics["/fix"].msgtype == "sensor_msgs/msg/NavSatFix"
    assert info.duration_s == pytest.approx(395.3, abs=0.1)


def test_husky_events_ordered_in_base_frame():
    needs_husky()
    st = AssemblerStats()
    evs = list(read_events(HUSKY, "husky", stats=st))
    assert Counter(type(e).__name__ for e in evs) == {"ImuEvent": 11865, "WheelEvent": 3952, "GnssEvent": 989}
    t = np.array([e.t for e in evs])
    assert np.all(np.diff(t) >= 0) and st.late == 0 and not st.skipped
    imu = [e for e in evs if isinstance(e, ImuEvent)][:100]   # robot at rest at the start
    acc = np.mean([e.acc_mps2 for e in imu], axis=0)
    assert 9.6 < acc[2] < 10.0 and np.hypot(acc[0], acc[1]) < 0.3     # gravity reaction on base +z
    gnss = [e for e in evs if isinstance(e, GnssEvent)]
    assert all(g.status == FixStatus.SBAS for g in gnss)
    var = np.array([np.diag(g.cov_enu_m2) for g in gnss])
    assert var[:, :2].min() >= 0.64 - 1e-9 and var[:, :2].max() <= 2.89 + 1e-9
    lat = np.array([g.lat_deg for g in gnss])
    assert 42.3757 < lat.min() and lat.max() < 42.3772
    wheel = [e for e in evs if isinstance(e, WheelEvent)]
    assert max(w.v_mps for w in wheel) > 0.5


# ---- synthetic events written in a dataset layout and read back ---------------------------------
def _events(rng, n_scan=6):
    evs = []
    for i in range(int(n_scan * 20)):
        evs.append(ImuEvent(T0 + i * 0.005, rng.normal(size=3) + [0, 0, 9.81], rng.normal(size=3) * 0.1))
    yy, xx = np.mgrid[0:48, 0:64]
    for i in range(n_scan):
        t = T0 + 0.1 * i + 0.002
        n = 1500
        evs.append(ScanEvent(t, rng.normal(size=(n, 3)) * 15, rng.integers(0, 255, n).astype(np.float32),
                             np.sort(rng.uniform(0, 0.0999, n)), rng.integers(0, 4, n).astype(np.int32)))
        evs.append(GnssEvent(t + 0.011, 31.02 + i * 1e-5, 121.43, 12.0 + i, np.diag([0.8, 0.8, 2.5]),
                             [FixStatus.RTK_FIXED, FixStatus.FIX, FixStatus.GBAS][i % 3]))
        evs.append(WheelEvent(t + 0.023, 1.2 + 0.1 * i, -0.05 * i, 0.0004, 0.0001))
        rgb = np.stack([xx * 4 + i, yy * 5, (xx + yy) * 2], axis=2).astype(np.uint8)
        evs.append(ImageEvent(t + 0.037, rgb, rng.uniform(0.5, 9.0, (48, 64)).astype(np.float32),
                              rng.integers(0, 30, (48, 64)).astype(np.int32)))
    return sorted(evs, key=lambda e: e.t)


def _write(path, profile, evs):
    with BagWriter(path, profile) as w:
        for e in evs:
            if isinstance(e, ImageEvent) or load_profile(profile).roles.get(
                    {ScanEvent: "lidar", ImuEvent: "imu", WheelEvent: "wheel", GnssEvent: "gnss"}.get(type(e), "")):
                w.write(e)
    return w.path


def _compare(written, read, profile):
    kinds = {type(e) for e in read}
    byk = lambda evs, k: [e for e in evs if isinstance(e, k)]  # noqa: E731
    for k in kinds:
        a, b = byk(written, k), byk(read, k)
        assert len(a) == len(b), k
        for x, y in zip(a, b):
            assert y.t == pytest.approx(x.t, abs=2e-6)
            if k is ImuEvent:
                assert np.allclose(y.acc_mps2, x.acc_mps2, atol=1e-9) and np.allclose(y.gyr_rps, x.gyr_rps, atol=1e-9)
            elif k is ScanEvent:
                assert np.allclose(y.points, x.points, atol=2e-5 * 60)
                assert np.allclose(y.point_time_s, x.point_time_s, atol=2e-7)
                assert np.array_equal(y.ring, x.ring)
                assert np.allclose(y.T_base_sensor, profile.roles["lidar"].T_base_sensor)
            elif k is WheelEvent:
                assert (y.v_mps, y.yaw_rate_rps, y.var_v) == pytest.approx((x.v_mps, x.yaw_rate_rps, x.var_v))
            elif k is GnssEvent:
                assert (y.lat_deg, y.lon_deg, y.alt_m) == pytest.approx((x.lat_deg, x.lon_deg, x.alt_m))
                assert np.allclose(y.cov_enu_m2, x.cov_enu_m2)
            elif k is ImageEvent:
                assert np.abs(y.rgb.astype(int) - x.rgb).mean() < 3   # JPEG
                if y.depth_m is not None:
                    assert np.allclose(y.depth_m, x.depth_m, atol=6e-4)
                    assert np.array_equal(y.instance, x.instance)


def test_m3dgr_roundtrip_and_quirks(tmp_path):
    rng = np.random.default_rng(7)
    evs = _events(rng)
    prof = load_profile("m3dgr")
    path = _write(tmp_path / "m3dgr_like.bag", "m3dgr", evs)
    st = AssemblerStats()
    back = list(read_events(path, "m3dgr", stats=st))
    assert not st.skipped and st.late == 0 and st.gnss_cov_from_pvt == 6
    assert np.all(np.diff([e.t for e in back]) >= 0)
    _compare(evs, back, prof)
    gnss = [e for e in back if isinstance(e, GnssEvent)]
    assert [g.status for g in gnss] == [e.status for e in evs if isinstance(e, GnssEvent)]
    # what is in the bag is what the real ublox_driver writes
    raw = list(read_messages(path, ["/ublox_driver/receiver_lla", "/livox/mid360/imu"]))
    fixes = [(t, m) for tp, _, t, m in raw if tp == "/ublox_driver/receiver_lla"]
    t_rec, m = fixes[0]
    stamp = m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec
    assert stamp - t_rec == pytest.approx(18.0, abs=1e-6)                  # GPS-time stamp
    assert (m.status.status, m.status.service) == (3, 2)                    # fix type 3D, carrier fixed
    assert m.position_covariance_type == 0 and not np.any(m.position_covariance)
    assert m.header.frame_id == ""
    imu = next(m for tp, _, _, m in raw if tp == "/livox/mid360/imu")
    a = np.array([imu.linear_acceleration.x, imu.linear_acceleration.y, imu.linear_acceleration.z])
    assert 0.9 < np.linalg.norm(a) < 1.2                                   # in g
    pvt = next(m for _, _, _, m in read_messages(path, ["/ublox_driver/receiver_pvt"]))
    assert pvt.h_acc == pytest.approx(np.sqrt(1.6)) and pvt.carr_soln == 2 and not hasattr(pvt, "header")


@pytest.mark.parametrize("profile,name", [("oxford_spires", "spires_like"), ("generic", "generic.mcap"),
                                          ("generic", "generic.db3")])
def test_ros2_roundtrip(tmp_path, profile, name):
    rng = np.random.default_rng(8)
    evs = _events(rng, n_scan=4)
    path = _write(tmp_path / name, profile, evs)
    assert (path / "metadata.yaml").is_file()
    back = list(read_events(path, profile))
    _compare(evs, back, load_profile(profile))
    assert ScanEvent in {type(e) for e in back} and ImageEvent in {type(e) for e in back}


def test_read_window_and_roles(tmp_path):
    evs = _events(np.random.default_rng(9))
    path = _write(tmp_path / "w.bag", "m3dgr", evs)
    sub = list(read_events(path, "m3dgr", roles=["imu"], start_s=T0 + 0.2, end_s=T0 + 0.4))
    assert sub and all(isinstance(e, ImuEvent) and T0 + 0.2 <= e.t < T0 + 0.4 for e in sub)
    assert len(sub) == 40
    cams = list(read_events(path, "m3dgr", roles=["camera_rgb"]))
    assert len(cams) == 6 and all(c.depth_m is not None and c.instance is not None for c in cams)
    assert cams[0].intrinsics.fx == pytest.approx(607.80)


def test_bad_messages_are_skipped_with_reason(tmp_path):
    prof = load_profile("generic")
    from geoloc_ros.msgs import make_typestore
    ts = make_typestore(2)
    with BagWriter(tmp_path / "bad", prof) as w:
        good = E.encode_pointcloud2(ts, T0, "lidar", np.ones((10, 3)))
        w.write_raw("/points", "sensor_msgs/msg/PointCloud2", T0, good)
        broken = E.encode_pointcloud2(ts, T0 + 0.1, "lidar", np.ones((10, 3)))
        broken.data = broken.data[:17]
        w.write_raw("/points", "sensor_msgs/msg/PointCloud2", T0 + 0.1, broken)
        w.write(GnssEvent(T0 + 0.2, float("nan"), float("nan"), float("nan"), None, FixStatus.FIX))
    st = AssemblerStats()
    evs = list(read_events(w.path, prof, roles=["lidar", "gnss"], stats=st))
    assert [type(e) for e in evs] == [ScanEvent, GnssEvent]
    assert st.skipped["lidar"] == 1 and "bytes" in st.reasons["lidar"]
    assert evs[1].status == FixStatus.NO_FIX


# ---- bad bags ----------------------------------------------------------------------------------
def test_missing_empty_corrupt_truncated(tmp_path):
    with pytest.raises(BagError, match="not found: .*nothing.bag"):
        list_topics(tmp_path / "nothing.bag")
    (tmp_path / "empty.bag").write_bytes(b"")
    with pytest.raises(BagError, match="empty.bag: empty file"):
        list_topics(tmp_path / "empty.bag")
    (tmp_path / "junk.bag").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(BagError, match="junk.bag: cannot open bag"):
        list(read_events(tmp_path / "junk.bag", "m3dgr"))
    (tmp_path / "notabag").mkdir()
    with pytest.raises(BagError, match="notabag: a directory without metadata.yaml"):
        list_topics(tmp_path / "notabag")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(BagError, match="unknown bag format"):
        list_topics(tmp_path / "x.txt")
    good = _write(tmp_path / "good.bag", "m3dgr", _events(np.random.default_rng(1), 3))
    data = good.read_bytes()
    cut = tmp_path / "cut.bag"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(BagError, match="cut.bag"):
        list(read_events(cut, "m3dgr"))
    # a ROS 2 bag whose database is corrupt
    r2 = _write(tmp_path / "r2", "generic", _events(np.random.default_rng(2), 2))
    db = next(r2.glob("*.db3"))
    db.write_bytes(b"\x00" * 64 + db.read_bytes()[64:200])
    with pytest.raises(BagError, match="r2"):
        list(read_events(r2, "generic"))


def test_missing_topic_lists_what_the_bag_has(tmp_path):
    needs_husky()
    with pytest.raises(BagError) as e:
        list(read_messages(HUSKY, ["/livox/mid360/lidar"]))
    assert "/livox/mid360/lidar" in str(e.value) and "/imu/data" in str(e.value) and "/fix" in str(e.value)
    with pytest.raises(BagError, match=r"/livox/mid360/lidar \(lidar\).*it has: .*/fix"):
        list(read_events(HUSKY, "m3dgr", roles=["lidar"]))
    with pytest.raises(BagError, match="no role"):
        list(read_events(HUSKY, "husky", roles=["lidar"]))


def test_wrong_or_unknown_message_type(tmp_path):
    needs_husky()
    import yaml
    doc = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "profiles" / "husky.yaml").read_text())
    doc["roles"]["gnss"]["topic"] = "/imu/data"
    doc["roles"]["imu"]["topic"] = "/fix"
    p = tmp_path / "swapped.yaml"
    p.write_text(yaml.safe_dump(doc))
    with pytest.raises(BagError, match=r"/imu/data is sensor_msgs/msg/Imu in the bag.*expects sensor_msgs/msg/NavSatFix"):
        list(read_events(HUSKY, p))
    # a ROS 2 bag (as older rosbag2 wrote them) without definitions, of a type geoloc_ros lacks
    import sqlite3
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    ts = get_typestore(Stores.ROS2_HUMBLE)
    ts.register(get_types_from_msg("int32 a", "foo_msgs/msg/Bar"))
    bag = tmp_path / "unknown_type"
    with Writer(bag, version=9) as w:
        c = w.add_connection("/weird", "foo_msgs/msg/Bar", typestore=ts)
        w.write(c, int(T0 * 1e9), bytes(ts.serialize_cdr(ts.types["foo_msgs/msg/Bar"](a=3), "foo_msgs/msg/Bar")))
    db = sqlite3.connect(next(bag.glob("*.db3")))
    db.execute("DELETE FROM message_definitions")
    db.commit()
    db.close()
    assert [(i.topic, i.msgtype, i.count) for i in list_topics(bag)] == [("/weird", "foo_msgs/msg/Bar", 1)]
    with pytest.raises(BagError, match="/weird has message type foo_msgs/msg/Bar, which is unknown"):
        list(read_messages(bag))


def test_out_of_order_stamps_are_sorted_or_counted_late(tmp_path):
    from geoloc_ros.msgs import make_typestore
    ts = make_typestore(1)
    stamps = [0.00, 0.02, 0.01, 0.03, 0.04, 1.50, 0.035, 1.51]  # 0.01 within the window; 0.035 behind output
    with BagWriter(tmp_path / "ooo.bag", "husky") as w:
        for i, s in enumerate(stamps):
            ev = ImuEvent(T0 + s, np.array([0, 0, 9.81]), np.zeros(3))
            w.write_raw("/imu/data", "sensor_msgs/msg/Imu", T0 + 0.01 * i, E.encode_imu(ts, ev, "imu_link"))
    st = AssemblerStats()
    got = [e.t - T0 for e in read_events(w.path, "husky", roles=["imu"], stats=st, reorder_window_s=0.5)]
    assert len(got) == len(stamps) and st.late == 1
    assert got[:5] == pytest.approx([0.0, 0.01, 0.02, 0.03, 0.04], abs=1e-6)
