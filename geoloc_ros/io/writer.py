"""Write events into a bag in a profile's layout (ROS 1 ``.bag`` or ROS 2 sqlite3/mcap).

:class:`BagWriter` encodes each event into its role's topic and message type and applies the
inverse of the profile's quirks, so that :func:`geoloc_ros.io.bags.read_events` with the same
profile gives back what was written. For ``m3dgr``: GNSS header stamps in GPS time
(``-stamp_offset_s`` added), u-blox fix type / carrier solution in ``status``, empty
covariance and frame_id with the accuracy in ``receiver_pvt`` (GPS week/tow, no header),
Livox IMU acceleration in g. The bag record time of every message is the event's UTC stamp.

    with BagWriter("run.bag", load_profile("m3dgr")) as w:
        w.write(imu_event); w.write(scan_event); w.write(gnss_event)
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from geoloc_ros.events import GnssEvent, ImageEvent, ImuEvent, PoseFixEvent, ScanEvent, WheelEvent
from geoloc_ros.io import encoders as E
from geoloc_ros.io.bags import BagError
from geoloc_ros.io.livox_raw import livox_to_raw
from geoloc_ros.io.profiles import Profile, TopicSpec, load_profile
from geoloc_ros.msgs import make_typestore

__all__ = ["BagWriter"]

_DEFAULT_ROLE = {ScanEvent: "lidar", ImuEvent: "imu", WheelEvent: "wheel", GnssEvent: "gnss",
                 ImageEvent: "camera_rgb", PoseFixEvent: "initialpose"}


class BagWriter:
    """Context manager writing events (``write``) or ready messages (``write_raw``) to a bag.

    ``path``: ``*.bag`` for a ROS 1 profile; a directory (or ``*.db3``/``*.mcap`` name, used as
    the directory name without suffix) for ROS 2, with ``storage`` "sqlite3" or "mcap".
    ``overwrite`` removes an existing bag at ``path`` first.
    """

    def __init__(self, path: str | Path, profile: str | Path | Profile, storage: str = "sqlite3",
                 overwrite: bool = False):
        self.profile = load_profile(profile)
        self.ros_version = self.profile.ros_version
        p = Path(path)
        if self.ros_version == 1 and p.suffix != ".bag":
            p = p.with_suffix(".bag")
        if self.ros_version == 2 and p.suffix in (".db3", ".mcap"):
            storage = "mcap" if p.suffix == ".mcap" else "sqlite3"
            p = p.with_suffix("")
        if storage not in ("sqlite3", "mcap"):
            raise BagError(f"{p}: unknown ROS 2 storage '{storage}' (sqlite3 or mcap)")
        self.path, self.storage, self.overwrite = p, storage, overwrite
        self.ts = make_typestore(self.ros_version)
        self._writer = None
        self._conns: dict[str, object] = {}
        self.counts: dict[str, int] = {}

    # ---- context ----------------------------------------------------------------------------
    def __enter__(self) -> "BagWriter":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        if self.path.exists():
            if not self.overwrite:
                raise BagError(f"{self.path}: exists (pass overwrite=True to replace it)")
            shutil.rmtree(self.path) if self.path.is_dir() else self.path.unlink()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.ros_version == 1:
            from rosbags.rosbag1 import Writer
            self._writer = Writer(self.path)
        else:
            from rosbags.rosbag2 import StoragePlugin, Writer
            plugin = StoragePlugin.MCAP if self.storage == "mcap" else StoragePlugin.SQLITE3
            self._writer = Writer(self.path, version=9, storage_plugin=plugin)
        self._writer.open()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # ---- raw --------------------------------------------------------------------------------
    def write_raw(self, topic: str, msgtype: str, t_s: float, msg) -> None:
        """Write a ready rosbags message object at record time ``t_s`` (unix s)."""
        if msgtype not in self.ts.fielddefs:
            raise BagError(f"{self.path}: unknown message type {msgtype} for topic {topic}")
        data = (self.ts.serialize_ros1(msg, msgtype) if self.ros_version == 1
                else self.ts.serialize_cdr(msg, msgtype))
        self._write_bytes(topic, msgtype, t_s, bytes(data))

    def _write_bytes(self, topic: str, msgtype: str, t_s: float, data: bytes) -> None:
        """Write already-serialized bytes (ROS 1 or CDR, matching the bag) at record time ``t_s``."""
        if self._writer is None:
            raise BagError(f"{self.path}: writer is not open")
        conn = self._conns.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, msgtype, typestore=self.ts)
            self._conns[topic] = conn
        self._writer.write(conn, int(round(t_s * 1e9)), data)
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def _spec(self, role: str) -> TopicSpec:
        spec = self.profile.roles.get(role)
        if spec is None:
            raise BagError(f"profile '{self.profile.name}' has no role '{role}' (roles: {', '.join(self.profile.roles)})")
        return spec

    def _put(self, spec: TopicSpec, t_rec: float, msg) -> None:
        self.write_raw(spec.topic, spec.msgtype, t_rec, msg)

    # ---- events -----------------------------------------------------------------------------
    def write(self, event, role: str | None = None, **extra) -> None:
        """Encode ``event`` into ``role``'s topic (default role by event type).

        Extras: ``T_odom_base`` for a WheelEvent (pose of the Odometry message); ``h_acc_m``,
        ``v_acc_m`` for a GnssEvent (receiver_pvt accuracy; default from its covariance).
        """
        if role is None:  # by event type, subclasses included (the simulator's Sim* events)
            role = next((_DEFAULT_ROLE[k] for k in type(event).__mro__ if k in _DEFAULT_ROLE), None)
        if role is None:
            raise BagError(f"cannot write a {type(event).__name__}")
        spec = self._spec(role)
        ts, t = self.ts, float(event.t)
        frame = spec.frame_id or getattr(event, "frame_id", "")
        if isinstance(event, ScanEvent):
            if "CustomMsg" in spec.msgtype:
                self._write_livox(spec, event, frame)
                return
            else:
                msg = E.encode_pointcloud2(ts, t - spec.stamp_offset_s, frame, event.points, event.intensity,
                                           event.ring, event.point_time_s, spec.point_time_field,
                                           spec.point_time_dtype)
            self._put(spec, t, msg)
        elif isinstance(event, ImuEvent):
            self._put(spec, t, E.encode_imu(ts, event, frame, spec.T_base_sensor, spec.acc_scale, spec.stamp_offset_s))
        elif isinstance(event, WheelEvent):
            self._put(spec, t, E.encode_odometry(ts, event, frame or "odom", "base_link",
                                                 extra.get("T_odom_base"), spec.stamp_offset_s))
        elif isinstance(event, GnssEvent):
            self._write_gnss(spec, event, **extra)
        elif isinstance(event, ImageEvent):
            self._write_image(role, spec, event)
        elif isinstance(event, PoseFixEvent):
            self._put(spec, t, E.encode_pose_with_cov(ts, event, frame or "map"))
        else:
            raise BagError(f"cannot write a {type(event).__name__}")

    def _write_livox(self, spec: TopicSpec, ev: ScanEvent, frame: str) -> None:
        """CustomMsg through the numpy serializer (timebase = header stamp, offset_time in ns)."""
        hdr = E.encode_time(self.ts, float(ev.t) - spec.stamp_offset_s)
        n = len(ev.points)
        off = np.zeros(n) if ev.point_time_s is None else np.round(np.asarray(ev.point_time_s, float) * 1e9)
        refl = np.zeros(n) if ev.intensity is None else np.clip(np.asarray(ev.intensity, float), 0, 255)
        line = np.zeros(n) if ev.ring is None else np.asarray(ev.ring)
        raw = livox_to_raw(self.ros_version, hdr.sec, hdr.nanosec, frame, np.asarray(ev.points, float).reshape(-1, 3),
                           np.clip(off, 0, 2**32 - 1).astype(np.uint32), refl.astype(np.uint8),
                           np.zeros(n, np.uint8), line.astype(np.uint8),
                           int(hdr.sec) * 1_000_000_000 + int(hdr.nanosec))
        self._write_bytes(spec.topic, spec.msgtype, float(ev.t), raw)

    def _write_gnss(self, spec: TopicSpec, ev: GnssEvent, h_acc_m: float | None = None,
                    v_acc_m: float | None = None, **_) -> None:
        pvt_role = spec.covariance_from
        # quirk inverse: with a PVT side channel the NavSatFix carries no covariance and no frame
        msg = E.encode_navsatfix(self.ts, ev, frame_id="" if pvt_role else (spec.frame_id or ev.frame_id),
                                 status_encoding=spec.status_encoding, stamp_offset_s=spec.stamp_offset_s,
                                 write_covariance=not pvt_role)
        self._put(spec, ev.t, msg)
        if pvt_role:
            if h_acc_m is None or v_acc_m is None:
                if ev.cov_enu_m2 is not None:
                    c = np.asarray(ev.cov_enu_m2, float)
                    h_acc_m = float(np.sqrt(max(c[0, 0] + c[1, 1], 0.0)))
                    v_acc_m = float(np.sqrt(max(c[2, 2], 0.0)))
                else:
                    h_acc_m, v_acc_m = 0.0, 0.0
            pvt = E.encode_gnss_pvt(self.ts, ev, h_acc_m, v_acc_m, leap_s=self.profile.leap_seconds)
            self._put(self._spec(pvt_role), ev.t, pvt)

    def _write_image(self, role: str, spec: TopicSpec, ev: ImageEvent) -> None:
        t, ts = ev.t, self.ts
        frame = spec.frame_id or ev.frame_id
        compressed = spec.msgtype.endswith("CompressedImage")
        if ev.rgb is not None:
            msg = (E.encode_compressed_image(ts, t, frame, ev.rgb, spec.image_format) if compressed
                   else E.encode_image(ts, t, frame, ev.rgb))
            self._put(spec, t, msg)
        if role != "camera_rgb":
            return
        prof = self.profile.roles
        if ev.depth_m is not None and "camera_depth" in prof:
            ds = prof["camera_depth"]
            if ds.msgtype.endswith("CompressedImage"):
                msg = E.encode_compressed_depth(ts, t, ds.frame_id or frame, ev.depth_m, ds.depth_scale_m)
            else:
                mm = np.clip(np.round(np.nan_to_num(ev.depth_m) / ds.depth_scale_m), 0, 65535).astype(np.uint16)
                msg = E.encode_image(ts, t, ds.frame_id or frame, mm, "16UC1")
            self._put(ds, t, msg)
        if ev.instance is not None and "camera_instance" in prof:
            s = prof["camera_instance"]
            ids = np.asarray(ev.instance)
            if ids.size and (ids.min() < 0 or ids.max() > 65535):
                raise ValueError("instance ids must fit 16 bits (0..65535) for the 16UC1 instance image")
            # 16UC1 halves the bag size against 32SC1 (ids of a scene fit 16 bits)
            self._put(s, t, E.encode_image(ts, t, s.frame_id or frame, ids.astype(np.uint16), "16UC1"))
        K = ev.intrinsics or spec.intrinsics
        if K is not None and "camera_info" in prof:
            s = prof["camera_info"]
            self._put(s, t, E.encode_camera_info(ts, t, s.frame_id or frame, K))
