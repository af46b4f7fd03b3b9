"""What every geoloc node shares: QoS, parameters, input guarding, diagnostics, TF, messages out.

The nodes are thin doors: messages in are turned into events by ``geoloc_ros.msgs`` and fed to
``geoloc_ros.pipeline.Localizer``; what comes out (:class:`~geoloc_ros.events.PoseEstimate`,
:class:`~geoloc_ros.events.Candidate`) is turned into messages here. Frames follow REP-105
(``map`` -> ``odom`` -> ``base_link``); covariances are 6x6 in ROS order (x, y, z, roll, pitch,
yaw), row-major in the messages.
"""
from __future__ import annotations

import collections
import dataclasses
import math
import threading
import time
from typing import Any, Callable, Iterable

import numpy as np
from builtin_interfaces.msg import Time as TimeMsg
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Pose, PoseArray, PoseWithCovarianceStamped, TransformStamped
from nav_msgs.msg import Odometry, Path
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from visualization_msgs.msg import Marker, MarkerArray

from geoloc_ros import events as ev
from geoloc_ros.config import GeolocConfig, config_from_flat, describe, flatten
from geoloc_ros.geometry import matrix_to_quat, quat_to_matrix, se3, se3_inverse
from geoloc_ros.nodes.config import NodeConfig

__all__ = [
    "SENSOR_QOS", "SENSOR_QOS_DEEP", "SENSOR_QOS_BULK", "OUTPUT_QOS", "declare_config", "stamp_to_s", "s_to_stamp", "pose_to_msg",
    "msg_to_pose", "estimate_to_pose_msg", "estimate_to_odometry", "PathBuilder",
    "candidates_to_pose_array", "candidate_to_fix_msg", "numpy_to_pointcloud2", "object_map_markers", "objects_to_markers", "validate_event",
    "EventQueue", "ComponentStats", "Diagnostics", "TfBroadcaster", "guarded",
]

# Sensor topics: best effort, keep the last few (SensorDataQoS semantics, deeper for 200 Hz IMUs).
SENSOR_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50,
                        reliability=ReliabilityPolicy.BEST_EFFORT,
                        durability=DurabilityPolicy.VOLATILE)
# High-rate small messages (IMU, wheel, GNSS): deeper, so an executor stall does not drop them.
SENSOR_QOS_DEEP = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=400,
                             reliability=ReliabilityPolicy.BEST_EFFORT,
                             durability=DurabilityPolicy.VOLATILE)
# Large messages (clouds, images): shallow, the newest matter.
SENSOR_QOS_BULK = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                             reliability=ReliabilityPolicy.BEST_EFFORT,
                             durability=DurabilityPolicy.VOLATILE)
# Outputs: reliable, depth 10.
OUTPUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                        reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.VOLATILE)


# ---- parameters --------------------------------------------------------------------------------
def _node_section_in_core() -> bool:
    return any(f.name == "node" for f in dataclasses.fields(GeolocConfig))


def declared_defaults() -> dict[str, tuple[Any, str]]:
    """Dotted ROS parameter name -> (default, description) for every parameter a node declares."""
    core = GeolocConfig()
    out = {}
    docs = describe(core)
    for k, v in flatten(core).items():
        doc, unit = docs[k]
        out[k] = (v, f"{doc} [{unit}]" if unit else doc)
    if not _node_section_in_core():
        ncfg = NodeConfig()
        ndocs = describe(ncfg)
        for k, v in flatten(ncfg).items():
            doc, unit = ndocs[k]
            out[f"node.{k}"] = (v, f"{doc} [{unit}]" if unit else doc)
    return out


def _to_python(v: Any) -> Any:
    if hasattr(v, "tolist") and not isinstance(v, (str, bytes)):
        return v.tolist()
    return v


def _coerce_node(cfg: NodeConfig, values: dict[str, Any]) -> NodeConfig:
    kw = {}
    for f in dataclasses.fields(cfg):
        if f.name not in values:
            continue
        v, default = values[f.name], getattr(cfg, f.name)
        if isinstance(default, bool) and not isinstance(v, bool):
            raise ValueError(f"parameter 'node.{f.name}' must be a bool, got {v!r}")
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"parameter 'node.{f.name}' must be a number, got {v!r}")
            if isinstance(default, int) and not float(v).is_integer():
                raise ValueError(f"parameter 'node.{f.name}' must be an integer, got {v!r}")
            v = type(default)(v)
        kw[f.name] = v
    return dataclasses.replace(cfg, **kw)


def declare_config(node, overrides: dict[str, Any] | None = None) -> tuple[GeolocConfig, NodeConfig]:
    """Declare every leaf of GeolocConfig (and NodeConfig as ``node.*``) as a ROS parameter with
    its documented default and description, then build the configs from the parameter values
    (launch/params-file overrides applied). ``overrides`` replace defaults (tests, embedding).
    Raises ``geoloc_ros.config.ConfigError`` / ValueError naming a parameter of the wrong type.
    """
    overrides = dict(overrides or {})
    values: dict[str, Any] = {}
    for name, (default, desc) in declared_defaults().items():
        d = overrides.get(name, default)
        if isinstance(d, tuple):
            d = list(d)
        # numbers and lists are dynamically typed so that `x: 3` in a YAML file is accepted for a
        # float parameter; the config layer checks and coerces the type.
        dyn = not isinstance(d, (bool, str))
        p = node.declare_parameter(name, d, ParameterDescriptor(description=desc, dynamic_typing=dyn))
        values[name] = _to_python(p.value)
    core = {k: v for k, v in values.items() if not k.startswith("node.") or _node_section_in_core()}
    cfg = config_from_flat(core)
    if _node_section_in_core():
        ncfg = cfg.node
    else:
        ncfg = _coerce_node(NodeConfig(), {k[5:]: v for k, v in values.items() if k.startswith("node.")})
    return cfg, ncfg


# ---- time ---------------------------------------------------------------------------------------
def stamp_to_s(stamp) -> float:
    """builtin_interfaces/Time (or anything with sec/nanosec) -> float seconds."""
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)


def s_to_stamp(t_s: float) -> TimeMsg:
    """Float seconds -> builtin_interfaces/Time (non-finite or negative -> 0)."""
    if not math.isfinite(t_s) or t_s < 0:
        return TimeMsg()
    sec = int(math.floor(t_s))
    ns = int(round((t_s - sec) * 1e9))
    if ns >= 1_000_000_000:
        sec, ns = sec + 1, ns - 1_000_000_000
    return TimeMsg(sec=sec, nanosec=ns)


# ---- messages out -------------------------------------------------------------------------------
def pose_to_msg(T: np.ndarray) -> Pose:
    """4x4 pose -> geometry_msgs/Pose."""
    p = Pose()
    p.position.x, p.position.y, p.position.z = (float(v) for v in T[:3, 3])
    q = matrix_to_quat(T[:3, :3])
    p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = (float(v) for v in q)
    return p


def msg_to_pose(p: Pose) -> np.ndarray:
    """geometry_msgs/Pose -> 4x4 pose (quaternion normalised)."""
    q = np.array([p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w], float)
    n = np.linalg.norm(q)
    q = q / n if n > 1e-9 else np.array([0.0, 0.0, 0.0, 1.0])
    return se3(quat_to_matrix(q), [p.position.x, p.position.y, p.position.z])


def _cov36(cov6: np.ndarray | None) -> list[float]:
    if cov6 is None:
        return [0.0] * 36
    c = np.asarray(cov6, float).reshape(6, 6)
    return [float(v) for v in c.reshape(-1)]


def estimate_to_pose_msg(est: ev.PoseEstimate, frame_id: str) -> PoseWithCovarianceStamped:
    """PoseEstimate -> PoseWithCovarianceStamped in ``frame_id`` (the map frame)."""
    m = PoseWithCovarianceStamped()
    m.header.stamp = s_to_stamp(est.t)
    m.header.frame_id = frame_id
    m.pose.pose = pose_to_msg(est.T_map_base)
    m.pose.covariance = _cov36(est.cov6)
    return m


def estimate_to_odometry(est: ev.PoseEstimate, frame_id: str, child_frame_id: str) -> Odometry:
    """PoseEstimate -> Odometry (pose in ``frame_id``, twist in ``child_frame_id``: body v, w)."""
    m = Odometry()
    m.header.stamp = s_to_stamp(est.t)
    m.header.frame_id = frame_id
    m.child_frame_id = child_frame_id
    m.pose.pose = pose_to_msg(est.T_map_base)
    m.pose.covariance = _cov36(est.cov6)
    tw = np.asarray(est.twist if est.twist is not None else np.zeros(6), float).reshape(6)
    m.twist.twist.linear.x, m.twist.twist.linear.y, m.twist.twist.linear.z = (float(v) for v in tw[:3])
    m.twist.twist.angular.x, m.twist.twist.angular.y, m.twist.twist.angular.z = (float(v) for v in tw[3:])
    return m


class PathBuilder:
    """Bounded nav_msgs/Path of the published poses (oldest dropped beyond ``max_len``)."""

    def __init__(self, frame_id: str, max_len: int = 5000):
        self.frame_id = frame_id
        self.poses: collections.deque = collections.deque(maxlen=max(1, int(max_len)))

    def append(self, t_s: float, T: np.ndarray) -> None:
        ps = PoseStamped()
        ps.header.stamp = s_to_stamp(t_s)
        ps.header.frame_id = self.frame_id
        ps.pose = pose_to_msg(T)
        self.poses.append(ps)

    def clear(self) -> None:
        self.poses.clear()

    def to_msg(self) -> Path:
        m = Path()
        m.header.frame_id = self.frame_id
        if self.poses:
            m.header.stamp = self.poses[-1].header.stamp
        m.poses = list(self.poses)
        return m


def numpy_to_pointcloud2(points_m: np.ndarray, frame_id: str, t_s: float):
    """(N, 3) points -> sensor_msgs/PointCloud2 with float32 x, y, z (non-finite rows dropped)."""
    from sensor_msgs.msg import PointCloud2, PointField
    P = np.asarray(points_m, float).reshape(-1, 3)
    P = P[np.isfinite(P).all(axis=1)].astype("<f4")
    m = PointCloud2()
    m.header.stamp = s_to_stamp(t_s)
    m.header.frame_id = frame_id
    m.height, m.width = 1, len(P)
    m.fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                for i, n in enumerate("xyz")]
    m.is_bigendian, m.point_step, m.row_step, m.is_dense = False, 12, 12 * len(P), True
    m.data = P.tobytes()
    return m


def candidates_to_pose_array(cands: Iterable[ev.Candidate], frame_id: str, t_s: float) -> PoseArray:
    """Ranked candidates (best first) -> PoseArray; candidates without a pose are skipped."""
    m = PoseArray()
    m.header.stamp = s_to_stamp(t_s)
    m.header.frame_id = frame_id
    m.poses = [pose_to_msg(np.asarray(c.T_map_base, float)) for c in cands
               if c.T_map_base is not None and c.status == ev.CandidateStatus.OK]
    return m


def candidate_to_fix_msg(c: ev.Candidate, t_s: float, frame_id: str) -> PoseWithCovarianceStamped:
    """An engine's OK candidate -> PoseWithCovarianceStamped (geoloc/bev_fix, geoloc/object_fix)."""
    m = PoseWithCovarianceStamped()
    m.header.stamp = s_to_stamp(t_s)
    m.header.frame_id = frame_id
    m.pose.pose = pose_to_msg(np.asarray(c.T_map_base, float))
    m.pose.covariance = _cov36(c.cov6)
    return m


_PALETTE = np.array([[0.90, 0.10, 0.10], [0.10, 0.60, 0.90], [0.20, 0.75, 0.20], [0.95, 0.65, 0.10],
                     [0.60, 0.30, 0.80], [0.10, 0.80, 0.75], [0.85, 0.40, 0.60], [0.55, 0.55, 0.55]])


def objects_to_markers(frame_id: str, t_s: float, centroids_m: np.ndarray,
                       extents_m: np.ndarray | None = None, labels: list | None = None,
                       associations: list[tuple[int, np.ndarray]] | None = None) -> MarkerArray:
    """Map objects as cubes coloured by label, plus a line per current association.

    centroids_m: (N, 3) map-frame centroids; extents_m: (N, 3) box sizes (0.5 m cubes when None);
    labels: N class names/ids; associations: (map object index, (3,) observed centroid in map).
    The first marker is a DELETEALL so that a smaller map replaces a larger one.
    """
    stamp = s_to_stamp(t_s)
    arr = MarkerArray()
    clear = Marker()
    clear.header.frame_id = frame_id
    clear.action = Marker.DELETEALL
    arr.markers.append(clear)
    C = np.asarray(centroids_m, float).reshape(-1, 3)
    E = None if extents_m is None else np.asarray(extents_m, float).reshape(-1, 3)
    classes = {}
    for i, c in enumerate(C):
        if not np.all(np.isfinite(c)):
            continue
        mk = Marker()
        mk.header.frame_id, mk.header.stamp = frame_id, stamp
        mk.ns, mk.id, mk.type, mk.action = "map_objects", i, Marker.CUBE, Marker.ADD
        mk.pose.position.x, mk.pose.position.y, mk.pose.position.z = (float(v) for v in c)
        mk.pose.orientation.w = 1.0
        size = E[i] if E is not None and np.all(np.isfinite(E[i])) else np.full(3, 0.5)
        mk.scale.x, mk.scale.y, mk.scale.z = (float(max(v, 0.05)) for v in size)
        lab = labels[i] if labels is not None and i < len(labels) else 0
        col = _PALETTE[classes.setdefault(str(lab), len(classes)) % len(_PALETTE)]
        mk.color.r, mk.color.g, mk.color.b, mk.color.a = float(col[0]), float(col[1]), float(col[2]), 0.6
        arr.markers.append(mk)
    if associations:
        from geometry_msgs.msg import Point
        ln = Marker()
        ln.header.frame_id, ln.header.stamp = frame_id, stamp
        ln.ns, ln.id, ln.type, ln.action = "associations", 0, Marker.LINE_LIST, Marker.ADD
        ln.pose.orientation.w = 1.0
        ln.scale.x = 0.1
        ln.color.g, ln.color.a = 1.0, 1.0
        for idx, p_obs in associations:
            if 0 <= int(idx) < len(C) and np.all(np.isfinite(p_obs)):
                ln.points.append(Point(x=float(C[idx][0]), y=float(C[idx][1]), z=float(C[idx][2])))
                q = np.asarray(p_obs, float).reshape(3)
                ln.points.append(Point(x=float(q[0]), y=float(q[1]), z=float(q[2])))
        if ln.points:
            arr.markers.append(ln)
    return arr


def object_map_markers(engine, frame_id: str, t_s: float, associations=None) -> MarkerArray | None:
    """Markers of an object engine's map (``engine.map.objects``: centroids (N,3), extents (N,3));
    ``associations`` as (map index, (3,) observed centroid in map) pairs. None without a map."""
    omap = getattr(engine, "map", None) or getattr(engine, "object_map", None)
    objs = getattr(omap, "objects", omap)
    C = getattr(objs, "centroids", None)
    if C is None:
        return None
    assoc = None
    if associations is not None:
        try:
            assoc = [(int(i), np.asarray(p, float)) for i, p in associations]
        except (TypeError, ValueError):
            assoc = None
    labels = getattr(objs, "labels", None)
    return objects_to_markers(frame_id, t_s, np.asarray(C, float), getattr(objs, "extents", None),
                              None if labels is None else list(labels), assoc)


# ---- input guarding -----------------------------------------------------------------------------
def _finite(a) -> bool:
    return a is None or bool(np.all(np.isfinite(np.asarray(a, float))))


def validate_event(e, min_points: int = 10) -> str | None:
    """Reason an event must not reach the pipeline, or None when it is usable.

    Checks what a live sensor gets wrong: non-finite stamps and fields, empty or tiny clouds,
    non-positive-definite covariances of pose fixes.
    """
    t = getattr(e, "t", None)
    if t is None or not math.isfinite(float(t)) or float(t) <= 0.0:
        return "bad_stamp"
    if isinstance(e, ev.ImuEvent):
        if not (_finite(e.acc_mps2) and _finite(e.gyr_rps)):
            return "nan"
    elif isinstance(e, ev.WheelEvent):
        if not (_finite(e.v_mps) and _finite(e.yaw_rate_rps)):
            return "nan"
    elif isinstance(e, ev.GnssEvent):
        if e.status == ev.FixStatus.NO_FIX:
            return None  # the filter's outage timer needs these; coordinates are not used
        if not (_finite([e.lat_deg, e.lon_deg])):
            return "nan"
        if abs(e.lat_deg) > 90 or abs(e.lon_deg) > 180:
            return "out_of_range"
    elif isinstance(e, ev.ScanEvent):
        pts = np.asarray(e.points)
        if pts.ndim != 2 or pts.shape[1] < 3:
            return "malformed"
        n_ok = int(np.isfinite(pts[:, :3]).all(axis=1).sum()) if len(pts) else 0
        if n_ok < min_points:
            return "empty"
    elif isinstance(e, ev.PoseFixEvent):
        if not _finite(e.T_map_base) or not _finite(e.cov6):
            return "nan"
        c = np.asarray(e.cov6, float)
        if c.shape != (6, 6) or np.any(np.diag(c) < 0):
            return "bad_covariance"
    elif isinstance(e, ev.ImageEvent):
        if e.rgb is None and e.depth_m is None:
            return "empty"
    return None


class EventQueue:
    """Bounded, thread-safe FIFO between the subscriptions and the processing thread.

    ``put`` never blocks: when full, the oldest event is dropped and counted (a flood degrades to
    dropping, never to unbounded latency). Items are (event, receive wall time s).
    """

    def __init__(self, maxlen: int):
        self.maxlen = max(1, int(maxlen))
        self._q: collections.deque = collections.deque()
        self._cv = threading.Condition()
        self.dropped = 0
        self.high_water = 0

    def put(self, item) -> bool:
        """Enqueue; returns False when an old item had to be dropped."""
        with self._cv:
            dropped = False
            if len(self._q) >= self.maxlen:
                self._q.popleft()
                self.dropped += 1
                dropped = True
            self._q.append(item)
            self.high_water = max(self.high_water, len(self._q))
            self._cv.notify()
            return not dropped

    def get(self, timeout_s: float = 0.1):
        """Oldest item, or None after ``timeout_s``."""
        with self._cv:
            if not self._q and not self._cv.wait(timeout_s):
                return None
            return self._q.popleft() if self._q else None

    def clear(self) -> None:
        with self._cv:
            self._q.clear()

    def __len__(self) -> int:
        return len(self._q)


# ---- diagnostics --------------------------------------------------------------------------------
class ComponentStats:
    """Counters, update rate and latency of one input or engine (one DiagnosticStatus)."""

    def __init__(self, name: str):
        self.name = name
        self.received = 0
        self.accepted = 0
        self.rejected: collections.Counter = collections.Counter()
        self.level = DiagnosticStatus.OK
        self.message = "waiting for data"
        self.values: dict[str, Any] = {}
        self._times: collections.deque = collections.deque(maxlen=50)
        self._lat_ms: collections.deque = collections.deque(maxlen=200)
        self._lock = threading.Lock()
        self._last_stamp: float | None = None
        self._periods: collections.deque = collections.deque(maxlen=256)
        self.missing = 0   # messages missing from a regular stream, estimated from stamp gaps

    def tick(self, latency_s: float | None = None) -> None:
        """One accepted update (wall time now); latency in seconds when known."""
        with self._lock:
            self.accepted += 1
            self._times.append(time.monotonic())
            if latency_s is not None and math.isfinite(latency_s):
                self._lat_ms.append(1e3 * latency_s)

    def note_stamp(self, t_s: float) -> int:
        """Track the stream's period; returns how many messages a gap in the stamps says were
        lost before reaching us (DDS keep-last overflow under a flood, a dropping link)."""
        with self._lock:
            last, self._last_stamp = self._last_stamp, t_s
            if last is None or not math.isfinite(t_s) or t_s <= last:
                return 0
            dt = t_s - last
            lost = 0
            if len(self._periods) >= 16:
                # the stream's period: the smallest recent spacing (when most messages are
                # lost, the back-to-back survivors still show the true period)
                period = float(np.min(self._periods))
                if period > 0 and 1.5 * period < dt < 10.0:
                    lost = int(round(dt / period)) - 1
                    self.missing += lost
            self._periods.append(dt)
            return lost

    def reject(self, reason: str) -> None:
        with self._lock:
            self.rejected[reason] += 1

    def rate_hz(self) -> float:
        with self._lock:
            if len(self._times) < 2:
                return 0.0
            now = time.monotonic()
            if now - self._times[-1] > 5.0:
                return 0.0
            return (len(self._times) - 1) / max(self._times[-1] - self._times[0], 1e-6)

    def latency_ms(self) -> tuple[float, float]:
        """(mean, p95) latency in ms over the last updates (0, 0 when none)."""
        with self._lock:
            if not self._lat_ms:
                return 0.0, 0.0
            a = np.asarray(self._lat_ms)
            return float(a.mean()), float(np.percentile(a, 95))

    def to_msg(self, prefix: str, hardware_id: str) -> DiagnosticStatus:
        st = DiagnosticStatus()
        st.name = f"{prefix}: {self.name}"
        st.hardware_id = hardware_id
        st.level = self.level
        st.message = self.message
        mean, p95 = self.latency_ms()
        kv = {"received": self.received} if self.received else {}
        kv.update({"accepted": self.accepted,
              "rejected": sum(self.rejected.values()), "rate_hz": round(self.rate_hz(), 2),
              "latency_ms_mean": round(mean, 2), "latency_ms_p95": round(p95, 2)})
        kv.update({f"rejected.{k}": v for k, v in sorted(self.rejected.items())})
        if self.missing:
            kv["missing_by_stamp_gaps"] = self.missing
        kv.update(self.values)
        st.values = [KeyValue(key=str(k), value=str(v)) for k, v in kv.items()]
        return st


class Diagnostics:
    """A set of named :class:`ComponentStats` published as one diagnostic_msgs/DiagnosticArray."""

    def __init__(self, prefix: str, names: Iterable[str], hardware_id: str = "geoloc"):
        self.prefix = prefix
        self.hardware_id = hardware_id
        self.stats = {n: ComponentStats(n) for n in names}

    def __getitem__(self, name: str) -> ComponentStats:
        if name not in self.stats:
            self.stats[name] = ComponentStats(name)
        return self.stats[name]

    def total_rejected(self) -> int:
        return sum(sum(s.rejected.values()) for s in self.stats.values())

    def to_msg(self, t_s: float) -> DiagnosticArray:
        arr = DiagnosticArray()
        arr.header.stamp = s_to_stamp(t_s)
        arr.status = [s.to_msg(self.prefix, self.hardware_id) for s in self.stats.values()]
        return arr


def guarded(node, stats: ComponentStats | None, fn: Callable) -> Callable:
    """Wrap a subscription callback: any exception is counted (``callback_error``) and logged
    (throttled), never propagated: the node does not die on input."""
    def cb(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - the node must survive any input
            if stats is not None:
                stats.reject("callback_error")
            node.get_logger().warning(f"{getattr(fn, '__name__', 'callback')}: {type(e).__name__}: {e}",
                                   throttle_duration_sec=2.0)
            return None
    cb.__name__ = getattr(fn, "__name__", "callback")
    return cb


# ---- TF -----------------------------------------------------------------------------------------
class TfBroadcaster:
    """map -> odom broadcaster: tf2_ros where importable, else a tf2_msgs/TFMessage on /tf, else
    one clear log line at start-up and nothing (everything else keeps working)."""

    def __init__(self, node, enabled: bool = True):
        self.node = node
        self.mode = "off"
        self._impl = None
        if not enabled:
            return
        try:
            from tf2_ros import TransformBroadcaster  # type: ignore
            self._impl = TransformBroadcaster(node)
            self.mode = "tf2_ros"
            return
        except ImportError:
            pass
        try:
            from tf2_msgs.msg import TFMessage  # type: ignore
            self._TFMessage = TFMessage
            self._impl = node.create_publisher(TFMessage, "/tf", OUTPUT_QOS)
            self.mode = "tf2_msgs"
            node.get_logger().info("tf2_ros is not installed: publishing map->odom on /tf as tf2_msgs/TFMessage")
            return
        except ImportError:
            node.get_logger().warning("tf2_ros and tf2_msgs are not installed: TF map->odom is NOT broadcast "
                                   "(geoloc/pose and geoloc/odometry carry the same information)")

    def send(self, T_parent_child: np.ndarray, parent: str, child: str, t_s: float) -> bool:
        if self._impl is None or not parent or not child:
            return False
        tf = TransformStamped()
        tf.header.stamp = s_to_stamp(t_s)
        tf.header.frame_id = parent
        tf.child_frame_id = child
        tf.transform.translation.x, tf.transform.translation.y, tf.transform.translation.z = (
            float(v) for v in T_parent_child[:3, 3])
        q = matrix_to_quat(T_parent_child[:3, :3])
        (tf.transform.rotation.x, tf.transform.rotation.y, tf.transform.rotation.z,
         tf.transform.rotation.w) = (float(v) for v in q)
        if self.mode == "tf2_ros":
            self._impl.sendTransform(tf)
        else:
            self._impl.publish(self._TFMessage(transforms=[tf]))
        return True


def T_odom_base_of(est: ev.PoseEstimate) -> np.ndarray | None:
    """base_link in the odom frame from an estimate carrying ``T_map_odom`` (None otherwise)."""
    if est.T_map_odom is None:
        return None
    return se3_inverse(np.asarray(est.T_map_odom, float)) @ np.asarray(est.T_map_base, float)
