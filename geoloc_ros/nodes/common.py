"""What every geoloc node shares: QoS, parameters, input guarding, the bounded queue, TF.

The nodes are thin doors: messages in are turned into events by ``geoloc_ros.msgs`` (through
``nodes.inputs``) and fed to ``geoloc_ros.pipeline.Localizer``; what comes out is turned into
messages by ``nodes.convert``; ``nodes.diagnostics`` counts everything. The names of those two
modules are re-exported here.
"""
from __future__ import annotations

import collections
import dataclasses
import math
import threading
import time
from typing import Any, Callable

import numpy as np
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from geoloc_ros.config import GeolocConfig, config_from_flat, describe, flatten
from geoloc_ros.input_checks import validate_event  # noqa: F401  (re-exported)
from geoloc_ros.nodes.config import NodeConfig
from geoloc_ros.nodes.convert import (PathBuilder, T_odom_base_of, candidate_to_fix_msg,  # noqa: F401
                                      candidates_to_pose_array, estimate_to_odometry,
                                      estimate_to_pose_msg, msg_to_pose, numpy_to_pointcloud2,
                                      object_map_markers, objects_to_markers, pose_to_msg, s_to_stamp,
                                      stamp_to_s, transform_msg)
from geoloc_ros.nodes.diagnostics import ComponentStats, Diagnostics  # noqa: F401

__all__ = [
    "SENSOR_QOS", "SENSOR_QOS_DEEP", "SENSOR_QOS_BULK", "OUTPUT_QOS", "declare_config",
    "declared_defaults", "validate_event", "EventQueue", "TfBroadcaster", "guarded", "favour_callbacks",
    "log_throttled",
    # re-exported from nodes.convert / nodes.diagnostics
    "stamp_to_s", "s_to_stamp", "pose_to_msg", "msg_to_pose", "estimate_to_pose_msg",
    "estimate_to_odometry", "PathBuilder", "candidates_to_pose_array", "candidate_to_fix_msg",
    "numpy_to_pointcloud2", "object_map_markers", "objects_to_markers", "transform_msg",
    "T_odom_base_of", "ComponentStats", "Diagnostics",
]

# Sensor topics: best effort, keep the last few (SensorDataQoS semantics, deeper for 200 Hz IMUs).
SENSOR_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50,
                        reliability=ReliabilityPolicy.BEST_EFFORT,
                        durability=DurabilityPolicy.VOLATILE)
# High-rate small messages (IMU, wheel, GNSS): deeper, so that an executor stall of 1 s does
# not drop 200 Hz IMU samples; not deeper, because a flood waits in this queue before the
# callback: the depth over the executor's take rate bounds that wait (beyond it the oldest are
# overwritten, reported as stamp gaps, ``missing``).
SENSOR_QOS_DEEP = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=200,
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


# ---- input guarding -----------------------------------------------------------------------------
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


def log_throttled(node, key: str, msg: str, period_s: float = 2.0, level: str = "warning") -> bool:
    """Log ``msg`` at most once per ``period_s`` for ``key``. Checked before rclpy's logger:
    its own ``throttle_duration_sec`` inspects the caller's frame and source file on every
    call, which under a flood costs the subscriptions more than the message does."""
    now = time.monotonic()
    last = node.__dict__.setdefault("_geoloc_log_last", {})
    if now - last.get(key, -math.inf) < period_s:
        return False
    last[key] = now
    getattr(node.get_logger(), level)(msg)
    return True


def guarded(node, stats: ComponentStats | None, fn: Callable) -> Callable:
    """Wrap a subscription callback: any exception is counted (``callback_error``) and logged
    (throttled), never propagated: the node does not die on input."""
    def cb(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - the node must survive any input
            if stats is not None:
                stats.reject("callback_error")
            name = getattr(fn, '__name__', 'callback')
            log_throttled(node, f"guarded.{name}", f"{name}: {type(e).__name__}: {e}")
            return None
    cb.__name__ = getattr(fn, "__name__", "callback")
    return cb


def favour_callbacks(interval_s: float = 0.001) -> None:
    """Shorten the interpreter's GIL switch interval (default 5 ms) to ``interval_s``: a node's
    processing thread runs Python-heavy engine steps, and with 5 ms every subscription callback
    (several GIL hand-offs each) waits behind it while DDS overwrites the IMU. Process-wide;
    never lengthens it."""
    import sys
    if sys.getswitchinterval() > interval_s:
        sys.setswitchinterval(interval_s)


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
        tf = transform_msg(T_parent_child, parent, child, t_s)
        if self.mode == "tf2_ros":
            self._impl.sendTransform(tf)
        else:
            self._impl.publish(self._TFMessage(transforms=[tf]))
        return True
