"""Pipeline outputs -> ROS messages (and back for poses): the nodes' only message builders.

Frames follow REP-105 (``map`` -> ``odom`` -> ``base_link``); covariances are 6x6 in ROS order
(x, y, z, roll, pitch, yaw), row-major in the messages. Times are float seconds.
"""
from __future__ import annotations

import collections
import math
from typing import Iterable

import numpy as np
from builtin_interfaces.msg import Time as TimeMsg
from geometry_msgs.msg import Pose, PoseArray, PoseStamped, PoseWithCovarianceStamped, TransformStamped
from nav_msgs.msg import Odometry, Path
from visualization_msgs.msg import Marker, MarkerArray

from geoloc_ros import events as ev
from geoloc_ros.geometry import matrix_to_quat, quat_to_matrix, se3, se3_inverse

__all__ = ["stamp_to_s", "s_to_stamp", "pose_to_msg", "msg_to_pose", "estimate_to_pose_msg",
           "estimate_to_odometry", "PathBuilder", "numpy_to_pointcloud2", "candidates_to_pose_array",
           "candidate_to_fix_msg", "objects_to_markers", "object_map_markers", "transform_msg",
           "T_odom_base_of"]


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


def _cov36(cov6: np.ndarray | None) -> np.ndarray:
    """(36,) float64, row-major (a numpy array: rclpy takes it without a per-element check)."""
    if cov6 is None:
        return np.zeros(36)
    return np.ascontiguousarray(np.asarray(cov6, dtype=np.float64).reshape(36))


def estimate_to_pose_msg(est: ev.PoseEstimate, frame_id: str, pose: Pose | None = None) -> PoseWithCovarianceStamped:
    """PoseEstimate -> PoseWithCovarianceStamped in ``frame_id`` (the map frame); ``pose``: the
    estimate's Pose message when already built (the quaternion is the costly part)."""
    m = PoseWithCovarianceStamped()
    m.header.stamp = s_to_stamp(est.t)
    m.header.frame_id = frame_id
    m.pose.pose = pose if pose is not None else pose_to_msg(est.T_map_base)
    m.pose.covariance = _cov36(est.cov6)
    return m


def estimate_to_odometry(est: ev.PoseEstimate, frame_id: str, child_frame_id: str,
                         pose: Pose | None = None) -> Odometry:
    """PoseEstimate -> Odometry (pose in ``frame_id``, twist in ``child_frame_id``: body v, w)."""
    m = Odometry()
    m.header.stamp = s_to_stamp(est.t)
    m.header.frame_id = frame_id
    m.child_frame_id = child_frame_id
    m.pose.pose = pose if pose is not None else pose_to_msg(est.T_map_base)
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


def transform_msg(T_parent_child: np.ndarray, parent: str, child: str, t_s: float) -> TransformStamped:
    """4x4 pose -> geometry_msgs/TransformStamped (for TF)."""
    tf = TransformStamped()
    tf.header.stamp = s_to_stamp(t_s)
    tf.header.frame_id = parent
    tf.child_frame_id = child
    tf.transform.translation.x, tf.transform.translation.y, tf.transform.translation.z = (
        float(v) for v in T_parent_child[:3, 3])
    q = matrix_to_quat(T_parent_child[:3, :3])
    (tf.transform.rotation.x, tf.transform.rotation.y, tf.transform.rotation.z,
     tf.transform.rotation.w) = (float(v) for v in q)
    return tf


def T_odom_base_of(est: ev.PoseEstimate) -> np.ndarray | None:
    """base_link in the odom frame from an estimate carrying ``T_map_odom`` (None otherwise)."""
    if est.T_map_odom is None:
        return None
    return se3_inverse(np.asarray(est.T_map_odom, float)) @ np.asarray(est.T_map_base, float)
