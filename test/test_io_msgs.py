"""Message decoders: rclpy messages and rosbags messages give the same numpy; layout variants;
encoders round-trip; bad messages raise DecodeError with a reason."""
import io

import numpy as np
import pytest

from geoloc_ros import msgs as M
from geoloc_ros.events import CameraIntrinsics, FixStatus, GnssEvent, ImuEvent, PoseFixEvent, WheelEvent
from geoloc_ros.geometry import rpy_to_matrix, se3
from geoloc_ros.io import encoders as E

rclpy_ser = pytest.importorskip("rclpy.serialization")
from geometry_msgs.msg import PoseWithCovarianceStamped  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, Imu, NavSatFix, PointCloud2, PointField  # noqa: E402

TS2 = M.make_typestore(2)
TS1 = M.make_typestore(1)


def both(msg_rclpy, typename):
    """The same bytes as an rclpy message (round-tripped through its serializer) and a rosbags one."""
    raw = rclpy_ser.serialize_message(msg_rclpy)
    r = rclpy_ser.deserialize_message(raw, type(msg_rclpy))
    b = TS2.deserialize_cdr(raw, typename)
    return r, b


def make_cloud(xyz, extra=None, *, f64=False, big=False, height=1, row_pad=0, time_name="t",
               time_vals=None, time_code="<f4", stamp=(100, 500_000_000)):
    """An rclpy PointCloud2 with a chosen layout (dtype, endianness, organized, row padding)."""
    e = ">" if big else "<"
    fcode, fdt = (8, "f8") if f64 else (7, "f4")
    fields = [("x", e + fdt), ("y", e + fdt), ("z", e + fdt), ("_pad", e + "u1"), ("intensity", e + "f4"),
              ("ring", e + "u2")]
    codes = {"x": fcode, "y": fcode, "z": fcode, "intensity": 7, "ring": 4}
    if time_vals is not None:
        fields.append((time_name, e + time_code[1:]))
        codes[time_name] = {"f4": 7, "f8": 8, "u4": 6}[time_code[1:]]
    dt = np.dtype(fields)
    n = len(xyz)
    rec = np.zeros(n, dt)
    rec["x"], rec["y"], rec["z"] = xyz.T
    rec["intensity"] = np.arange(n)
    rec["ring"] = np.arange(n) % 64
    if time_vals is not None:
        rec[time_name] = time_vals
    width = n // height
    rows = rec.reshape(height, width)
    data = b"".join(r.tobytes() + b"\xee" * row_pad for r in rows)
    m = PointCloud2()
    m.header.stamp.sec, m.header.stamp.nanosec = stamp
    m.header.frame_id = "lidar"
    m.height, m.width = height, width
    m.fields = [PointField(name=k, offset=dt.fields[k][1], datatype=c, count=1) for k, c in codes.items()]
    m.is_bigendian = big
    m.point_step = dt.itemsize
    m.row_step = dt.itemsize * width + row_pad
    m.data = data
    return m


@pytest.mark.parametrize("f64,big,height,row_pad", [(False, False, 1, 0), (True, False, 1, 0),
                                                    (False, True, 1, 0), (True, True, 4, 6)])
def test_pointcloud2_layouts_same_from_rclpy_and_rosbags(f64, big, height, row_pad):
    rng = np.random.default_rng(1)
    xyz = rng.normal(size=(64, 3)) * 20
    tv = np.linspace(0, 0.099, 64)
    msg = make_cloud(xyz, f64=f64, big=big, height=height, row_pad=row_pad, time_vals=tv)
    r, b = both(msg, "sensor_msgs/msg/PointCloud2")
    dr, db = M.pointcloud2_to_numpy(r), M.pointcloud2_to_numpy(b)
    tol = 0 if f64 else 1e-5 * 20
    assert np.allclose(dr["xyz"], xyz, atol=tol + 1e-12)
    for k in ("xyz", "intensity", "ring", "time_s"):
        assert np.array_equal(dr[k], db[k]), k
    assert np.allclose(dr["time_s"], tv, atol=1e-7)
    assert dr["t"] == pytest.approx(100.5)
    assert np.array_equal(dr["ring"], np.arange(64) % 64)


def test_pointcloud2_organized_nan_points_dropped():
    rng = np.random.default_rng(2)
    xyz = rng.normal(size=(32, 3))
    bad = [3, 10, 31]
    xyz[bad, 1] = np.nan
    xyz[5, 2] = np.inf
    msg = make_cloud(xyz, height=4, row_pad=3)
    d = M.pointcloud2_to_numpy(msg)
    keep = np.setdiff1d(np.arange(32), bad + [5])
    assert d["xyz"].shape == (len(keep), 3)
    assert np.allclose(d["xyz"], xyz[keep], atol=1e-6)
    assert np.array_equal(d["intensity"], keep.astype(np.float32))


@pytest.mark.parametrize("name,code,vals,scale,expect", [
    ("time", "<f4", np.linspace(0, 0.1, 16), None, np.linspace(0, 0.1, 16)),           # Velodyne, s
    ("t", "<u4", np.arange(16) * 6_000_000, None, np.arange(16) * 6e-3),               # Ouster, ns
    ("offset_time", "<u4", np.arange(16) * 1000, 1e-6, np.arange(16) * 1e-3),          # us by profile
    ("timestamp", "<f8", 100.5 + np.linspace(0, 0.1, 16), None, np.linspace(0, 0.1, 16)),  # Hesai, absolute
])
def test_pointcloud2_per_point_time_names_and_units(name, code, vals, scale, expect):
    msg = make_cloud(np.ones((16, 3)), time_name=name, time_vals=vals, time_code=code)
    d = M.pointcloud2_to_numpy(msg, point_time_scale_s=scale)
    assert np.allclose(d["time_s"], expect, atol=1e-6)


def test_pointcloud2_bad_input():
    msg = make_cloud(np.ones((16, 3)))
    msg.data = bytes(msg.data)[:-5]
    with pytest.raises(M.DecodeError, match="bytes"):
        M.pointcloud2_to_numpy(msg)
    msg = make_cloud(np.ones((16, 3)))
    msg.fields = [f for f in msg.fields if f.name != "z"]
    with pytest.raises(M.DecodeError, match="'z'"):
        M.pointcloud2_to_numpy(msg)
    msg = make_cloud(np.ones((16, 3)))
    msg.fields[0].datatype = 42
    with pytest.raises(M.DecodeError, match="datatype"):
        M.pointcloud2_to_numpy(msg)


def test_livox_custom_roundtrip_ros1_and_ros2():
    rng = np.random.default_rng(3)
    xyz = rng.normal(size=(500, 3)) * 10
    tt = np.sort(rng.uniform(0, 0.1, 500))
    for ts, ser, de in ((TS1, TS1.serialize_ros1, TS1.deserialize_ros1), (TS2, TS2.serialize_cdr, TS2.deserialize_cdr)):
        for mt in ("livox_ros_driver/msg/CustomMsg", "livox_ros_driver2/msg/CustomMsg"):
            m = E.encode_livox_custom(ts, 1.7e9 + 0.25, "livox", xyz, np.arange(500) % 256, None,
                                      np.arange(500) % 4, tt, msgtype=mt)
            d = M.livox_custom_to_numpy(de(ser(m, mt), mt))
            assert np.allclose(d["xyz"], xyz, atol=1e-5 * 40)
            assert np.allclose(d["time_s"], tt, atol=2e-7)
            assert np.array_equal(d["ring"], np.arange(500) % 4)
            assert np.array_equal(d["reflectivity"], (np.arange(500) % 256).astype(np.uint8))


def test_imu_g_units_and_extrinsic():
    m = Imu()
    m.header.stamp.sec = 10
    m.linear_acceleration.x, m.linear_acceleration.y, m.linear_acceleration.z = 0.0, 0.0, 1.0  # 1 g on sensor z
    m.angular_velocity.x = 0.1
    m.orientation_covariance[0] = -1.0
    r, b = both(m, "sensor_msgs/msg/Imu")
    T = se3(rpy_to_matrix(np.pi / 2, 0, 0))  # sensor z -> base -y
    for x in (r, b):
        ev = M.imu_to_event(x, acc_scale=9.80665, T_base_sensor=T)
        assert np.allclose(ev.acc_mps2, [0, -9.80665, 0], atol=1e-9)
        assert np.allclose(ev.gyr_rps, [0.1, 0, 0], atol=1e-12)
        assert ev.orientation_xyzw is None
    m.linear_acceleration.z = float("nan")
    with pytest.raises(M.DecodeError, match="non-finite"):
        M.imu_to_event(m)


def test_odometry_to_wheel_covariance_and_lever_arm():
    m = Odometry()
    m.header.stamp.sec = 5
    m.twist.twist.linear.x = 2.0
    m.twist.twist.angular.z = 0.5
    cov = np.zeros(36)
    cov[0], cov[35] = 0.04, 0.0025
    m.twist.covariance = cov
    r, b = both(m, "nav_msgs/msg/Odometry")
    for x in (r, b):
        w = M.odometry_to_wheel(x)
        assert (w.v_mps, w.yaw_rate_rps, w.var_v, w.var_yaw_rate) == (2.0, 0.5, 0.04, 0.0025)
    m.twist.covariance = np.zeros(36)
    assert M.odometry_to_wheel(m, default_var_v=0.01).var_v == 0.01
    # wheel frame 1 m behind base: base moves with v + w x r, forward speed unchanged, lateral added
    w = M.odometry_to_wheel(m, T_base_sensor=se3(None, [-1.0, 0, 0]))
    assert w.v_mps == pytest.approx(2.0)


def test_navsatfix_status_and_covariance():
    m = NavSatFix()
    m.header.stamp.sec = 1000
    m.latitude, m.longitude, m.altitude = 31.0, 121.0, 5.0
    m.status.status = 2
    m.position_covariance = [1.0, 0, 0, 0, 2.0, 0, 0, 0, 4.0]
    m.position_covariance_type = 2
    r, b = both(m, "sensor_msgs/msg/NavSatFix")
    for x in (r, b):
        g = M.navsatfix_to_gnss(x)
        assert g.status == FixStatus.GBAS and np.allclose(np.diag(g.cov_enu_m2), [1, 2, 4])
    m.position_covariance_type = 0
    assert M.navsatfix_to_gnss(m).cov_enu_m2 is None  # UNKNOWN -> None
    m.latitude = float("nan")
    assert M.navsatfix_to_gnss(m).status == FixStatus.NO_FIX


@pytest.mark.parametrize("fix_type,carr,expect", [(0, 0, FixStatus.NO_FIX), (1, 0, FixStatus.NO_FIX),
                                                  (3, 0, FixStatus.FIX), (3, 1, FixStatus.GBAS),
                                                  (3, 2, FixStatus.RTK_FIXED), (5, 2, FixStatus.NO_FIX)])
def test_ublox_status_mapping(fix_type, carr, expect):
    m = NavSatFix()
    m.latitude, m.longitude = 31.0, 121.0
    m.status.status, m.status.service = fix_type, carr
    assert M.navsatfix_to_gnss(m, status_encoding="ublox").status == expect


def test_compressed_images_and_depth():
    from PIL import Image as PILImage
    rgb = (np.random.default_rng(4).random((24, 32, 3)) * 255).astype(np.uint8)
    bio = io.BytesIO()
    PILImage.fromarray(rgb).save(bio, format="PNG")
    m = CompressedImage(format="png", data=bio.getvalue())
    r, b = both(m, "sensor_msgs/msg/CompressedImage")
    assert np.array_equal(M.compressed_image_to_numpy(r), rgb)
    assert np.array_equal(M.compressed_image_to_numpy(b), rgb)
    yy, xx = np.mgrid[0:48, 0:64]
    smooth = np.stack([xx * 4, yy * 5, (xx + yy) * 2], axis=2).astype(np.uint8)  # JPEG is lossy: smooth image
    jm = E.encode_compressed_image(TS2, 1.0, "c", smooth, "jpeg", quality=95)
    assert np.abs(M.compressed_image_to_numpy(jm).astype(int) - smooth).mean() < 3
    depth = np.random.default_rng(5).uniform(0.3, 8.0, (24, 32)).astype(np.float32)
    depth[0, 0] = 0.0
    dm = E.encode_compressed_depth(TS2, 1.0, "c", depth)
    d = M.compressed_depth_to_numpy(dm)
    assert np.allclose(d, depth, atol=0.0006) and d[0, 0] == 0.0
    with pytest.raises(M.DecodeError, match="cannot decode"):
        M.compressed_image_to_numpy(CompressedImage(format="jpeg", data=b"\xff\xd8garbage" * 10))
    with pytest.raises(M.DecodeError, match="too short"):
        M.compressed_depth_to_numpy(CompressedImage(format="16UC1; compressedDepth", data=b"\x00" * 8))


@pytest.mark.parametrize("enc,arr", [
    ("rgb8", (np.arange(4 * 5 * 3) % 255).astype(np.uint8).reshape(4, 5, 3)),
    ("mono16", np.arange(20, dtype=np.uint16).reshape(4, 5) * 1000),
    ("32FC1", np.linspace(0, 3, 20, dtype=np.float32).reshape(4, 5)),
    ("32SC1", np.arange(20, dtype=np.int32).reshape(4, 5) - 3),
])
def test_raw_images_with_padding_and_endianness(enc, arr):
    for big in (False, True):
        m = Image(height=4, width=5, encoding=enc, is_bigendian=big)
        a = arr.astype(arr.dtype.newbyteorder(">" if big else "<"))
        row = a.reshape(4, -1).view(np.uint8).reshape(4, -1)
        pad = np.zeros((4, 3), np.uint8)
        m.data = np.hstack([row, pad]).tobytes()
        m.step = row.shape[1] + 3
        r, b = both(m, "sensor_msgs/msg/Image")
        assert np.array_equal(M.image_to_numpy(r), arr) and np.array_equal(M.image_to_numpy(b), arr)
    bgr = Image(height=1, width=2, encoding="bgr8", step=6, data=bytes([1, 2, 3, 4, 5, 6]))
    if enc == "rgb8":
        assert M.image_to_numpy(bgr).tolist() == [[[3, 2, 1], [6, 5, 4]]]
    with pytest.raises(M.DecodeError, match="not supported"):
        M.image_to_numpy(Image(height=1, width=1, encoding="yuv422", step=2, data=b"\x00\x00"))


def test_camera_info_ros1_and_ros2_names():
    K = CameraIntrinsics(640, 480, 607.80, 607.84, 328.80, 245.53)
    m = CameraInfo(width=640, height=480, distortion_model="plumb_bob")
    m.k = [607.80, 0, 328.80, 0, 607.84, 245.53, 0, 0, 1]
    m.d = [0.1, -0.2, 0, 0, 0]
    r, b = both(m, "sensor_msgs/msg/CameraInfo")
    for x in (r, b, TS1.deserialize_ros1(TS1.serialize_ros1(E.encode_camera_info(TS1, 1.0, "c", K),
                                                           "sensor_msgs/msg/CameraInfo"), "sensor_msgs/msg/CameraInfo")):
        k = M.camera_info_to_intrinsics(x)
        assert (k.fx, k.fy, k.cx, k.cy, k.width, k.height) == (607.80, 607.84, 328.80, 245.53, 640, 480)
    m.k = [0.0] * 9
    with pytest.raises(M.DecodeError, match="focal"):
        M.camera_info_to_intrinsics(m)


def test_pose_with_cov_to_fix():
    m = PoseWithCovarianceStamped()
    m.header.frame_id = "map"
    m.pose.pose.position.x, m.pose.pose.position.y = 3.0, -4.0
    m.pose.pose.orientation.z, m.pose.pose.orientation.w = np.sin(0.25), np.cos(0.25)
    cov = np.diag([0.25, 0.25, 1.0, 0.1, 0.1, 0.05]).reshape(36)
    m.pose.covariance = cov
    r, b = both(m, "geometry_msgs/msg/PoseWithCovarianceStamped")
    for x in (r, b):
        f = M.pose_with_cov_to_fix(x)
        assert np.allclose(f.T_map_base[:2, 3], [3, -4]) and np.arctan2(f.T_map_base[1, 0], f.T_map_base[0, 0]) == pytest.approx(0.5)
        assert np.allclose(f.cov6, cov.reshape(6, 6))
    m.pose.pose.orientation.w = m.pose.pose.orientation.z = 0.0
    with pytest.raises(M.DecodeError, match="quaternion"):
        M.pose_with_cov_to_fix(m)


def test_event_encoders_invert_decoders():
    T = se3(rpy_to_matrix(0.1, 0.54, -0.3), [0.1, 0.2, 0.3])
    ev = ImuEvent(12.25, np.array([0.3, -0.2, 9.7]), np.array([0.01, 0.02, -0.3]), np.array([0, 0, np.sin(0.2), np.cos(0.2)]))
    for ts in (TS1, TS2):
        m = E.encode_imu(ts, ev, "imu", T, acc_scale=9.80665, stamp_offset_s=-18.0)
        back = M.imu_to_event(m, 9.80665, T, stamp_offset_s=-18.0)
        assert back.t == pytest.approx(ev.t) and np.allclose(back.acc_mps2, ev.acc_mps2)
        assert np.allclose(back.gyr_rps, ev.gyr_rps) and np.allclose(back.orientation_xyzw, ev.orientation_xyzw)
        w = M.odometry_to_wheel(E.encode_odometry(ts, WheelEvent(3.0, 1.5, -0.2, 0.02, 0.003)))
        assert (w.v_mps, w.yaw_rate_rps, w.var_v, w.var_yaw_rate) == (1.5, -0.2, 0.02, 0.003)
        g = GnssEvent(1.7e9, 31.02, 121.43, 12.0, np.diag([0.5, 0.5, 2.0]), FixStatus.RTK_FIXED, 14)
        pvt = M.gnss_pvt_to_dict(E.encode_gnss_pvt(ts, g, 1.0, 1.4))
        assert pvt["t"] == pytest.approx(g.t, abs=1e-6) and pvt["status"] == FixStatus.RTK_FIXED
        assert pvt["num_sv"] == 14 and pvt["h_acc_m"] == 1.0
        f = M.pose_with_cov_to_fix(E.encode_pose_with_cov(ts, PoseFixEvent(4.0, T, np.eye(6) * 0.1)))
        assert np.allclose(f.T_map_base, T)


@pytest.mark.parametrize("ros_version", [1, 2])
def test_livox_numpy_codec_is_byte_identical_to_rosbags(ros_version):
    from geoloc_ros.io.livox_raw import livox_from_raw, livox_to_raw
    ts = TS1 if ros_version == 1 else TS2
    ser = ts.serialize_ros1 if ros_version == 1 else ts.serialize_cdr
    rng = np.random.default_rng(11)
    for n, frame in ((0, ""), (1, "a"), (333, "livox_frame")):
        xyz = rng.normal(size=(n, 3)).astype(np.float32).astype(float) * 10
        off = np.sort(rng.integers(0, 100_000_000, n))
        refl, line = rng.integers(0, 256, n), rng.integers(0, 4, n)
        m = E.encode_livox_custom(ts, 1.7e9 + 0.37, frame, xyz, refl, None, line, off * 1e-9)
        raw = bytes(ser(m, m.__msgtype__))
        assert livox_to_raw(ros_version, m.header.stamp.sec, m.header.stamp.nanosec, frame, xyz, off, refl,
                            np.zeros(n), line, m.timebase) == raw
        de = ts.deserialize_ros1 if ros_version == 1 else ts.deserialize_cdr
        fast = M.livox_custom_to_numpy(livox_from_raw(raw, ros_version))
        slow = M.livox_custom_to_numpy(de(raw, m.__msgtype__))
        for k in ("xyz", "time_s", "ring", "reflectivity", "tag"):
            assert np.array_equal(fast[k], slow[k]), k
        assert fast["t"] == slow["t"] and fast["frame_id"] == frame
    with pytest.raises(M.DecodeError, match="truncated"):
        livox_from_raw(raw[:-30], ros_version)
