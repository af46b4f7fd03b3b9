"""Time-stamped sensor events and engine/filter outputs: the pipeline's only currency.

``geoloc_ros.msgs`` turns ROS messages (rclpy or rosbags) into these; the simulator produces them
directly; ``geoloc_ros.pipeline.Localizer`` consumes them. Everything is numpy, SI units,
times are float seconds from the message header stamp.
Frames (REP-105): ``map`` (prior map), ``odom`` (continuous), ``base_link`` (robot body).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np


class FixStatus(enum.IntEnum):
    """GNSS fix quality after a profile has normalised the receiver's own encoding."""
    NO_FIX = -1
    FIX = 0          # single point
    SBAS = 1
    GBAS = 2         # DGNSS / RTK float
    RTK_FIXED = 3


class Verdict(str, enum.Enum):
    """Per-epoch verdict of the GNSS degradation monitor."""
    OK = "OK"
    DEGRADED = "DEGRADED"
    REJECTED = "REJECTED"
    DENIED = "DENIED"


class CandidateStatus(str, enum.Enum):
    """Outcome of a global-localization engine on one query."""
    OK = "OK"
    NO_FIX = "NO_FIX"


@dataclass
class ImuEvent:
    """IMU sample in the base_link frame (profile extrinsic and units already applied)."""
    t: float
    acc_mps2: np.ndarray      # (3,) specific force, m/s^2
    gyr_rps: np.ndarray       # (3,) angular rate, rad/s
    orientation_xyzw: np.ndarray | None = None  # (4,) when the IMU reports one
    frame_id: str = "base_link"


@dataclass
class WheelEvent:
    """Wheel odometry: body-frame forward speed and yaw rate of base_link."""
    t: float
    v_mps: float
    yaw_rate_rps: float
    var_v: float = 0.01       # (m/s)^2
    var_yaw_rate: float = 0.001  # (rad/s)^2
    frame_id: str = "base_link"


@dataclass
class VelocityEvent:
    """Body-frame velocity of base_link from an odometry source other than the wheels
    (LiDAR odometry): linear velocity and angular rate with their covariances.

    Unlike :class:`WheelEvent` it carries no non-holonomic assumption (a handheld rig such as
    Oxford Spires moves sideways), so the filter applies it as a full 3-D body-velocity update.
    """
    t: float
    v_mps: np.ndarray                 # (3,) base_link linear velocity in the base_link frame, m/s
    w_rps: np.ndarray                 # (3,) base_link angular rate in the base_link frame, rad/s
    cov_v: np.ndarray = field(default_factory=lambda: np.eye(3) * 0.04)   # (3, 3) (m/s)^2
    cov_w: np.ndarray = field(default_factory=lambda: np.eye(3) * 1e-3)   # (3, 3) (rad/s)^2
    source: str = "lidar_odom"
    frame_id: str = "base_link"


@dataclass
class GnssEvent:
    """GNSS position fix of the antenna (WGS-84), normalised by the profile."""
    t: float
    lat_deg: float
    lon_deg: float
    alt_m: float
    cov_enu_m2: np.ndarray | None  # (3, 3) reported covariance in ENU, None when unknown
    status: FixStatus = FixStatus.FIX
    num_sv: int = -1
    frame_id: str = "gnss"


@dataclass
class ScanEvent:
    """One LiDAR sweep, points in the sensor frame; ``T_base_sensor`` levels them to base_link."""
    t: float
    points: np.ndarray                 # (N, 3) float32/64, m, sensor frame
    intensity: np.ndarray | None = None  # (N,)
    point_time_s: np.ndarray | None = None  # (N,) time offset of each point from ``t``
    ring: np.ndarray | None = None       # (N,)
    frame_id: str = "lidar"
    T_base_sensor: np.ndarray = field(default_factory=lambda: np.eye(4))

    @property
    def t_middle(self) -> float:
        """Stamp (s) of the middle of the sweep: ``t`` plus :func:`sweep_middle_offset_s` of the
        per-point times. A product of the whole sweep (a BEV image, an ICP pose) shows the robot
        there, not at the stamp (a driver stamps the first point, a sweep lasts 0.1 s): a map
        keyframe posed at its stamp and a fix stamped at its stamp each sit half a sweep of motion
        off, which cancels on a same-direction revisit and doubles on a reversed one."""
        return float(self.t) + sweep_middle_offset_s(self.point_time_s, len(self.points))


def sweep_middle_offset_s(point_time_s, n_points: int | None = None) -> float:
    """Offset (s) of the middle of a sweep from its stamp: the midpoint of the finite (N,) per-point
    times; 0 when there are none, they do not match ``n_points``, or they span more than 1 s
    (unusable: a stamp is better than a wrong middle)."""
    if point_time_s is None:
        return 0.0
    pt = np.asarray(point_time_s, float).reshape(-1)
    if len(pt) == 0 or (n_points is not None and len(pt) != n_points):
        return 0.0
    pt = pt[np.isfinite(pt)]
    if len(pt) == 0:
        return 0.0
    lo, hi = float(pt.min()), float(pt.max())
    return 0.5 * (lo + hi) if max(abs(lo), abs(hi)) <= 1.0 else 0.0


@dataclass
class CameraIntrinsics:
    """Pinhole (fx, fy, cx, cy) or equidistant fisheye (``model == 'equidistant'`` with D=(k1..k4))."""
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    model: str = "pinhole"
    D: np.ndarray = field(default_factory=lambda: np.zeros(4))


@dataclass
class ImageEvent:
    """Camera frame, optionally with aligned depth and an instance-id image."""
    t: float
    rgb: np.ndarray | None             # (H, W, 3) uint8
    depth_m: np.ndarray | None = None  # (H, W) float32, metres, 0 or NaN where unknown
    instance: np.ndarray | None = None  # (H, W) int32 instance ids, 0 = none
    intrinsics: CameraIntrinsics | None = None
    frame_id: str = "camera"
    T_base_sensor: np.ndarray = field(default_factory=lambda: np.eye(4))


@dataclass
class PoseFixEvent:
    """An absolute pose measurement in the map frame (from an engine, or an initial pose)."""
    t: float
    T_map_base: np.ndarray       # (4, 4)
    cov6: np.ndarray             # (6, 6) ROS order x, y, z, roll, pitch, yaw
    source: str = "external"     # "bev", "objects", "initialpose", ...
    frame_id: str = "map"
    dof: str = "xyyaw"           # "xyyaw" (3-DoF) or "xyzyaw" (4-DoF) or "full"


@dataclass
class Candidate:
    """What every engine returns per query: (pose, covariance, score, status) plus the why."""
    T_map_base: np.ndarray | None  # (4, 4), None when no fix
    cov6: np.ndarray | None        # (6, 6) ROS order
    score: float
    status: CandidateStatus
    reason: str = ""
    source: str = ""
    info: dict = field(default_factory=dict)  # engine-specific numbers (inliers, keyframe id, timings)


@dataclass
class PoseEstimate:
    """The pipeline's output: map-frame pose with covariance, twist and the filter's verdicts."""
    t: float
    T_map_base: np.ndarray       # (4, 4)
    cov6: np.ndarray             # (6, 6) ROS order x, y, z, roll, pitch, yaw
    twist: np.ndarray = field(default_factory=lambda: np.zeros(6))  # (6,) body v (m/s), w (rad/s)
    mode: str = "dead_reckoning"  # "localized", "dead_reckoning", "not_localized"
    gnss_verdict: Verdict | None = None
    gnss_reason: str = ""
    wheel_slip: bool = False
    wheel_scale: float = 1.0        # estimated reported / true wheel speed (1: calibrated)
    wheel_scale_std: float = 0.0    # its standard deviation
    counters: dict = field(default_factory=dict)   # rejections and why, per input
    T_map_odom: np.ndarray | None = None
