"""``geoloc play BAG --profile P [--rate R] [--loop]``: a bag onto live ROS 2 topics with /clock.

``ros2 bag play`` cannot play the datasets' ROS 1 bags nor their custom types; this can. The
steps, per message in record order:

1. read it with ``geoloc_ros.io.bags.read_messages`` (ROS 1 or ROS 2, bundled custom types);
2. map its topic to the node's default name through the profile's roles (``lidar`` -> ``points``,
   ``imu`` -> ``imu``...; ``--topics bag`` keeps the bag's names);
3. convert it to the rclpy type: Livox CustomMsg becomes PointCloud2 (x, y, z, intensity float32,
   per-point ``t`` uint32 ns, ``ring`` uint16); every other message is copied field by field
   (ROS 1 spellings such as ``CameraInfo.K`` handled); types rclpy cannot import are skipped with
   one log line per topic;
4. sleep until its record time at ``--rate`` and publish it, with /clock at the record time.

Before the first message it waits (up to ``--wait`` s) for the topics' subscribers to be
discovered, so that a node started at the same time does not miss the start of the bag.

``--loop`` starts over at the end (the clock jumps back: the nodes reset their filter).
"""
from __future__ import annotations

import argparse
import array
import importlib
import logging
import sys
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("geoloc_ros.play")

__all__ = ["main", "NODE_TOPICS", "to_rclpy", "livox_to_pointcloud2", "PlayStats", "play", "wait_for_subscribers"]

# profile role -> the node's default (relative) topic name
NODE_TOPICS = {
    "lidar": "points", "imu": "imu", "wheel": "wheel_odom", "gnss": "gnss/fix",
    "camera_rgb": "camera/image", "camera_depth": "camera/depth", "camera_info": "camera/camera_info",
    "camera_instance": "camera/instance", "initialpose": "initialpose",
}
_LIVOX = ("livox_ros_driver/msg/CustomMsg", "livox_ros_driver2/msg/CustomMsg")


def rclpy_type(msgtype: str):
    """'sensor_msgs/msg/Imu' (or ROS 1 'sensor_msgs/Imu') -> the rclpy class, None if not importable."""
    parts = msgtype.split("/")
    pkg, name = parts[0], parts[-1]
    try:
        return getattr(importlib.import_module(f"{pkg}.msg"), name)
    except (ImportError, AttributeError):
        return None


def _get(src, name: str):
    for n in (name, name.upper(), name.capitalize()):
        if hasattr(src, n):
            return getattr(src, n)
    raise AttributeError(name)


def to_rclpy(src, cls):
    """Copy a rosbags message (ROS 1 or 2) into a new rclpy message of class ``cls``.

    Fields are matched by name (ROS 1 upper-case spellings accepted); fields the source lacks
    keep their defaults (e.g. ROS 1 Header.seq is simply dropped).
    """
    out = cls()
    for name, typ in cls.get_fields_and_field_types().items():
        try:
            v = _get(src, name)
        except AttributeError:
            continue
        base = typ.split("<")[-1].rstrip(">").split("[")[0]
        is_seq = typ.startswith("sequence") or typ.endswith("]")
        if "/" in base:  # nested message(s)
            sub = rclpy_type(base)
            if sub is None:
                continue
            setattr(out, name, [to_rclpy(x, sub) for x in v] if is_seq else to_rclpy(v, sub))
        elif is_seq and base in ("uint8", "octet", "char", "byte") and isinstance(v, np.ndarray):
            setattr(out, name, array.array("B", v.astype(np.uint8).tobytes()) if not typ.endswith("]")
                    else [int(x) for x in v])
        elif isinstance(v, np.ndarray):
            setattr(out, name, v.tolist())
        elif base == "builtin_interfaces/Time":
            setattr(out, name, v)
        else:
            setattr(out, name, v)
    return out


def livox_to_pointcloud2(msg):
    """livox_ros_driver(2)/CustomMsg (rosbags) -> rclpy sensor_msgs/PointCloud2 with fields
    x, y, z, intensity (float32), t (uint32, ns after the header stamp), ring (uint16)."""
    from sensor_msgs.msg import PointCloud2, PointField
    from geoloc_ros.msgs import livox_custom_to_numpy
    d = livox_custom_to_numpy(msg)
    n = len(d["xyz"])
    rec = np.zeros(n, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4"),
                             ("t", "<u4"), ("ring", "<u2")])
    rec["x"], rec["y"], rec["z"] = d["xyz"].T
    rec["intensity"] = d["intensity"] if d["intensity"] is not None else 0
    if d["time_s"] is not None:
        rec["t"] = np.clip(np.round(np.asarray(d["time_s"]) * 1e9), 0, 2**32 - 1).astype(np.uint32)
    if d["ring"] is not None:
        rec["ring"] = d["ring"]
    types = {"x": 7, "y": 7, "z": 7, "intensity": 7, "t": 6, "ring": 4}
    out = PointCloud2()
    out.header.stamp.sec, out.header.stamp.nanosec = int(msg.header.stamp.sec), int(msg.header.stamp.nanosec)
    out.header.frame_id = str(msg.header.frame_id)
    out.height, out.width = 1, n
    out.fields = [PointField(name=k, offset=rec.dtype.fields[k][1], datatype=types[k], count=1)
                  for k in rec.dtype.names]
    out.is_bigendian, out.point_step, out.is_dense = False, rec.dtype.itemsize, True
    out.row_step = rec.dtype.itemsize * n
    out.data = array.array("B", rec.tobytes())
    return out


class GnssPvtMerger:
    """M3DGR-style GNSS: the NavSatFix has no covariance, the receiver's PVT message (a type rclpy
    cannot import) has the accuracy. Each fix is held until the PVT of its epoch arrives (or
    ``wait_s`` of record time passes) and published with ``diag(h^2/2, h^2/2, v^2)``, the
    covariance :mod:`geoloc_ros.io.assemble` gives the offline reader."""

    def __init__(self, stamp_offset_s: float, leap_s: float, tol_s: float = 0.1, wait_s: float = 0.3,
                 same_epoch_s: float = 0.02):
        self.stamp_offset_s, self.leap_s, self.tol_s, self.wait_s = stamp_offset_s, leap_s, tol_s, wait_s
        self.same_epoch_s = same_epoch_s   # a PVT this close is the fix's own epoch: no need to wait
        self.pending: list = []      # (t_fix_utc, t_record, msg)
        self.pvt: list = []          # (t_utc, h_acc_m, v_acc_m)
        self.merged = self.unmatched = 0

    def add_fix(self, msg, t_rec: float) -> None:
        from geoloc_ros.nodes.common import stamp_to_s
        self.pending.append((stamp_to_s(msg.header.stamp) + self.stamp_offset_s, t_rec, msg))

    def add_pvt(self, msg) -> None:
        from geoloc_ros.msgs import gnss_pvt_to_dict
        d = gnss_pvt_to_dict(msg, self.leap_s)
        self.pvt = [p for p in self.pvt if p[0] > d["t"] - 5.0] + [(d["t"], d["h_acc_m"], d["v_acc_m"])]

    def ready(self, t_rec: float, flush: bool = False) -> list:
        """Fixes to publish now (covariance filled where their PVT is known). A fix waits for the
        PVT of its own epoch; only when that has not come within ``wait_s`` does the nearest
        within ``tol_s`` do (as the offline reader's nearest match)."""
        out, keep = [], []
        for t_fix, t_in, msg in self.pending:
            best = min(self.pvt, key=lambda p: abs(p[0] - t_fix), default=None)
            waited = flush or t_rec - t_in > self.wait_s
            near = best is not None and abs(best[0] - t_fix) <= (self.tol_s if waited else self.same_epoch_s)
            if near and best[1] > 0 and best[2] > 0:
                h2 = best[1] ** 2 / 2.0
                msg.position_covariance = [h2, 0.0, 0.0, 0.0, h2, 0.0, 0.0, 0.0, best[2] ** 2]
                msg.position_covariance_type = 2  # COVARIANCE_TYPE_DIAGONAL_KNOWN
                self.merged += 1
                out.append(msg)
            elif waited:
                self.unmatched += 1
                out.append(msg)
            else:
                keep.append((t_fix, t_in, msg))
        self.pending = keep
        return out


class PlayStats:
    """Counts per output topic, and the topics skipped with why."""

    def __init__(self):
        self.published: dict[str, int] = {}
        self.skipped: dict[str, str] = {}
        self.errors = 0
        self.loops = 0

    def summary(self) -> str:
        pub = ", ".join(f"{t} {n}" for t, n in sorted(self.published.items()))
        s = f"published: {pub or 'nothing'}"
        if self.skipped:
            s += "; skipped: " + "; ".join(f"{t} ({why})" for t, why in sorted(self.skipped.items()))
        if self.errors:
            s += f"; {self.errors} message(s) failed to convert"
        return s


def _routes(profile, bag_topics: dict, keep_names: bool) -> dict[str, tuple[str, str]]:
    """bag topic -> (output topic, bag msgtype) for the topics that will be played."""
    from geoloc_ros.io.profiles import normalize_msgtype
    routes = {}
    role_of = {spec.topic: role for role, spec in profile.roles.items()}
    for topic, info in bag_topics.items():
        role = role_of.get(topic)
        out = topic if keep_names or role not in NODE_TOPICS else NODE_TOPICS[role]
        if role is None and not keep_names:
            out = topic  # not a role of the profile: keep its name
        routes[topic] = (out, normalize_msgtype(info.msgtype))
    return routes


def _publish_gnss(msgs: list, pub_entry, stats: "PlayStats") -> None:
    pub, _cls, out, _mt = pub_entry
    for m in msgs:
        pub.publish(m)
        stats.published[out] = stats.published.get(out, 0) + 1


def play(bag: str | Path, profile: str, rate: float = 1.0, loop: bool = False,
         keep_names: bool = False, node=None, start_s: float | None = None,
         duration_s: float | None = None, stop=None, clock: bool = True,
         wait_subscribers_s: float = 2.0) -> PlayStats:
    """Publish ``bag`` with rclpy on ``node`` (created when None; rclpy must be initialised).

    ``rate`` <= 0 publishes as fast as possible. ``stop()`` returning True ends playback.
    ``wait_subscribers_s``: see :func:`wait_for_subscribers`.
    """
    from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy
    from rosgraph_msgs.msg import Clock

    from geoloc_ros.io.bags import bag_info, read_messages
    from geoloc_ros.io.profiles import load_profile

    prof = load_profile(profile)
    info = bag_info(bag)
    routes = _routes(prof, info.topics, keep_names)
    own = node is None
    if own:
        from rclpy.node import Node
        node = Node("geoloc_play")
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)
    clock_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)
    stats = PlayStats()
    pubs = {}
    for topic, (out, msgtype) in routes.items():
        cls = rclpy_type("sensor_msgs/msg/PointCloud2") if msgtype in _LIVOX else rclpy_type(msgtype)
        if cls is None:
            stats.skipped[topic] = f"{msgtype} is not importable in rclpy"
            node.get_logger().info(f"skipping {topic}: {msgtype} is not importable in rclpy")
            continue
        pubs[topic] = (node.create_publisher(cls, out, qos), cls, out, msgtype)
    clock_pub = node.create_publisher(Clock, "/clock", clock_qos) if clock else None
    # a GNSS role whose covariance comes from a side channel rclpy cannot subscribe (u-blox PVT)
    gspec = prof.roles.get("gnss")
    pvt_spec = prof.roles.get(gspec.covariance_from) if gspec is not None and gspec.covariance_from else None
    merger, pvt_topic = None, None
    if pvt_spec is not None and pvt_spec.topic in info.topics and gspec.topic in pubs:
        merger = GnssPvtMerger(gspec.stamp_offset_s, prof.leap_seconds)
        pvt_topic = pvt_spec.topic
        stats.skipped.pop(pvt_topic, None)
        node.get_logger().info(f"{gspec.topic}: covariance filled from {pvt_topic} (h_acc, v_acc)")
    wait_for_subscribers([p[0] for p in pubs.values()], wait_subscribers_s)
    read_topics = list(pubs) + ([pvt_topic] if pvt_topic else [])
    t_begin = info.start_s if start_s is None else start_s
    t_end = None if duration_s is None else t_begin + duration_s
    try:
        while True:
            wall0 = time.monotonic()
            for topic, _mt, t_rec, msg in read_messages(bag, read_topics, start_s=t_begin, end_s=t_end):
                if stop is not None and stop():
                    return stats
                if topic == pvt_topic:
                    merger.add_pvt(msg)
                    _publish_gnss(merger.ready(t_rec), pubs[gspec.topic], stats)
                    continue
                pub, cls, out, msgtype = pubs[topic]
                if rate > 0:
                    delay = (t_rec - t_begin) / rate - (time.monotonic() - wall0)
                    if delay > 0:
                        time.sleep(delay)
                try:
                    m = livox_to_pointcloud2(msg) if msgtype in _LIVOX else to_rclpy(msg, cls)
                except Exception as e:  # noqa: BLE001 - one bad message must not end playback
                    stats.errors += 1
                    node.get_logger().warning(f"{topic}: cannot convert a message: {e}",
                                              throttle_duration_sec=2.0)
                    continue
                if merger is not None and topic == gspec.topic:
                    merger.add_fix(m, t_rec)
                    _publish_gnss(merger.ready(t_rec), pubs[topic], stats)
                    continue
                if clock_pub is not None:
                    c = Clock()
                    c.clock.sec = int(t_rec)
                    c.clock.nanosec = int(round((t_rec - int(t_rec)) * 1e9)) % 1_000_000_000
                    clock_pub.publish(c)
                pub.publish(m)
                stats.published[out] = stats.published.get(out, 0) + 1
            if merger is not None:
                _publish_gnss(merger.ready(0.0, flush=True), pubs[gspec.topic], stats)
            if not loop:
                return stats
            stats.loops += 1
            node.get_logger().info(f"looping {bag} (clock jumps back to the start)")
    finally:
        if own:
            node.destroy_node()


def wait_for_subscribers(publishers: list, timeout_s: float, settle_s: float = 0.5) -> int:
    """Wait until every publisher has a subscriber, or some have and none joined for
    ``settle_s`` (topics nobody reads), or ``timeout_s`` passed. Returns how many have one."""
    t_end = time.monotonic() + max(0.0, timeout_s)
    n_last, t_change = -1, time.monotonic()
    while True:
        n = sum(1 for p in publishers if p.get_subscription_count() > 0)
        now = time.monotonic()
        if n != n_last:
            n_last, t_change = n, now
        if n == len(publishers) or now >= t_end or (n > 0 and now - t_change >= settle_s):
            return n
        time.sleep(0.02)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="geoloc play", description=__doc__.split("\n")[0])
    ap.add_argument("bag")
    ap.add_argument("--profile", required=True, help="profile name or YAML path")
    ap.add_argument("--rate", type=float, default=1.0, help="playback rate (<= 0: as fast as possible)")
    ap.add_argument("--loop", action="store_true")
    ap.add_argument("--topics", choices=["node", "bag"], default="node",
                    help="publish on the node's default names (node) or the bag's own (bag)")
    ap.add_argument("--start", type=float, default=None, help="start at this record time (unix s)")
    ap.add_argument("--duration", type=float, default=None, help="play this many seconds")
    ap.add_argument("--no-clock", action="store_true", help="do not publish /clock")
    ap.add_argument("--wait", type=float, default=2.0,
                    help="wait up to this long for the topics' subscribers before the first message (s)")
    ap.add_argument("--ros-args", nargs=argparse.REMAINDER, default=None, dest="ros_args")
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)

    import rclpy
    from geoloc_ros.io.bags import BagError
    from geoloc_ros.io.profiles import ProfileError
    rclpy.init(args=["geoloc_play"] + (["--ros-args"] + a.ros_args if a.ros_args else []))
    try:
        stats = play(a.bag, a.profile, rate=a.rate, loop=a.loop, keep_names=a.topics == "bag",
                     start_s=a.start, duration_s=a.duration, clock=not a.no_clock,
                     wait_subscribers_s=a.wait)
        print(stats.summary())
        return 0
    except (BagError, ProfileError, FileNotFoundError) as e:
        print(f"geoloc play: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    sys.exit(main())
