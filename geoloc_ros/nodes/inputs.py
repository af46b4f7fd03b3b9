"""Live messages -> pipeline events for the nodes, through ``geoloc_ros.msgs`` and the profile.

One :class:`InputDecoder` per node: it knows the sensor profile (extrinsics, frame ids, quirks)
and turns each subscribed message into an event of ``geoloc_ros.events``, or raises
:class:`RejectedInput` with a short reason (``wrong_frame``, ``nan``, ``empty``, ``decode_error``)
that the node counts in its diagnostics.
"""
from __future__ import annotations

import collections
import copy
import logging
import math

import numpy as np

from geoloc_ros import events as ev
from geoloc_ros.nodes.common import stamp_to_s, validate_event

log = logging.getLogger("geoloc_ros.nodes")

__all__ = ["InputDecoder", "RejectedInput"]


class RejectedInput(ValueError):
    """A message the node does not feed to the pipeline; ``reason`` is the diagnostics counter."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def _spec(profile, role: str):
    roles = getattr(profile, "roles", None) or {}
    return roles.get(role)


class InputDecoder:
    """Decode rclpy messages into events with the profile's extrinsics and quirks applied."""

    def __init__(self, profile=None, base_frame: str = "base_link", min_points: int = 10):
        self.profile = profile
        self.base_frame = base_frame
        self.min_points = min_points
        self.intrinsics: ev.CameraIntrinsics | None = None
        self._depths: collections.deque = collections.deque(maxlen=8)   # (stamp s, (H, W) depth m)
        self._instances: collections.deque = collections.deque(maxlen=8)  # (stamp s, (H, W) int32 ids)

    # ---- helpers ----------------------------------------------------------------------------
    def expected_frame(self, role: str) -> str:
        """The header frame_id the profile declares for ``role`` ('' = accept any)."""
        s = _spec(self.profile, role)
        return (getattr(s, "frame_id", "") or "") if s is not None else ""

    def T_base_sensor(self, role: str) -> np.ndarray:
        s = _spec(self.profile, role)
        T = getattr(s, "T_base_sensor", None) if s is not None else None
        return np.eye(4) if T is None else np.asarray(T, float)

    def _check_frame(self, role: str, msg, also_ok: tuple[str, ...] = ()) -> None:
        want = self.expected_frame(role)
        got = msg.header.frame_id
        if want and got and got not in (want, *also_ok):  # empty: the profile's frame is assumed
            raise RejectedInput("wrong_frame", f"{role}: frame_id '{got}', expected '{want}'")

    def _finish(self, e):
        reason = validate_event(e, self.min_points)
        if reason is not None:
            raise RejectedInput(reason, type(e).__name__)
        return e

    @staticmethod
    def _msgs():
        from geoloc_ros import msgs
        return msgs

    # ---- one method per input ---------------------------------------------------------------
    def points(self, msg) -> ev.ScanEvent:
        self._check_frame("lidar", msg)
        m = self._msgs()
        try:
            # NaN/inf points stay in: the pipeline's input checks drop and count them (scan.nan_*),
            # so a live cloud with bad points shows up in /diagnostics
            cloud = m.pointcloud2_to_numpy(msg, self._quirk("lidar", "point_time_scale_s", None),
                                           keep_nan=True)
        except Exception as e:  # noqa: BLE001 - any malformed cloud
            raise RejectedInput("decode_error", str(e)) from None
        return self._finish(self._scan_from(cloud, msg))

    def livox(self, msg) -> ev.ScanEvent:
        self._check_frame("lidar", msg)
        m = self._msgs()
        try:
            cloud = m.livox_custom_to_numpy(msg)
        except Exception as e:  # noqa: BLE001
            raise RejectedInput("decode_error", str(e)) from None
        return self._finish(self._scan_from(cloud, msg))

    def _scan_from(self, cloud: dict, msg) -> ev.ScanEvent:
        pts = np.asarray(cloud["xyz"], float)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise RejectedInput("malformed", f"cloud of shape {pts.shape}")
        return ev.ScanEvent(t=float(cloud["t"]) + self._quirk("lidar", "stamp_offset_s", 0.0),
                            points=pts, intensity=cloud.get("intensity"),
                            point_time_s=cloud.get("time_s"), ring=cloud.get("ring"),
                            frame_id=msg.header.frame_id, T_base_sensor=self.T_base_sensor("lidar"))

    def _quirk(self, role: str, name: str, default):
        """A unit/quirk flag of the profile's TopicSpec (``acc_scale``, ``stamp_offset_s``...)."""
        s = _spec(self.profile, role)
        if s is None:
            return default
        v = getattr(s, name, None)
        if v is None and isinstance(getattr(s, "quirks", None), dict):
            v = s.quirks.get(name)
        return default if v is None else v

    def imu(self, msg) -> ev.ImuEvent:
        self._check_frame("imu", msg)
        try:
            e = self._msgs().imu_to_event(
                msg, acc_scale=float(self._quirk("imu", "acc_scale", 1.0)),
                T_base_sensor=self.T_base_sensor("imu"), frame_id=self.base_frame,
                stamp_offset_s=float(self._quirk("imu", "stamp_offset_s", 0.0)))
        except Exception as ex:  # noqa: BLE001 - DecodeError and anything a broken message raises
            raise RejectedInput("nan" if "finite" in str(ex) else "decode_error", str(ex)) from None
        return self._finish(e)

    def wheel(self, msg) -> ev.WheelEvent:
        self._check_frame("wheel", msg)
        spec = _spec(self.profile, "wheel")
        T = None if spec is None else self.T_base_sensor("wheel")
        try:
            e = self._msgs().odometry_to_wheel(
                msg, T_base_sensor=T, frame_id=self.base_frame,
                stamp_offset_s=float(self._quirk("wheel", "stamp_offset_s", 0.0)))
        except Exception as ex:  # noqa: BLE001
            raise RejectedInput("nan" if "finite" in str(ex) else "decode_error", str(ex)) from None
        return self._finish(e)

    def gnss(self, msg) -> ev.GnssEvent:
        """NavSatFix -> GnssEvent. A fix whose status claims a position but whose latitude or
        longitude is non-finite or out of range is rejected (``nan``, ``out_of_range``); with a
        no-fix status such coordinates are normal and it becomes a NO_FIX event."""
        self._check_frame("gnss", msg)
        kw = {"status_encoding": str(self._quirk("gnss", "status_encoding", "navsatfix")),
              "stamp_offset_s": float(self._quirk("gnss", "stamp_offset_s", 0.0))}
        try:
            e = self._msgs().navsatfix_to_gnss(msg, **kw)
            lat, lon = float(msg.latitude), float(msg.longitude)
            bad = "nan" if not (math.isfinite(lat) and math.isfinite(lon)) else (
                "out_of_range" if abs(lat) > 90 or abs(lon) > 180 else None)
            if bad is not None and e.status == ev.FixStatus.NO_FIX:
                claimed = copy.copy(msg)
                claimed.latitude, claimed.longitude = 0.0, 0.0
                if self._msgs().navsatfix_to_gnss(claimed, **kw).status != ev.FixStatus.NO_FIX:
                    raise RejectedInput(bad, f"GNSS fix status with latitude {lat}, longitude {lon}")
        except RejectedInput:
            raise
        except Exception as ex:  # noqa: BLE001
            raise RejectedInput("decode_error", str(ex)) from None
        return self._finish(e)

    def initialpose(self, msg, map_frame: str) -> ev.PoseFixEvent:
        if msg.header.frame_id not in (map_frame, ""):
            raise RejectedInput("wrong_frame", f"initialpose in '{msg.header.frame_id}', expected '{map_frame}'")
        try:
            e = self._msgs().pose_with_cov_to_fix(msg, source="initialpose", dof="xyyaw")
        except Exception as ex:  # noqa: BLE001
            raise RejectedInput("nan" if "finite" in str(ex) else "decode_error", str(ex)) from None
        if np.all(e.cov6 == 0):
            # a zero matrix means "unknown": RViz's 2D Pose Estimate spread (0.5 m, 15 deg)
            e.cov6 = np.diag([0.25, 0.25, 1.0, 0.05, 0.05, 0.07])
        e.frame_id = map_frame
        return self._finish(e)

    def fix(self, msg, source: str, map_frame: str) -> ev.PoseFixEvent:
        """geoloc/bev_fix, geoloc/object_fix (split layout) -> PoseFixEvent."""
        if msg.header.frame_id != map_frame:
            raise RejectedInput("wrong_frame", f"{source} fix in '{msg.header.frame_id}'")
        dof = "xyzyaw" if source == "objects" else "xyyaw"
        try:
            e = self._msgs().pose_with_cov_to_fix(msg, source=source, dof=dof)
        except Exception as ex:  # noqa: BLE001
            raise RejectedInput("nan" if "finite" in str(ex) else "decode_error", str(ex)) from None
        return self._finish(e)

    def camera_info(self, msg) -> None:
        try:
            self.intrinsics = self._msgs().camera_info_to_intrinsics(msg)
        except Exception as ex:  # noqa: BLE001
            raise RejectedInput("decode_error", str(ex)) from None

    def depth(self, msg, compressed: bool) -> None:
        m = self._msgs()
        try:
            scale = float(self._quirk("camera_depth", "depth_scale_m", 0.001))
            d = (m.compressed_depth_to_numpy(msg, scale) if compressed
                 else m.depth_image_to_m(msg, scale))
        except Exception as ex:  # noqa: BLE001
            raise RejectedInput("decode_error", str(ex)) from None
        d = np.asarray(d)
        if d.ndim != 2 or d.size == 0:
            raise RejectedInput("malformed", f"depth of shape {d.shape}")
        self._depths.append((stamp_to_s(msg.header.stamp), d.astype(np.float32)))

    def instance(self, msg) -> None:
        """camera/instance (16UC1/32SC1 instance ids aligned with the colour image; the
        simulator's extra, as the offline reader's ``camera_instance`` role)."""
        try:
            a = np.asarray(self._msgs().image_to_numpy(msg))
        except Exception as ex:  # noqa: BLE001
            raise RejectedInput("decode_error", str(ex)) from None
        if a.ndim != 2 or a.size == 0:
            raise RejectedInput("malformed", f"instance image of shape {a.shape}")
        self._instances.append((stamp_to_s(msg.header.stamp), a.astype(np.int32)))

    def attach_depth(self, img: ev.ImageEvent, max_depth_dt_s: float = 0.05) -> bool:
        """Give ``img`` the received depth (and instance) image closest in stamp, within
        ``max_depth_dt_s``; the topics arrive independently, so the node calls this again when
        it processes the image. True when a depth was attached."""
        for buf, attr in ((self._instances, "instance"), (self._depths, "depth_m")):
            if getattr(img, attr) is not None:
                continue
            best = min(list(buf), key=lambda d: abs(d[0] - img.t), default=None)
            if best is not None and abs(best[0] - img.t) <= max_depth_dt_s:
                setattr(img, attr, best[1])
        return img.depth_m is not None

    def image(self, msg, compressed: bool, max_depth_dt_s: float = 0.05) -> ev.ImageEvent:
        self._check_frame("camera_rgb", msg)
        m = self._msgs()
        try:
            rgb = m.compressed_image_to_numpy(msg) if compressed else m.image_to_numpy(msg)
        except Exception as ex:  # noqa: BLE001
            raise RejectedInput("decode_error", str(ex)) from None
        rgb = np.asarray(rgb)
        if rgb.ndim < 2 or rgb.size == 0:
            raise RejectedInput("empty", "image")
        t = stamp_to_s(msg.header.stamp)
        intr = self.intrinsics or getattr(_spec(self.profile, "camera_rgb"), "intrinsics", None)
        e = ev.ImageEvent(t=t, rgb=rgb, depth_m=None, intrinsics=intr, frame_id=msg.header.frame_id,
                          T_base_sensor=self.T_base_sensor("camera_rgb"))
        self.attach_depth(e, max_depth_dt_s)
        return self._finish(e)
