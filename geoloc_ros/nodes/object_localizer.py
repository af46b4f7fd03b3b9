"""``object_localizer``: object-map alignment as its own process (split layout).

Subscribes ``points``, ``camera/image`` (+ ``camera/depth``, ``camera/camera_info``) and
``geoloc/local_odometry`` (base_link in the continuous ``odom`` frame, from ``fusion_node``);
feeds :class:`geoloc_ros.objects.engine.ObjectLocalizer` with each scan/frame and its odom pose
(interpolated at the event's stamp), and publishes a completed submap's fix on
``geoloc/object_fix`` (PoseWithCovarianceStamped, ``map``), the map objects and the current
associations on ``geoloc/objects`` (MarkerArray).
"""
from __future__ import annotations

import collections
import sys
import time

import numpy as np
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from geoloc_ros import events as ev
from geoloc_ros.geometry import interpolate_poses
from geoloc_ros.nodes.common import OUTPUT_QOS, SENSOR_QOS, msg_to_pose, object_map_markers, stamp_to_s
from geoloc_ros.nodes.engine_node import EngineNode
from geoloc_ros.nodes.geoloc import FIX_QOS

__all__ = ["ObjectLocalizerNode", "main"]


class ObjectLocalizerNode(EngineNode):
    engine_name = "objects"
    fix_topic = "geoloc/object_fix"

    def __init__(self, node_name: str = "object_localizer", **kwargs):
        super().__init__(node_name, slot_size=20, **kwargs)
        self.odom_hist: collections.deque = collections.deque(maxlen=2000)  # (t_s, T_odom_base)
        self.pub_objects = self.create_publisher(MarkerArray, "geoloc/objects", OUTPUT_QOS)
        compressed = self.ncfg.image_transport == "compressed" or (
            self.ncfg.image_transport == "auto" and "Compressed" in getattr(
                (getattr(self.profile, "roles", None) or {}).get("camera_rgb"), "msgtype", "Compressed"))
        img = CompressedImage if compressed else Image
        self.subscribe("points", PointCloud2, "points", self.decoder.points, SENSOR_QOS)
        self.subscribe("camera", img, "camera/image", lambda m: self.decoder.image(m, compressed), SENSOR_QOS)
        self.subscribe("camera", img, "camera/depth", lambda m: self.decoder.depth(m, compressed),
                       SENSOR_QOS, queued=False)
        self.subscribe("camera", CameraInfo, "camera/camera_info", self.decoder.camera_info,
                       SENSOR_QOS, queued=False)
        self.subscribe("local_odometry", Odometry, "geoloc/local_odometry", self._on_odom, FIX_QOS,
                       queued=False)
        self.create_timer(2.0, self._publish_map)

    def build_engine(self, mapdir):
        from geoloc_ros.objects.engine import ObjectLocalizer
        from geoloc_ros.objects.map import ObjectMap
        return ObjectLocalizer(self.cfg.objects, ObjectMap.load(mapdir))

    def _on_odom(self, msg) -> None:
        T = msg_to_pose(msg.pose.pose)
        t = stamp_to_s(msg.header.stamp)
        if np.all(np.isfinite(T)) and (not self.odom_hist or t > self.odom_hist[-1][0]):
            self.odom_hist.append((t, T))

    def odom_at(self, t_s: float, wait_s: float = 0.5) -> np.ndarray | None:
        """T_odom_base at ``t_s`` interpolated from geoloc/local_odometry; a scan newer than the
        newest odometry waits up to ``wait_s`` (the filter lags the sensors); None when not covered."""
        t_end = time.monotonic() + wait_s
        while (not self.odom_hist or self.odom_hist[-1][0] < t_s) and time.monotonic() < t_end:
            time.sleep(0.02)
        if len(self.odom_hist) < 2:
            return None
        if 0.0 <= t_s - self.odom_hist[-1][0] <= 0.05:   # a hair newer: hold the last pose
            return self.odom_hist[-1][1]
        ts = np.array([h[0] for h in self.odom_hist])
        Ts = np.array([h[1] for h in self.odom_hist])
        Tq, ok = interpolate_poses([t_s], ts, Ts, max_gap_s=1.0)
        if not ok[0]:
            return None
        return Tq[0]

    def run(self, name, e):
        T = self.odom_at(e.t)
        if T is None:
            self.diag[name].reject("no_odometry")
            return None
        if isinstance(e, ev.ScanEvent):
            self.engine.add_scan(e, T)
        elif isinstance(e, ev.ImageEvent):
            self.engine.add_image(e, T)
        c = self.engine.step()
        if c is None:
            return None
        if c.status == ev.CandidateStatus.OK:
            self._publish_map(c.info.get("associations"), e.t)
        return [c]

    def _publish_map(self, associations=None, t_s: float = 0.0) -> None:
        m = object_map_markers(self.engine, self.cfg.map_frame, t_s, associations)
        if m is not None:
            self.pub_objects.publish(m)


def main(argv=None) -> int:
    """Console script ``object_localizer``."""
    from geoloc_ros.nodes.runtime import spin_node
    return spin_node(ObjectLocalizerNode, argv)


if __name__ == "__main__":
    sys.exit(main())
