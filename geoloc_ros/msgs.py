"""ROS messages -> numpy arrays and :mod:`geoloc_ros.events` (SI units, float seconds).

Every decoder is duck-typed: it reads attributes only, so the same function takes a message
from rclpy (live node, or ``rclpy.serialization.deserialize_message``) or one that rosbags
deserialized from a ROS 1 or ROS 2 bag. Field-name differences between ROS 1 and ROS 2
(``CameraInfo.K`` vs ``k``) are handled here.

Bad input raises :class:`DecodeError` with a reason (never a numpy traceback); readers turn it
into a skipped message with a counted reason.

The non-standard types the dataset bags need (``livox_ros_driver/CustomMsg``,
``livox_ros_driver2/CustomMsg``, ``gnss_comm/GnssPVTSolnMsg``) are bundled as ``.msg`` text in
``geoloc_ros/msg`` and registered into a rosbags typestore by :func:`make_typestore`.
Encoders (numpy/event -> rosbags message) live in :mod:`geoloc_ros.io.encoders`.
"""
from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import numpy as np

from geoloc_ros.events import CameraIntrinsics, FixStatus, GnssEvent, ImuEvent, PoseFixEvent, WheelEvent
from geoloc_ros.geometry import matrix_to_quat, xyzquat_to_pose

__all__ = [
    "DecodeError", "stamp_to_s", "make_typestore", "CUSTOM_TYPES",
    "pointcloud2_to_numpy", "livox_custom_to_numpy", "imu_to_event", "odometry_to_wheel",
    "navsatfix_to_gnss", "ublox_fix_status", "gnss_pvt_to_dict", "gps_week_tow_to_unix",
    "compressed_image_to_numpy", "compressed_depth_to_numpy", "image_to_numpy",
    "camera_info_to_intrinsics", "depth_image_to_m", "pose_with_cov_to_fix", "GPS_UNIX_OFFSET_S",
]

MSG_DIR = Path(__file__).resolve().parent / "msg"
GPS_UNIX_OFFSET_S = 315964800.0   # 1980-01-06T00:00:00Z in unix seconds
_POINTFIELD_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
# per-point time field names seen in drivers, in order of preference
POINT_TIME_FIELDS = ("t", "time", "timestamp", "offset_time", "time_offset")
INTENSITY_FIELDS = ("intensity", "reflectivity", "i")
RING_FIELDS = ("ring", "line", "channel", "laser_id")


class DecodeError(ValueError):
    """A message that cannot be turned into numpy/an event; the text says why."""


# ---- typestore with the bundled custom types ---------------------------------------------------
# (message type name -> bundled .msg file); livox_ros_driver2 uses the livox_ros_driver text
CUSTOM_TYPES = {
    "livox_ros_driver/msg/CustomPoint": "CustomPoint.msg",
    "livox_ros_driver/msg/CustomMsg": "CustomMsg.msg",
    "livox_ros_driver2/msg/CustomPoint": "CustomPoint.msg",
    "livox_ros_driver2/msg/CustomMsg": "CustomMsg.msg",
    "gnss_comm/msg/GnssTimeMsg": "GnssTimeMsg.msg",
    "gnss_comm/msg/GnssPVTSolnMsg": "GnssPVTSolnMsg.msg",
}


@lru_cache(maxsize=4)
def make_typestore(ros_version: int = 2):
    """A rosbags typestore (ROS 1 Noetic or ROS 2 Humble) with the bundled custom types registered."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    ts = get_typestore(Stores.ROS1_NOETIC if int(ros_version) == 1 else Stores.ROS2_HUMBLE)
    types = {}
    for name, rel in CUSTOM_TYPES.items():
        text = (MSG_DIR / rel).read_text()
        types.update(get_types_from_msg(text, name))
    ts.register(types)
    return ts


# ---- small helpers ------------------------------------------------------------------------------
def stamp_to_s(stamp) -> float:
    """builtin_interfaces/Time (rclpy or rosbags, ROS 1 or 2) -> float seconds."""
    sec = getattr(stamp, "sec", None)
    if sec is None:
        sec = getattr(stamp, "secs", 0)
    nsec = getattr(stamp, "nanosec", None)
    if nsec is None:
        nsec = getattr(stamp, "nsecs", 0)
    return float(sec) + 1e-9 * float(nsec)


def _bytes(data) -> memoryview:
    """Byte view of a uint8[] field (rclpy array.array/bytes or rosbags numpy array)."""
    if isinstance(data, np.ndarray):
        return memoryview(np.ascontiguousarray(data, dtype=np.uint8)).cast("B")
    return memoryview(data).cast("B")


def _header(msg) -> tuple[float, str]:
    h = getattr(msg, "header", None)
    if h is None:
        raise DecodeError(f"{type(msg).__name__} has no header")
    t = stamp_to_s(h.stamp)
    if not np.isfinite(t):
        raise DecodeError("header stamp is not finite")
    return t, str(getattr(h, "frame_id", ""))


def _vec3(v) -> np.ndarray:
    return np.array([float(v.x), float(v.y), float(v.z)])


def _quat(q) -> np.ndarray:
    return np.array([float(q.x), float(q.y), float(q.z), float(q.w)])


def _get(msg, *names):
    """First attribute present among ``names`` (ROS 2 lower-case vs ROS 1 upper-case fields)."""
    for n in names:
        if hasattr(msg, n):
            return getattr(msg, n)
    raise DecodeError(f"{type(msg).__name__} has none of the fields {names}")


# ---- point clouds -------------------------------------------------------------------------------
def _pointcloud2_struct(msg) -> tuple[np.ndarray, list[str]]:
    """Structured (N,) array over the cloud's bytes (rows flattened), and the field names."""
    fields = list(msg.fields)
    if not fields:
        raise DecodeError("PointCloud2 has no fields")
    endian = ">" if bool(msg.is_bigendian) else "<"
    names, formats, offsets = [], [], []
    for f in fields:
        code = _POINTFIELD_DTYPES.get(int(f.datatype))
        if code is None:
            raise DecodeError(f"PointCloud2 field '{f.name}' has unknown datatype {f.datatype}")
        name = str(f.name)
        if not name or name in names:
            continue  # padding fields ("_") or duplicates
        cnt = max(int(getattr(f, "count", 1) or 1), 1)
        names.append(name)
        formats.append((endian + code) if cnt == 1 else (f"{endian}{code}", (cnt,)))
        offsets.append(int(f.offset))
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    width, height = int(msg.width), int(msg.height)
    n = width * height
    try:
        dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets,
                          "itemsize": point_step})
    except (ValueError, TypeError) as e:
        raise DecodeError(f"PointCloud2 field layout does not fit point_step {point_step}: {e}") from None
    buf = _bytes(msg.data)
    if n == 0:
        return np.zeros(0, dtype), names
    if row_step < width * point_step or len(buf) < row_step * (height - 1) + width * point_step:
        raise DecodeError(f"PointCloud2 data has {len(buf)} bytes, expected {row_step * height} "
                          f"({height} rows x {row_step} bytes)")
    if row_step == width * point_step:
        arr = np.frombuffer(buf, dtype=dtype, count=n)
    else:
        arr = np.ndarray((height, width), dtype=dtype, buffer=buf, strides=(row_step, point_step)).reshape(-1)
    return arr, names


def _point_time_s(arr: np.ndarray, name: str, stamp_s: float, scale_s: float | None) -> np.ndarray:
    """Per-point time offset from the header stamp, s. Absolute stamps (within 10 s of the header
    stamp, e.g. Hesai's float64 ``timestamp``) are made relative."""
    raw = arr[name]
    if raw.ndim > 1:
        raw = raw[:, 0]
    if scale_s is None:  # conventions: integer t/offset_time in ns (Ouster, Livox), floats in s
        scale_s = 1e-9 if np.issubdtype(raw.dtype, np.integer) else 1.0
    t = raw.astype(np.float64) * scale_s
    if t.size and stamp_s > 20.0 and abs(float(np.nanmedian(t)) - stamp_s) < 10.0:
        t = t - stamp_s
    return t


def pointcloud2_to_numpy(msg, point_time_scale_s: float | None = None, keep_nan: bool = False) -> dict:
    """sensor_msgs/PointCloud2 -> dict of arrays, NaN/inf points dropped.

    Any field layout: float32/float64 (or integer) x, y, z; optional intensity, ring and per-point
    time under their common names (``t``, ``time``, ``timestamp``, ``offset_time``); big or little
    endian; organized (height > 1, row padding) or not.
    Returns ``{"t": stamp_s, "frame_id": str, "xyz": (N,3) float64, "intensity": (N,) float32|None,
    "ring": (N,) int32|None, "time_s": (N,) float64|None}``; ``time_s`` is relative to ``t``
    (integer fields in ns unless ``point_time_scale_s`` says otherwise).
    """
    t, frame = _header(msg)
    arr, names = _pointcloud2_struct(msg)
    for k in ("x", "y", "z"):
        if k not in names:
            raise DecodeError(f"PointCloud2 has no '{k}' field (fields: {', '.join(names)})")
    xyz = np.stack([arr["x"], arr["y"], arr["z"]], axis=1).astype(np.float64)
    keep = np.all(np.isfinite(xyz), axis=1) if not keep_nan else np.ones(len(xyz), bool)
    out = {"t": t, "frame_id": frame, "xyz": xyz[keep], "intensity": None, "ring": None, "time_s": None}
    for cand in INTENSITY_FIELDS:
        if cand in names:
            out["intensity"] = arr[cand][keep].astype(np.float32)
            break
    for cand in RING_FIELDS:
        if cand in names:
            out["ring"] = arr[cand][keep].astype(np.int32)
            break
    for cand in POINT_TIME_FIELDS:
        if cand in names:
            out["time_s"] = _point_time_s(arr[keep], cand, t, point_time_scale_s)
            break
    return out


def livox_custom_to_numpy(msg) -> dict:
    """livox_ros_driver(2)/CustomMsg -> dict like :func:`pointcloud2_to_numpy`.

    Per-point time is ``timebase + offset_time`` (ns), returned relative to the header stamp;
    ``ring`` is the laser ``line``; also ``reflectivity`` (N,) uint8 and ``tag`` (N,) uint8.
    """
    t, frame = _header(msg)
    pts = msg.points
    n = len(pts)
    if n == 0:
        z = np.zeros(0)
        return {"t": t, "frame_id": frame, "xyz": np.zeros((0, 3)), "intensity": z.astype(np.float32),
                "ring": z.astype(np.int32), "time_s": z, "reflectivity": z.astype(np.uint8),
                "tag": z.astype(np.uint8)}
    if isinstance(pts, np.ndarray) and pts.dtype.names:  # fast path (geoloc_ros.io.livox_raw)
        rec = np.empty(n, dtype=[("o", "u8"), ("x", "f8"), ("y", "f8"), ("z", "f8"), ("r", "u1"),
                                 ("g", "u1"), ("l", "u1")])
        for a, b in zip("oxyzrgl", ("offset_time", "x", "y", "z", "reflectivity", "tag", "line")):
            rec[a] = pts[b]
    else:
        rec = np.array([(p.offset_time, p.x, p.y, p.z, p.reflectivity, p.tag, p.line) for p in pts],
                       dtype=[("o", "u8"), ("x", "f8"), ("y", "f8"), ("z", "f8"), ("r", "u1"),
                              ("g", "u1"), ("l", "u1")])
    xyz = np.stack([rec["x"], rec["y"], rec["z"]], axis=1)
    keep = np.all(np.isfinite(xyz), axis=1)
    timebase = int(getattr(msg, "timebase", 0) or 0)
    st = msg.header.stamp
    stamp_ns = int(getattr(st, "sec", 0)) * 1_000_000_000 + int(getattr(st, "nanosec", 0))
    base_s = (timebase - stamp_ns) * 1e-9 if timebase > 0 else 0.0  # integer ns: no float64 loss
    rec = rec[keep]
    return {"t": t, "frame_id": frame, "xyz": xyz[keep], "intensity": rec["r"].astype(np.float32),
            "ring": rec["l"].astype(np.int32), "time_s": base_s + rec["o"].astype(np.float64) * 1e-9,
            "reflectivity": rec["r"], "tag": rec["g"]}


# ---- IMU, wheel, pose --------------------------------------------------------------------------
def imu_to_event(msg, acc_scale: float = 1.0, T_base_sensor: np.ndarray | None = None,
                 frame_id: str = "base_link", stamp_offset_s: float = 0.0) -> ImuEvent:
    """sensor_msgs/Imu -> :class:`ImuEvent` in base_link.

    ``acc_scale`` multiplies the acceleration (9.80665 for Livox IMUs that report g). Vectors are
    rotated by the extrinsic's rotation (the lever-arm terms are left to the filter); a reported
    orientation of the sensor becomes that of base_link. ``orientation_covariance[0] == -1``
    (ROS: "no orientation") gives ``orientation_xyzw=None``.
    """
    t, _ = _header(msg)
    acc = _vec3(msg.linear_acceleration) * float(acc_scale)
    gyr = _vec3(msg.angular_velocity)
    if not (np.all(np.isfinite(acc)) and np.all(np.isfinite(gyr))):
        raise DecodeError("Imu has non-finite angular velocity or acceleration")
    R = np.eye(3) if T_base_sensor is None else np.asarray(T_base_sensor, float)[:3, :3]
    q = None
    cov = getattr(msg, "orientation_covariance", None)
    qs = _quat(msg.orientation)
    if (cov is None or len(cov) == 0 or float(cov[0]) != -1.0) and np.all(np.isfinite(qs)) \
            and abs(np.linalg.norm(qs) - 1.0) < 1e-3:
        q = _quat_mul(qs, _quat_conj(_quat_of_rotation(R.tobytes())))  # q_world_base = q_ws * q_sb
        if q[3] < 0:
            q = -q
    return ImuEvent(t=t + stamp_offset_s, acc_mps2=R @ acc, gyr_rps=R @ gyr, orientation_xyzw=q,
                    frame_id=frame_id)


@lru_cache(maxsize=64)
def _quat_of_rotation(R_bytes: bytes) -> np.ndarray:
    """Quaternion (x, y, z, w) of a 3x3 rotation given as bytes (cached: one per extrinsic)."""
    return matrix_to_quat(np.frombuffer(R_bytes, float).reshape(3, 3))


def _quat_conj(q: np.ndarray) -> np.ndarray:
    return np.array([-q[0], -q[1], -q[2], q[3]])


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of (x, y, z, w) quaternions."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz])


def _cov_diag(cov, i: int) -> float | None:
    c = np.asarray(cov, float).reshape(-1)
    if c.size != 36 or not np.isfinite(c[i * 7]) or c[i * 7] <= 0.0:
        return None
    return float(c[i * 7])


def odometry_to_wheel(msg, T_base_sensor: np.ndarray | None = None, frame_id: str = "base_link",
                      default_var_v: float = 0.01, default_var_yaw_rate: float = 0.001,
                      stamp_offset_s: float = 0.0) -> WheelEvent:
    """nav_msgs/Odometry -> :class:`WheelEvent`: base_link forward speed and yaw rate.

    The twist is in the child frame; with an extrinsic (child frame != base_link) it is moved to
    base_link (v_b = R v_s + w x (p_b - p_s)). Variances come from the twist covariance
    (x and yaw diagonal) when those are positive and finite, else the defaults.
    """
    t, _ = _header(msg)
    v = _vec3(msg.twist.twist.linear)
    w = _vec3(msg.twist.twist.angular)
    if not (np.all(np.isfinite(v)) and np.all(np.isfinite(w))):
        raise DecodeError("Odometry twist is not finite")
    if T_base_sensor is not None:
        T = np.asarray(T_base_sensor, float)
        w = T[:3, :3] @ w
        v = T[:3, :3] @ v + np.cross(w, -T[:3, 3])
    cov = msg.twist.covariance
    var_v = _cov_diag(cov, 0)
    var_w = _cov_diag(cov, 5)
    return WheelEvent(t=t + stamp_offset_s, v_mps=float(v[0]), yaw_rate_rps=float(w[2]),
                      var_v=var_v if var_v is not None else default_var_v,
                      var_yaw_rate=var_w if var_w is not None else default_var_yaw_rate,
                      frame_id=frame_id)


def pose_with_cov_to_fix(msg, source: str = "initialpose", dof: str = "full") -> PoseFixEvent:
    """geometry_msgs/PoseWithCovarianceStamped -> :class:`PoseFixEvent` (cov in ROS order)."""
    t, frame = _header(msg)
    p = msg.pose.pose
    v = np.concatenate([_vec3(p.position), _quat(p.orientation)])
    if not np.all(np.isfinite(v)) or np.linalg.norm(v[3:]) < 1e-6:
        raise DecodeError("pose is not finite or has a zero quaternion")
    v[3:] /= np.linalg.norm(v[3:])
    cov = np.asarray(msg.pose.covariance, float).reshape(6, 6)
    if not np.all(np.isfinite(cov)):
        raise DecodeError("pose covariance is not finite")
    return PoseFixEvent(t=t, T_map_base=xyzquat_to_pose(v), cov6=cov, source=source,
                        frame_id=frame or "map", dof=dof)


# ---- GNSS ---------------------------------------------------------------------------------------
_NAVSAT_STATUS = {-1: FixStatus.NO_FIX, 0: FixStatus.FIX, 1: FixStatus.SBAS, 2: FixStatus.GBAS}


def ublox_fix_status(fix_type: int, carr_soln: int) -> FixStatus:
    """u-blox fix type (0 none, 1 DR only, 2 2D, 3 3D, 4 GNSS+DR, 5 time only) and carrier
    solution (0 none, 1 float, 2 fixed) -> :class:`FixStatus`."""
    if int(fix_type) not in (2, 3, 4):
        return FixStatus.NO_FIX
    return {2: FixStatus.RTK_FIXED, 1: FixStatus.GBAS}.get(int(carr_soln), FixStatus.FIX)


def navsatfix_to_gnss(msg, status_encoding: str = "navsatfix", stamp_offset_s: float = 0.0,
                      frame_id: str | None = None) -> GnssEvent:
    """sensor_msgs/NavSatFix -> :class:`GnssEvent`.

    ``status_encoding="navsatfix"``: status.status per REP (-1 no fix, 0 fix, 1 SBAS, 2 GBAS).
    ``"ublox"`` (M3DGR ublox_driver): status.status holds the u-blox fix type 0-5 and
    status.service the carrier solution 0-2 (see :func:`ublox_fix_status`).
    Covariance type UNKNOWN (0), or an all-zero/non-finite matrix, gives ``cov_enu_m2=None``.
    Non-finite latitude/longitude gives a NO_FIX event. ``stamp_offset_s`` is added to the
    header stamp (e.g. -18 s for GPS-time stamps).
    """
    t, frame = _header(msg)
    st = getattr(msg, "status", None)
    s_raw = int(getattr(st, "status", 0)) if st is not None else 0
    if status_encoding == "ublox":
        status = ublox_fix_status(s_raw, int(getattr(st, "service", 0)))
    elif status_encoding == "navsatfix":
        status = _NAVSAT_STATUS.get(s_raw, FixStatus.NO_FIX)
    else:
        raise DecodeError(f"unknown GNSS status encoding '{status_encoding}'")
    lat, lon, alt = float(msg.latitude), float(msg.longitude), float(msg.altitude)
    if not (np.isfinite(lat) and np.isfinite(lon)) or abs(lat) > 90 or abs(lon) > 180:
        status = FixStatus.NO_FIX
    cov = None
    ctype = int(getattr(msg, "position_covariance_type", 0))
    c = np.asarray(msg.position_covariance, float).reshape(-1)
    if ctype != 0 and c.size == 9 and np.all(np.isfinite(c)) and np.any(c != 0.0):
        cov = c.reshape(3, 3)
    return GnssEvent(t=t + stamp_offset_s, lat_deg=lat, lon_deg=lon,
                     alt_m=alt if np.isfinite(alt) else float("nan"), cov_enu_m2=cov,
                     status=status, frame_id=frame_id or frame or "gnss")


def gps_week_tow_to_unix(week: int, tow_s: float, leap_s: float = 18.0) -> float:
    """GPS week + time of week -> unix seconds (UTC), subtracting the GPS-UTC leap seconds."""
    return GPS_UNIX_OFFSET_S + int(week) * 604800.0 + float(tow_s) - float(leap_s)


def gnss_pvt_to_dict(msg, leap_s: float = 18.0) -> dict:
    """gnss_comm/GnssPVTSolnMsg (no header) -> dict with ``t`` (unix s from GPS week/tow),
    ``status`` (:class:`FixStatus`), ``num_sv``, ``h_acc_m``, ``v_acc_m``, ``p_dop``, lat/lon/alt."""
    tm = msg.time
    return {"t": gps_week_tow_to_unix(tm.week, tm.tow, leap_s),
            "status": ublox_fix_status(msg.fix_type, msg.carr_soln), "num_sv": int(msg.num_sv),
            "h_acc_m": float(msg.h_acc), "v_acc_m": float(msg.v_acc), "p_dop": float(msg.p_dop),
            "lat_deg": float(msg.latitude), "lon_deg": float(msg.longitude), "alt_m": float(msg.altitude)}


# ---- images -------------------------------------------------------------------------------------
def _pil_open(buf: memoryview, what: str):
    from PIL import Image, UnidentifiedImageError
    try:
        img = Image.open(io.BytesIO(bytes(buf)))
        img.load()
        return img
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DecodeError(f"{what}: cannot decode image data ({e})") from None


def compressed_image_to_numpy(msg) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG/PNG) -> (H, W, 3) uint8 RGB, or (H, W) for mono PNG/JPEG."""
    img = _pil_open(_bytes(msg.data), "CompressedImage")
    if img.mode in ("L", "I;16", "I"):
        return np.asarray(img)
    return np.asarray(img.convert("RGB"))


def compressed_depth_to_numpy(msg, depth_scale_m: float = 0.001) -> np.ndarray:
    """image_transport compressedDepth -> (H, W) float32 metres, 0 where unknown.

    The payload is a 12-byte header (int32 format, float32 quantization A, B) then a PNG.
    16UC1 (mm): metres = value * ``depth_scale_m``. 32FC1: inverse-depth quantized,
    depth = A / (value - B) for value > 0.
    """
    buf = _bytes(msg.data)
    fmt = str(getattr(msg, "format", ""))
    if len(buf) <= 12:
        raise DecodeError(f"compressedDepth payload too short ({len(buf)} bytes)")
    start = 12
    if bytes(buf[:8]) == b"\x89PNG\r\n\x1a\n":
        start = 0  # some writers omit the header
    img = np.asarray(_pil_open(buf[start:], "compressedDepth"))
    if img.ndim != 2:
        raise DecodeError(f"compressedDepth PNG has shape {img.shape}, expected a single channel")
    if "32FC1" in fmt:
        qa, qb = np.frombuffer(bytes(buf[4:12]), "<f4")
        v = img.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where(v > 0, qa / (v - qb), 0.0)
        return d.astype(np.float32)
    return (img.astype(np.float32) * np.float32(depth_scale_m))


_IMAGE_ENC = {
    "rgb8": ("u1", 3), "bgr8": ("u1", 3), "rgba8": ("u1", 4), "bgra8": ("u1", 4),
    "mono8": ("u1", 1), "8UC1": ("u1", 1), "mono16": ("u2", 1), "16UC1": ("u2", 1),
    "16SC1": ("i2", 1), "32FC1": ("f4", 1), "32SC1": ("i4", 1), "64FC1": ("f8", 1),
}


def image_to_numpy(msg) -> np.ndarray:
    """sensor_msgs/Image -> numpy: colour encodings become (H, W, 3) uint8 RGB, single-channel
    ones (mono8/mono16/16UC1/32FC1/32SC1...) (H, W) in their own dtype. Row padding (step) and
    big-endian data are handled."""
    enc = str(msg.encoding)
    if enc not in _IMAGE_ENC:
        raise DecodeError(f"Image encoding '{enc}' not supported ({', '.join(_IMAGE_ENC)})")
    code, ch = _IMAGE_ENC[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    dt = np.dtype(code).newbyteorder(">" if bool(msg.is_bigendian) else "<")
    row = w * ch * dt.itemsize
    buf = _bytes(msg.data)
    if step < row or len(buf) < step * max(h - 1, 0) + row * (h > 0):
        raise DecodeError(f"Image data has {len(buf)} bytes, expected {h} rows of {step} (encoding {enc})")
    a = np.ndarray((h, w, ch), dtype=dt, buffer=buf, strides=(step, ch * dt.itemsize, dt.itemsize))
    a = a.astype(dt.newbyteorder("="))
    if enc.startswith("bgr"):
        a = a[:, :, [2, 1, 0]]
    if ch >= 3:
        return np.ascontiguousarray(a[:, :, :3])
    return a[:, :, 0]


def camera_info_to_intrinsics(msg) -> CameraIntrinsics:
    """sensor_msgs/CameraInfo (ROS 1 ``K``/``D`` or ROS 2 ``k``/``d``) -> :class:`CameraIntrinsics`.
    ``equidistant``/``fisheye`` distortion models become the equidistant fisheye model."""
    K = np.asarray(_get(msg, "k", "K"), float).reshape(-1)
    if K.size != 9 or not np.all(np.isfinite(K)) or K[0] <= 0 or K[4] <= 0:
        raise DecodeError("CameraInfo K is missing, not finite or has a non-positive focal length")
    D = np.asarray(_get(msg, "d", "D"), float).reshape(-1)
    model = str(getattr(msg, "distortion_model", "") or "plumb_bob")
    model = "equidistant" if model in ("equidistant", "fisheye", "kannala_brandt") else "pinhole"
    Dn = np.zeros(max(4, D.size))
    Dn[:D.size] = D
    return CameraIntrinsics(width=int(msg.width), height=int(msg.height), fx=float(K[0]),
                            fy=float(K[4]), cx=float(K[2]), cy=float(K[5]), model=model, D=Dn)


def depth_image_to_m(msg, depth_scale_m: float = 0.001) -> np.ndarray:
    """A raw depth Image (16UC1 mm or 32FC1 m) -> (H, W) float32 metres, NaN -> 0."""
    a = image_to_numpy(msg)
    d = a.astype(np.float32) * (np.float32(depth_scale_m) if np.issubdtype(a.dtype, np.integer) else 1.0)
    d[~np.isfinite(d)] = 0.0
    return d


def __getattr__(name):  # encoders are re-exported lazily from geoloc_ros.io.encoders
    if name.startswith("encode_"):
        from geoloc_ros.io import encoders
        return getattr(encoders, name)
    raise AttributeError(name)
