"""Profile-aware decoding: (role, ROS message) -> :mod:`geoloc_ros.events`, time-ordered.

Shared by the bag reader (:func:`geoloc_ros.io.bags.read_events`) and the live ROS nodes, so a
profile's quirks (units, GPS-time stamps, u-blox status, covariance from receiver_pvt,
extrinsics) are applied identically in replay and on the robot.

:class:`EventAssembler` steps, per pushed message:
  1. decode with the role's :class:`TopicSpec` (bad messages are skipped and counted with a reason);
  2. side data is kept, not emitted: receiver PVT (h_acc/v_acc by time), CameraInfo intrinsics,
     depth and instance images (joined to the colour frame with the nearest stamp);
  3. events wait in a reorder buffer ``reorder_window_s`` long and leave it sorted by stamp;
     on leaving, GNSS fixes with no covariance get one from the PVT nearest in time and colour
     frames get their depth/instance images.
"""
from __future__ import annotations

import heapq
import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from geoloc_ros import msgs as M
from geoloc_ros.events import GnssEvent, ImageEvent, ScanEvent
from geoloc_ros.io.profiles import Profile, TopicSpec

__all__ = ["decode_message", "EventAssembler", "AssemblerStats"]

_EYE4 = np.eye(4)


@dataclass
class AssemblerStats:
    """Counters of what was decoded, emitted, skipped (with the first reason per role), late."""
    decoded: Counter = field(default_factory=Counter)
    emitted: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    reasons: dict = field(default_factory=dict)
    late: int = 0
    gnss_cov_from_pvt: int = 0
    gnss_cov_missing: int = 0

    def skip(self, role: str, reason: str) -> None:
        self.skipped[role] += 1
        self.reasons.setdefault(role, reason)


def _rgb(a: np.ndarray) -> np.ndarray:
    if a.ndim == 2:
        if a.dtype != np.uint8:
            a = (a.astype(np.float64) / max(float(a.max()), 1.0) * 255.0).astype(np.uint8)
        return np.repeat(a[:, :, None], 3, axis=2)
    return a


def decode_message(spec: TopicSpec, msg, leap_seconds: float = 18.0):
    """One message of a profile role -> an event (or, for side roles, a dict / array with ``t``).

    Raises :class:`geoloc_ros.msgs.DecodeError` for a message that cannot be used.
    """
    kind, off = spec.kind, spec.stamp_offset_s
    if kind == "lidar":
        d = (M.livox_custom_to_numpy(msg) if "CustomMsg" in spec.msgtype
             else M.pointcloud2_to_numpy(msg, spec.point_time_scale_s))
        return ScanEvent(t=d["t"] + off, points=d["xyz"], intensity=d["intensity"], point_time_s=d["time_s"],
                         ring=d["ring"], frame_id=d["frame_id"] or spec.frame_id or "lidar",
                         T_base_sensor=spec.T_base_sensor.copy())
    if kind == "imu":
        return M.imu_to_event(msg, spec.acc_scale, spec.T_base_sensor, "base_link", off)
    if kind == "wheel":
        T = None if np.array_equal(spec.T_base_sensor, _EYE4) else spec.T_base_sensor
        return M.odometry_to_wheel(msg, T, "base_link", stamp_offset_s=off)
    if kind == "gnss":
        return M.navsatfix_to_gnss(msg, spec.status_encoding, off, frame_id=spec.frame_id or None)
    if kind == "gnss_pvt":
        return M.gnss_pvt_to_dict(msg, leap_seconds)
    if kind == "initialpose":
        return M.pose_with_cov_to_fix(msg)
    if kind == "camera_info":
        t, _ = M._header(msg)
        return {"t": t + off, "intrinsics": M.camera_info_to_intrinsics(msg)}
    t, frame = M._header(msg)
    t += off
    frame = frame or spec.frame_id or "camera"
    compressed = spec.msgtype.endswith("CompressedImage")
    if kind == "camera_rgb":
        img = M.compressed_image_to_numpy(msg) if compressed else M.image_to_numpy(msg)
        return ImageEvent(t=t, rgb=_rgb(img), intrinsics=spec.intrinsics, frame_id=frame,
                          T_base_sensor=spec.T_base_sensor.copy())
    if kind == "camera_depth":
        if compressed:
            fmt = str(getattr(msg, "format", ""))
            if "compressedDepth" in fmt:
                d = M.compressed_depth_to_numpy(msg, spec.depth_scale_m)
            else:
                a = M.compressed_image_to_numpy(msg)
                if a.ndim != 2:
                    raise M.DecodeError(f"depth image '{fmt}' decodes to {a.shape}, expected one channel")
                d = a.astype(np.float32) * np.float32(spec.depth_scale_m)
        else:
            d = M.depth_image_to_m(msg, spec.depth_scale_m)
        return {"t": t, "depth_m": d, "frame_id": frame}
    if kind == "camera_instance":
        a = M.image_to_numpy(msg)
        if a.ndim != 2:
            raise M.DecodeError(f"instance image must have one channel, got shape {a.shape}")
        return {"t": t, "instance": a.astype(np.int32), "frame_id": frame}
    raise M.DecodeError(f"role '{spec.role}' has no decoder")


class EventAssembler:
    """Turns (role, message) pairs into time-ordered events with the profile applied."""

    def __init__(self, profile: Profile, roles: list[str] | None = None, reorder_window_s: float = 0.5,
                 pair_tol_s: float = 0.02, pvt_tol_s: float = 0.1):
        self.profile = profile
        self.roles = list(roles) if roles is not None else profile.primary_roles()
        self.window_s = float(reorder_window_s)
        self.pair_tol_s = float(pair_tol_s)
        self.pvt_tol_s = float(pvt_tol_s)
        self.stats = AssemblerStats()
        self._heap: list = []
        self._seq = itertools.count()
        self._newest = -np.inf
        self._last_out = -np.inf
        self._pvt: list[dict] = []                       # recent PVT solutions, by arrival
        self._side: dict[str, list[dict]] = defaultdict(list)  # camera depth/instance by role
        self._intrinsics = None

    def needed_roles(self) -> list[str]:
        """The requested roles plus the side roles they depend on (PVT, depth, camera_info)."""
        need = list(self.roles)
        for r in self.roles:
            s = self.profile.roles[r]
            if s.covariance_from and s.covariance_from not in need:
                need.append(s.covariance_from)
        if "camera_rgb" in self.roles:  # colour frames carry their depth/instance images
            for side in ("camera_info", "camera_depth", "camera_instance"):
                if side in self.profile.roles and side not in need:
                    need.append(side)
        return need

    # ---- input ------------------------------------------------------------------------------
    def push(self, role: str, msg) -> list:
        """Decode one message of ``role``; returns the events now ready (sorted by stamp)."""
        spec = self.profile.roles[role]
        try:
            out = decode_message(spec, msg, self.profile.leap_seconds)
        except M.DecodeError as e:
            self.stats.skip(role, str(e))
            return []
        except (AttributeError, TypeError, ValueError, IndexError) as e:  # malformed message object
            self.stats.skip(role, f"malformed {spec.msgtype}: {type(e).__name__}: {e}")
            return []
        self.stats.decoded[role] += 1
        kind = spec.kind
        t = float(out["t"] if isinstance(out, dict) else out.t)
        if kind == "gnss_pvt":
            self._pvt.append(out)
            return self._drain()
        if kind == "camera_info":
            self._intrinsics = out["intrinsics"]
            return self._drain()
        if kind in ("camera_depth", "camera_instance") and "camera_rgb" in self.roles:
            self._side[kind].append(out)
            return self._drain()
        if isinstance(out, dict):  # depth/instance alone: an image event without colour
            out = ImageEvent(t=t, rgb=None, depth_m=out.get("depth_m"), instance=out.get("instance"),
                             intrinsics=spec.intrinsics, frame_id=out["frame_id"],
                             T_base_sensor=spec.T_base_sensor.copy())
        if t < self._last_out:
            self.stats.late += 1
        heapq.heappush(self._heap, (t, next(self._seq), role, out))
        self._newest = max(self._newest, t)
        return self._drain()

    def flush(self) -> list:
        """Everything still buffered, in stamp order (call at the end of a bag)."""
        return self._drain(final=True)

    # ---- output -----------------------------------------------------------------------------
    def _drain(self, final: bool = False) -> list:
        ready = []
        limit = np.inf if final else self._newest - self.window_s
        while self._heap and self._heap[0][0] <= limit:
            t, _, role, ev = heapq.heappop(self._heap)
            ready.append(self._finish(role, ev))
            self.stats.emitted[role] += 1
            self._last_out = max(self._last_out, t)
        self._trim(limit if np.isfinite(limit) else self._newest)
        return ready

    def _finish(self, role: str, ev):
        spec = self.profile.roles[role]
        if isinstance(ev, GnssEvent) and spec.covariance_from:
            self._gnss_from_pvt(ev)
        elif isinstance(ev, ImageEvent) and spec.kind == "camera_rgb" and role == "camera_rgb":
            if ev.intrinsics is None:
                ev.intrinsics = self._intrinsics
            for kind, attr in (("camera_depth", "depth_m"), ("camera_instance", "instance")):
                m = self._nearest(self._side[kind], ev.t, self.pair_tol_s)
                if m is not None:
                    setattr(ev, attr, m[attr])
        return ev

    @staticmethod
    def _nearest(items: list[dict], t: float, tol: float):
        best, bd = None, tol
        for it in items:
            d = abs(it["t"] - t)
            if d <= bd:
                best, bd = it, d
        return best

    def _gnss_from_pvt(self, ev: GnssEvent) -> None:
        p = self._nearest(self._pvt, ev.t, self.pvt_tol_s)
        if p is not None:
            ev.num_sv = p["num_sv"]
        if ev.cov_enu_m2 is not None:
            return
        if p is None or not (p["h_acc_m"] > 0 and p["v_acc_m"] > 0):
            self.stats.gnss_cov_missing += 1
            return
        # u-blox hAcc is the 1-sigma horizontal (2-D) accuracy: split evenly over east and north
        h2 = p["h_acc_m"] ** 2 / 2.0
        ev.cov_enu_m2 = np.diag([h2, h2, p["v_acc_m"] ** 2])
        self.stats.gnss_cov_from_pvt += 1

    def _trim(self, t_now: float) -> None:
        """Forget side data older than what can still be matched."""
        keep_after = t_now - self.window_s - 1.0
        if len(self._pvt) > 64:
            self._pvt = [p for p in self._pvt if p["t"] >= keep_after]
        for k, items in self._side.items():
            if len(items) > 16:
                self._side[k] = [i for i in items if i["t"] >= keep_after]
