"""Base of the split layout's engine nodes (``bev_localizer``, ``object_localizer``).

An engine node decodes its inputs, runs one engine on a worker thread (a slot holding the latest
work item: when the engine is slower than the sensor, older items are dropped and counted), and
publishes each OK candidate as a PoseWithCovarianceStamped fix in ``map`` for ``fusion_node``,
plus the ranked candidates and ``/diagnostics``.
"""
from __future__ import annotations

import math
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PoseArray, PoseWithCovarianceStamped
from rclpy.clock import Clock, ClockType
from rclpy.node import Node

from geoloc_ros import events as ev
from geoloc_ros.nodes.common import (OUTPUT_QOS, Diagnostics, EventQueue, candidate_to_fix_msg,
                                     candidates_to_pose_array, declare_config, favour_callbacks, guarded,
                                     log_throttled)
from geoloc_ros.nodes.inputs import InputDecoder, RejectedInput

__all__ = ["EngineNode"]


class EngineNode(Node):
    """Subclasses set ``engine_name`` and ``fix_topic``, implement ``build_engine(mapdir)`` and
    ``run(name, event) -> list[Candidate]``, and call ``subscribe(...)`` for their inputs."""

    engine_name = "engine"
    fix_topic = "geoloc/engine_fix"

    def __init__(self, node_name: str, *, overrides: dict | None = None, engine=None,
                 slot_size: int = 2, **node_kwargs):
        super().__init__(node_name, **node_kwargs)
        from geoloc_ros.nodes.runtime import load_map_and_profile
        self.cfg, self.ncfg = declare_config(self, overrides)
        self.mapdir, self.profile, self.map_error = load_map_and_profile(self, self.cfg)
        self.engine = engine
        if self.engine is None and self.mapdir is not None:
            try:
                self.engine = self.build_engine(self.mapdir)
            except Exception as e:  # noqa: BLE001 - a broken map part must not kill the node
                self.map_error = f"{self.engine_name} engine not usable: {type(e).__name__}: {e}"
                self.get_logger().error(self.map_error)
        if self.engine is None and not self.map_error:
            self.map_error = "no map (parameter map_dir): engine off"
            self.get_logger().warning(self.map_error)
        self.decoder = InputDecoder(self.profile, self.cfg.base_frame)
        self.diag = Diagnostics(node_name, [self.engine_name, "queue"])
        self.queue = EventQueue(slot_size)
        self.lock = threading.RLock()
        self.t_newest = -math.inf
        self.queries = self.fixes = 0
        self.last_candidates: list[ev.Candidate] = []
        self.pub_fix = self.create_publisher(PoseWithCovarianceStamped, self.fix_topic, OUTPUT_QOS)
        self.pub_cands = self.create_publisher(PoseArray, "geoloc/candidates", OUTPUT_QOS)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", OUTPUT_QOS)
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(self.ncfg.diagnostics_period_s, guarded(self, None, self._on_timer), clock=steady)
        favour_callbacks()   # the engine thread must not starve the subscriptions (GIL)
        self._running = True
        self._worker = threading.Thread(target=self._work, name=f"{node_name}-engine", daemon=True)
        self._worker.start()

    # ---- for subclasses ---------------------------------------------------------------------
    def build_engine(self, mapdir):  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self, name: str, event) -> list[ev.Candidate]:  # pragma: no cover - abstract
        raise NotImplementedError

    def subscribe(self, name: str, msg_type, topic: str, decode, qos, queued: bool = True) -> None:
        """Decode each message (rejections counted under ``name``); queue the event for ``run``
        when ``queued``, else the decoder's side effect is all (camera_info, odometry)."""
        stats = self.diag[name]

        def on_msg(msg):
            stats.received += 1
            try:
                e = decode(msg)
            except RejectedInput as r:
                stats.reject(r.reason)
                return
            if e is None or not queued:
                stats.tick()
                return
            if not self.queue.put((name, e, time.monotonic())):
                self.diag["queue"].reject("dropped_oldest")
        on_msg.__name__ = f"on_{name.replace('/', '_')}"
        self.create_subscription(msg_type, topic, guarded(self, stats, on_msg), qos)

    # ---- worker -----------------------------------------------------------------------------
    def _work(self) -> None:
        while self._running:
            item = self.queue.get(0.1)
            if item is None:
                continue
            name, e, t_rx = item
            stats = self.diag[name]
            if e.t < self.t_newest - self.cfg.max_msg_age_s:
                stats.reject("stale")
                continue
            self.t_newest = max(self.t_newest, e.t)
            if self.engine is None:
                stats.reject("engine_off")
                continue
            try:
                with self.lock:
                    t0 = time.monotonic()
                    cands = self.run(name, e)
                    dt = time.monotonic() - t0
            except Exception as ex:  # noqa: BLE001 - the engine must not take the node down
                stats.reject("engine_error")
                log_throttled(self, "engine", f"{self.engine_name} failed: {type(ex).__name__}: {ex}",
                              level="error")
                continue
            stats.tick(time.monotonic() - t_rx)
            if cands is None:
                continue
            self.queries += 1
            self.diag[self.engine_name].tick(dt)
            self.publish_candidates(cands, self.fix_stamp(e))

    def fix_stamp(self, e) -> float:
        """Stamp (s) of the candidates computed from event ``e`` (default: its own stamp)."""
        return float(e.t)

    def publish_candidates(self, cands: list[ev.Candidate], t_s: float) -> None:
        self.last_candidates = list(cands)
        ok = [c for c in cands if c.status == ev.CandidateStatus.OK and c.T_map_base is not None]
        if ok:
            self.pub_cands.publish(candidates_to_pose_array(ok, self.cfg.map_frame, t_s))
            self.pub_fix.publish(candidate_to_fix_msg(ok[0], t_s, self.cfg.map_frame))
            self.fixes += 1
        elif cands:
            self.diag[self.engine_name].reject(cands[0].reason or "no_fix")

    def _on_timer(self) -> None:
        d = self.diag[self.engine_name]
        if self.engine is None:
            d.level, d.message = DiagnosticStatus.ERROR if self.cfg.map_dir else DiagnosticStatus.WARN, self.map_error
        else:
            d.level = DiagnosticStatus.OK
            d.message = f"{self.fixes} fixes from {self.queries} queries"
        d.values.update({"queries": self.queries, "fixes": self.fixes})
        q = self.diag["queue"]
        q.values.update({"size": len(self.queue), "dropped": self.queue.dropped})
        self.pub_diag.publish(self.diag.to_msg(self.get_clock().now().nanoseconds * 1e-9))

    def destroy_node(self):
        self._running = False
        if self._worker.is_alive():
            self._worker.join(timeout=2.0)
        return super().destroy_node()
