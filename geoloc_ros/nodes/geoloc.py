"""``geoloc_node``: the all-in-one localization node (node name ``geoloc``).

A thin door into :class:`geoloc_ros.pipeline.Localizer`. Its step, per message:

1. the subscription decodes the message into an event (``nodes.inputs``); a bad one is counted
   with its reason and dropped, the callback never raises;
2. the event joins its input's bounded queue (``nodes.scheduler``: clouds and images keep the
   newest few, IMU is never dropped but merged when the node is behind), released in stamp
   order once the IMU has arrived up to its stamp;
3. the processing thread drops stale events (older than ``max_msg_age_s`` behind the newest),
   detects time jumping backwards (an input's own stamps going back: bag loop, reset with a
   warning), and calls ``Localizer.process`` on each event of the batch;
4. the batch's newest estimate is published as ``geoloc/pose``, ``geoloc/odometry``,
   ``geoloc/path`` and TF ``map -> odom``; engine candidates as ``geoloc/candidates`` and
   ``geoloc/objects``;
5. a steady timer publishes ``/diagnostics`` and watches the ROS clock for backward jumps.

Services: ``geoloc/global_localize`` (std_srvs/Trigger), ``geoloc/reset`` (std_srvs/Trigger).
"""
from __future__ import annotations

import dataclasses
import math
import sys
import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PoseArray, PoseWithCovarianceStamped
from nav_msgs.msg import Odometry, Path
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, Imu, NavSatFix, PointCloud2
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from geoloc_ros import events as ev
from geoloc_ros.geometry import transform_points
from geoloc_ros.nodes.common import (OUTPUT_QOS, SENSOR_QOS, SENSOR_QOS_BULK, SENSOR_QOS_DEEP,
                                     Diagnostics, PathBuilder, T_odom_base_of,
                                     TfBroadcaster, candidates_to_pose_array, estimate_to_odometry,
                                     estimate_to_pose_msg, guarded, log_throttled, numpy_to_pointcloud2,
                                     object_map_markers, pose_to_msg)
from geoloc_ros.nodes.diagnostics import update_fusion_status
from geoloc_ros.nodes.inputs import InputDecoder, RejectedInput
from geoloc_ros.nodes.runtime import load_map_and_profile, spin_node, summarize_candidates
from geoloc_ros.nodes.scheduler import InputQueues

__all__ = ["GeolocNode", "main", "spin_node", "load_map_and_profile", "summarize_candidates",
           "SUBSCRIBES", "PUBLISHES", "SERVICES"]

INPUTS = ("points", "imu", "wheel_odom", "gnss/fix", "camera", "initialpose")
# topic -> message type of the all-in-one node (relative names: namespace and remapping apply)
SUBSCRIBES = {
    "points": "sensor_msgs/msg/PointCloud2", "points_livox": "livox_ros_driver2/msg/CustomMsg",
    "imu": "sensor_msgs/msg/Imu", "wheel_odom": "nav_msgs/msg/Odometry",
    "gnss/fix": "sensor_msgs/msg/NavSatFix", "camera/image": "sensor_msgs/msg/CompressedImage",
    "camera/depth": "sensor_msgs/msg/CompressedImage", "camera/camera_info": "sensor_msgs/msg/CameraInfo",
    "camera/instance": "sensor_msgs/msg/Image",
    "initialpose": "geometry_msgs/msg/PoseWithCovarianceStamped",
}
PUBLISHES = {
    "geoloc/pose": "geometry_msgs/msg/PoseWithCovarianceStamped", "geoloc/odometry": "nav_msgs/msg/Odometry",
    "geoloc/path": "nav_msgs/msg/Path", "geoloc/candidates": "geometry_msgs/msg/PoseArray",
    "geoloc/objects": "visualization_msgs/msg/MarkerArray", "geoloc/scan": "sensor_msgs/msg/PointCloud2",
    "geoloc/local_odometry": "nav_msgs/msg/Odometry",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray", "/tf": "tf2_msgs/msg/TFMessage",
}
FIX_TOPICS = {"bev": "geoloc/bev_fix", "objects": "geoloc/object_fix"}
# inputs from other nodes / RViz: best effort matches reliable and best-effort publishers alike
FIX_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
SERVICES = {"geoloc/global_localize": "std_srvs/srv/Trigger", "geoloc/reset": "std_srvs/srv/Trigger"}


class GeolocNode(Node):
    """All-in-one node; ``overrides`` (dotted names) replace parameter defaults, ``localizer``
    replaces the pipeline built from the parameters (tests)."""

    def __init__(self, node_name: str = "geoloc", *, overrides: dict | None = None,
                 localizer=None, fusion_only: bool = False, **node_kwargs):
        super().__init__(node_name, **node_kwargs)
        from geoloc_ros.nodes.common import declare_config, favour_callbacks
        favour_callbacks()   # the pipeline thread must not starve the subscriptions (GIL)
        self.cfg, self.ncfg = declare_config(self, overrides)
        cfg = self.cfg
        self.fusion_only = fusion_only
        if fusion_only:  # the engines run in bev_localizer / object_localizer
            cfg.enable_bev = cfg.enable_objects = False
        self.mapdir, self.profile, self.map_error = load_map_and_profile(self, cfg)
        if localizer is None:
            from geoloc_ros.pipeline import Localizer
            localizer = Localizer(cfg, self.mapdir)
        self.localizer = localizer
        self.decoder = InputDecoder(self.profile, cfg.base_frame)
        self.diag = Diagnostics(node_name, INPUTS + ("bev", "objects", "fusion", "gnss", "queue"))
        n = self.ncfg
        self.queue = InputQueues(n.queue_size, n.bulk_queue_size, n.reorder_window_s, "imu", n.imu_wait_s,
                                 n.max_latency_s, n.imu_merge_period_s, imu_max_rate_hz=n.imu_max_rate_hz)
        self._lock = threading.RLock()         # guards the localizer
        self._t_newest = -math.inf             # newest accepted event stamp (s)
        self._stale_run: list[float] = []      # stamps of consecutive events behind their own input
        self._t_input: dict[str, float] = {}   # newest processed stamp per input (s)
        self._old_base_guard = (0.0, 0.0)      # (until wall s, new base stamp) after a jump
        self._clock_last: float | None = None
        self._last_pub_wall = 0.0
        self._last_path_wall = 0.0
        self._last_cand_id = {"bev": None, "objects": None}
        self.last_estimate: ev.PoseEstimate | None = None
        self.resets = 0

        # outputs
        self.pub_pose = self.create_publisher(PoseWithCovarianceStamped, "geoloc/pose", OUTPUT_QOS)
        self.pub_odom = self.create_publisher(Odometry, "geoloc/odometry", OUTPUT_QOS)
        self.pub_path = self.create_publisher(Path, "geoloc/path", OUTPUT_QOS)
        self.pub_cands = self.create_publisher(PoseArray, "geoloc/candidates", OUTPUT_QOS)
        self.pub_objects = self.create_publisher(MarkerArray, "geoloc/objects", OUTPUT_QOS)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", OUTPUT_QOS)
        self.pub_scan = self.create_publisher(PointCloud2, "geoloc/scan", OUTPUT_QOS)
        self.pub_local = self.create_publisher(Odometry, "geoloc/local_odometry", OUTPUT_QOS)
        self._last_scan_wall = 0.0
        self.tf = TfBroadcaster(self, cfg.publish_tf and bool(cfg.odom_frame))
        self.path = PathBuilder(cfg.map_frame, self.ncfg.path_max_len)

        # inputs
        if fusion_only:
            for src in [x.strip() for x in self.ncfg.fix_topic_sources.split(",") if x.strip()]:
                topic = FIX_TOPICS.get(src, f"geoloc/{src}_fix")
                self._sub(src, PoseWithCovarianceStamped, topic,
                          lambda m, src=src: self.decoder.fix(m, src, cfg.map_frame), qos=FIX_QOS)
        else:
            compressed = self._compressed_images()
            img_type = CompressedImage if compressed else Image
            self._sub("points", PointCloud2, "points", self.decoder.points, qos=SENSOR_QOS_BULK)
            self._sub_livox()
            if getattr(localizer, "objects", None) is None:
                # only the object engine uses images: decoding them for nothing costs real time
                self.diag["camera"].message = "not subscribed (object engine off)"
                self.get_logger().info("object engine off: camera topics not subscribed")
            else:
                self._sub("camera", img_type, "camera/image", lambda m: self.decoder.image(m, compressed),
                          qos=SENSOR_QOS_BULK)
                self.create_subscription(img_type, "camera/depth", guarded(
                    self, self.diag["camera"], lambda m: self._side(lambda: self.decoder.depth(m, compressed))),
                    SENSOR_QOS_BULK)
                if "camera_instance" in (getattr(self.profile, "roles", None) or {}):
                    self.create_subscription(Image, "camera/instance", guarded(
                        self, self.diag["camera"], lambda m: self._side(lambda: self.decoder.instance(m))),
                        SENSOR_QOS_BULK)
                self.create_subscription(CameraInfo, "camera/camera_info", guarded(
                    self, self.diag["camera"], lambda m: self._side(lambda: self.decoder.camera_info(m))),
                    SENSOR_QOS)
        self._sub("imu", Imu, "imu", self.decoder.imu, qos=SENSOR_QOS_DEEP)
        self._sub("wheel_odom", Odometry, "wheel_odom", self.decoder.wheel, qos=SENSOR_QOS_DEEP)
        self._sub("gnss/fix", NavSatFix, "gnss/fix", self.decoder.gnss, qos=SENSOR_QOS_DEEP)
        self._sub("initialpose", PoseWithCovarianceStamped, "initialpose",
                  lambda m: self.decoder.initialpose(m, cfg.map_frame), qos=FIX_QOS)

        if not fusion_only:
            self.create_service(Trigger, "geoloc/global_localize", guarded(self, None, self._srv_global))
        self.create_service(Trigger, "geoloc/reset", guarded(self, None, self._srv_reset))

        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(self.ncfg.diagnostics_period_s, guarded(self, None, self._on_timer), clock=steady)
        self.create_timer(0.1, guarded(self, None, self._watch_clock), clock=steady)
        self._running = True
        self._worker = threading.Thread(target=self._work, name="geoloc-pipeline", daemon=True)
        self._worker.start()
        self._publish_objects()
        self.get_logger().info(
            f"geoloc ready: map={'none' if self.mapdir is None else self.mapdir.root} "
            f"profile={getattr(self.profile, 'name', cfg.profile)} "
            f"bev={'on' if getattr(localizer, 'bev', None) is not None else 'off'} "
            f"objects={'on' if getattr(localizer, 'objects', None) is not None else 'off'} tf={self.tf.mode}")

    # ---- subscriptions ---------------------------------------------------------------------
    def _sub(self, name: str, msg_type, topic: str, decode, qos=SENSOR_QOS) -> None:
        stats = self.diag[name]

        def on_msg(msg):
            stats.received += 1
            try:
                e = decode(msg)
            except RejectedInput as r:
                stats.reject(r.reason)
                log_throttled(self, f"rejected.{topic}", f"{topic}: rejected ({r})")
                return
            if stats.note_stamp(e.t) and name == "imu":
                log_throttled(self, f"missing.{topic}", f"{topic}: messages missing (stamp gaps; total "
                              f"{stats.missing}): the node or the link is not keeping up")
            if not self.queue.put(name, e, time.monotonic()):
                self.diag["queue"].reject(f"dropped_oldest.{name}")
                log_throttled(self, f"full.{topic}", f"{topic}: queue full ({self.queue.capacity_of(name)}): "
                              "the node is behind, dropping the oldest")
        on_msg.__name__ = f"on_{name.replace('/', '_')}"
        # one callback group per topic: a slow cloud decode never holds back the IMU
        def on_lost(info):  # DDS discarded messages before they reached the callback (overload)
            stats.rejected["lost_in_transport"] += int(info.total_count_change)
            log_throttled(self, f"lost.{topic}", f"{topic}: {info.total_count_change} message(s) lost in "
                          "transport (the node is not keeping up)")
        self.create_subscription(msg_type, topic, guarded(self, stats, on_msg), qos,
                                 callback_group=MutuallyExclusiveCallbackGroup(),
                                 event_callbacks=SubscriptionEventCallbacks(message_lost=on_lost))

    def _compressed_images(self) -> bool:
        """CompressedImage or Image on camera/*: the parameter, or with 'auto' the profile's type."""
        mode = self.ncfg.image_transport
        if mode == "auto":
            spec = (getattr(self.profile, "roles", None) or {}).get("camera_rgb")
            return spec is None or "CompressedImage" in spec.msgtype
        return mode != "raw"

    def _side(self, fn) -> None:
        try:
            fn()
        except RejectedInput as r:
            self.diag["camera"].reject(r.reason)

    def _sub_livox(self) -> None:
        try:
            from livox_ros_driver2.msg import CustomMsg  # type: ignore
        except ImportError:
            try:
                from livox_ros_driver.msg import CustomMsg  # type: ignore
            except ImportError:
                self.get_logger().info("livox_ros_driver(2) not installed: 'points_livox' (Livox "
                                       "CustomMsg) is not subscribed; use PointCloud2 on 'points' "
                                       "(geoloc play converts)")
                return
        self._sub("points", CustomMsg, "points_livox", self.decoder.livox, qos=SENSOR_QOS_BULK)

    # ---- processing thread -----------------------------------------------------------------
    def _work(self) -> None:
        """Take batches of stamp-ordered events (``nodes.scheduler``), process each, publish the
        batch's newest estimate once: under load the publishing cost does not grow with the rate."""
        while self._running:
            batch = self.queue.take(0.1)
            newest = None
            for name, e, t_rx in batch:
                try:
                    est = self._process(name, e, t_rx)
                    if est is not None:
                        newest = (est, t_rx)
                except Exception as ex:  # noqa: BLE001 - the pipeline must not take the node down
                    self.diag[name].reject("pipeline_error")
                    log_throttled(self, "pipeline", f"pipeline failed on {type(e).__name__}: "
                                  f"{type(ex).__name__}: {ex}", level="error")
            if newest is not None:
                try:
                    self._publish_estimate(*newest)
                except Exception as ex:  # noqa: BLE001
                    log_throttled(self, "publish", f"publishing failed: {type(ex).__name__}: {ex}",
                                  level="error")
            self.queue.done(len(batch))   # pending until processed and published

    def unaccounted(self, name: str) -> int:
        """Messages of input ``name`` that the node received but neither processed, rejected
        (with a reason), dropped from its queue nor merged, nor still holds: 0 when every
        message is counted (messages DDS lost before the callback are counted apart, as
        ``lost_in_transport`` and ``missing``)."""
        s = self.diag[name]
        rejected = sum(v for k, v in s.rejected.items() if k != "lost_in_transport")
        held = self.pending()
        return max(0, s.received - s.accepted - rejected - self.queue.dropped_by_input().get(name, 0)
                   - self.queue.merged_by.get(name, 0) - held)

    def pending(self) -> int:
        """Events received and not yet processed (queued, or taken and not yet published)."""
        return len(self.queue)

    def _process(self, name: str, e, t_rx: float):
        """One event through the pipeline; returns its estimate (None when there is none)."""
        stats = self.diag[name]
        # older than this behind the newest: dropped as stale; kept under the pipeline's own
        # time-jump reset threshold so that a late message never resets the filter
        max_age = min(self.cfg.max_msg_age_s,
                      0.9 * float(getattr(self.localizer, "time_jump_reset_s", 1.0)))
        if isinstance(e, ev.PoseFixEvent) and e.source == "initialpose" and math.isfinite(self._t_newest) \
                and abs(e.t - self._t_newest) > max_age:
            e.t = self._t_newest  # RViz stamps with its own clock; the operator means "now"
        if isinstance(e, ev.ImageEvent) and (e.depth_m is None or e.instance is None):
            self.decoder.attach_depth(e)   # its depth may have arrived after it
        if e.t < self._t_newest - max_age:
            stats.reject("stale")
            # an input whose OWN stamps keep going back, for longer than max_age: the time base
            # jumped backwards (bag loop, restarted recorder). An input that is merely late
            # (delivered behind the others under load) keeps its own order and never resets.
            if e.t < self._t_input.get(name, -math.inf) - max_age:
                self._stale_run.append(e.t)
                if max(self._stale_run) - min(self._stale_run) >= max_age:
                    new_base = max(self._stale_run)
                    self._reset(f"message stamps jumped back by {self._t_newest - e.t:.2f} s")
                    # follow the new time base; for a moment, stragglers of the old one still in
                    # flight are dropped instead of dragging the clock forward again
                    self._t_newest = new_base
                    self._old_base_guard = (time.monotonic() + 1.0, new_base)
            return None
        guard_until, base = self._old_base_guard
        if time.monotonic() < guard_until and e.t > base + 10.0 * max_age + 10.0:
            stats.reject("old_time_base")
            return None
        self._stale_run.clear()
        with self._lock:
            resets_before = getattr(self.localizer, "resets", 0)
            est = self.localizer.process(e)
            if getattr(self.localizer, "resets", 0) != resets_before:
                self.path.clear()
                self.last_estimate = None   # the filter forgot it: diagnostics say "no estimate yet"
        self._t_newest = max(self._t_newest, e.t)
        self._t_input[name] = e.t
        stats.tick(time.monotonic() - t_rx)
        stats.message = "receiving"
        if est is not None:
            self.last_estimate = est
        if isinstance(e, ev.ScanEvent):
            self._publish_scan(e)
        self._publish_engine_candidates(e.t)
        return est

    def _publish_estimate(self, est: ev.PoseEstimate, t_rx: float) -> None:
        """Publish the newest estimate of a batch; ``fusion`` latency is receive -> publish of
        the event that produced it."""
        now = time.monotonic()
        if now - self._last_pub_wall >= self.ncfg.publish_period_s:
            self.diag["fusion"].tick(now - t_rx)
            self._last_pub_wall = now
            cfg = self.cfg
            pose = pose_to_msg(est.T_map_base)      # once for both messages
            self.pub_pose.publish(estimate_to_pose_msg(est, cfg.map_frame, pose))
            self.pub_odom.publish(estimate_to_odometry(est, cfg.map_frame, cfg.base_frame, pose))
            if est.T_map_odom is not None and cfg.odom_frame:
                self.tf.send(np.asarray(est.T_map_odom, float), cfg.map_frame, cfg.odom_frame, est.t)
                T_ob = T_odom_base_of(est)
                self.pub_local.publish(estimate_to_odometry(
                    dataclasses.replace(est, T_map_base=T_ob), cfg.odom_frame, cfg.base_frame))
        if now - self._last_path_wall >= self.ncfg.path_period_s:
            self._last_path_wall = now
            self.path.append(est.t, est.T_map_base)
            self.pub_path.publish(self.path.to_msg())

    def _publish_scan(self, scan: ev.ScanEvent) -> None:
        """The scan in the map frame at the newest estimate (visualisation; works without TF)."""
        period = self.ncfg.scan_viz_period_s
        est = self.last_estimate
        now = time.monotonic()
        if period <= 0 or est is None or now - self._last_scan_wall < period:
            return
        self._last_scan_wall = now
        pts = np.asarray(scan.points, float)[:, :3]
        step = max(1, len(pts) // max(1, self.ncfg.scan_viz_max_points))
        T = np.asarray(est.T_map_base, float) @ np.asarray(scan.T_base_sensor, float)
        self.pub_scan.publish(numpy_to_pointcloud2(transform_points(T, pts[::step]),
                                                   self.cfg.map_frame, scan.t))

    def _publish_engine_candidates(self, t_s: float) -> None:
        stats = getattr(self.localizer, "stats", {}) or {}
        for src in ("bev", "objects"):
            st = stats.get(src)
            c = getattr(st, "last_candidate", None)
            if c is None or id(c) == self._last_cand_id[src]:
                continue
            self._last_cand_id[src] = id(c)
            if c.status == ev.CandidateStatus.OK and c.T_map_base is not None:
                self.pub_cands.publish(candidates_to_pose_array([c], self.cfg.map_frame, t_s))
                if src == "objects":
                    self._publish_objects(c.info.get("associations"), t_s)

    def _publish_objects(self, associations=None, t_s: float = 0.0) -> None:
        m = object_map_markers(getattr(self.localizer, "objects", None), self.cfg.map_frame, t_s,
                               associations)
        if m is not None:
            self.pub_objects.publish(m)

    # ---- resets, clock, diagnostics ---------------------------------------------------------
    def _reset(self, why: str) -> None:
        self.get_logger().warning(f"{why}: resetting the filter")
        with self._lock:
            self.localizer.reset()
        self._t_newest = -math.inf
        self._t_input.clear()
        self._stale_run.clear()
        self._old_base_guard = (0.0, 0.0)
        self.path.clear()
        self.last_estimate = None
        self.resets += 1
        self.diag["fusion"].values["resets"] = self.resets

    def _watch_clock(self) -> None:
        now = self.get_clock().now().nanoseconds * 1e-9
        last, self._clock_last = self._clock_last, now
        if last is not None and now < last - self.ncfg.clock_jump_reset_s and now > 0:
            self.queue.clear()
            self._reset(f"clock jumped backwards by {last - now:.2f} s")

    def _on_timer(self) -> None:
        self._update_engine_diag()
        self._timer_ticks = getattr(self, "_timer_ticks", 0) + 1
        if self._timer_ticks % 5 == 0:  # late RViz subscribers get the map objects too
            self._publish_objects()
        q = self.diag["queue"]
        q.values.update({"size": self.pending(), "capacity": self.queue.maxlen,
                         "bulk_capacity": self.queue.bulk_capacity, "high_water": self.queue.high_water,
                         "dropped": self.queue.dropped, "imu_merged": self.queue.merged})
        q.values.update({f"dropped.{k}": v for k, v in self.queue.dropped_by_input().items()})
        q.level = DiagnosticStatus.WARN if self.queue.dropped else DiagnosticStatus.OK
        q.message = (f"dropped {self.queue.dropped} under load" if self.queue.dropped else "ok") + (
            f"; merged {self.queue.merged} IMU samples to catch up" if self.queue.merged else "")
        for name in INPUTS:
            s = self.diag[name]
            s.values.update({"queue_dropped": self.queue.dropped_by_input().get(name, 0),
                             "merged": self.queue.merged_by.get(name, 0)})
            if s.rejected or s.missing:
                s.level = DiagnosticStatus.WARN
                s.message = f"{sum(s.rejected.values())} rejected" + "".join(
                    f", {k} {v}" for k, v in s.rejected.most_common(3)) + (
                    f"; {s.missing} missing (stamp gaps)" if s.missing else "")
        self.pub_diag.publish(self.diag.to_msg(self.get_clock().now().nanoseconds * 1e-9))

    def _update_engine_diag(self) -> None:
        loc = self.localizer
        stats = getattr(loc, "stats", {}) or {}
        for src in ("bev", "objects"):
            d = self.diag[src]
            st = stats.get(src)
            if self.fusion_only:   # split layout: the engine is another node; these are its fixes
                topic = FIX_TOPICS.get(src, src)
                taken = getattr(st, "accepted", 0)   # by the filter (unlocalized: once confirmed)
                if st is not None:
                    d.values["filter_accepted"] = taken
                    for k, v in dict(getattr(st, "no_fix_reasons", {})).items():
                        d.values[f"no_fix.{k}"] = v
                d.level = DiagnosticStatus.OK if d.accepted and taken else DiagnosticStatus.WARN
                d.message = (f"{d.accepted} fixes from {topic}, {taken} accepted by the filter" if d.accepted
                             else f"waiting for {topic}")
                continue
            if getattr(loc, src, None) is None:
                d.level = DiagnosticStatus.WARN if self.cfg.map_dir else DiagnosticStatus.OK
                d.message = self.map_error or ("engine off (no map)" if not self.cfg.map_dir
                                               else "engine off (map lacks its part)")
                continue
            if st is None:
                continue
            d.values.update({"queries": st.queries, "fixes": st.fixes, "accepted": st.accepted})
            lat = (getattr(st, "latency_ms", {}) or {}).get("total") or []
            if lat:
                d.values["engine_ms_p95"] = round(float(np.percentile(lat[-200:], 95)), 1)
            for k, v in dict(getattr(st, "no_fix_reasons", {})).items():
                d.values[f"no_fix.{k}"] = v
            d.level = DiagnosticStatus.OK
            d.message = f"{st.accepted}/{st.queries} fixes accepted"
        # the input checks' counts, also before the filter has an estimate (a dict copy is atomic
        # under the GIL: no waiting for the pipeline's lock behind an engine query)
        counters = dict(getattr(loc, "counters", None) or {})
        reasons = dict(getattr(loc, "reasons", None) or {})
        update_fusion_status(self.diag["fusion"], self.diag["gnss"], self.last_estimate, self.resets,
                             counters, reasons)

    # ---- services ---------------------------------------------------------------------------
    def _srv_global(self, request, response):
        with self._lock:
            try:
                cands = list(self.localizer.global_localize())
            except Exception as e:  # noqa: BLE001
                response.success, response.message = False, f"global localization failed: {e}"
                return response
        t = self._t_newest if math.isfinite(self._t_newest) else 0.0
        self.pub_cands.publish(candidates_to_pose_array(cands, self.cfg.map_frame, t))
        self.last_candidates = cands
        response.success = bool(cands)
        response.message = summarize_candidates(cands)
        best = cands[0] if cands else None
        if self.ncfg.relocalize_on_request and best is not None and best.cov6 is not None:
            # the operator asked "where am I?": the best hypothesis re-initializes the filter, as
            # an initial pose does (a far-off estimate would gate a normal fix out)
            scan = getattr(self.localizer, "last_scan", None)
            t_fix = scan.t_middle if scan is not None else t
            fix = ev.PoseFixEvent(t=t_fix, T_map_base=np.asarray(best.T_map_base, float),
                                  cov6=np.asarray(best.cov6, float), source="initialpose",
                                  frame_id=self.cfg.map_frame, dof="xyyaw")
            self.queue.put("initialpose", fix, time.monotonic())
            response.message += "; filter re-initialized at #1"
        return response

    def _srv_reset(self, request, response):
        self.queue.clear()
        self._reset("reset requested")
        response.success, response.message = True, "filter reset"
        return response

    def destroy_node(self):
        self._running = False
        if self._worker.is_alive():
            self._worker.join(timeout=2.0)
        return super().destroy_node()


def main(argv=None) -> int:
    """Console script ``geoloc_node`` (``ros2 run geoloc_ros geoloc_node --ros-args ...``)."""
    return spin_node(GeolocNode, argv)


if __name__ == "__main__":
    sys.exit(main())
