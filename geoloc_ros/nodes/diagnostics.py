"""Diagnostics of the nodes: counters, update rate and latency per input and engine, published
as one diagnostic_msgs/DiagnosticArray (one DiagnosticStatus each)."""
from __future__ import annotations

import collections
import math
import threading
import time
from typing import Any, Iterable, Mapping

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from geoloc_ros.nodes.convert import s_to_stamp

__all__ = ["ComponentStats", "Diagnostics", "update_fusion_status"]


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
                period = min(self._periods)
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


_VERDICT_LEVEL = {"OK": DiagnosticStatus.OK, "DEGRADED": DiagnosticStatus.WARN,
                  "REJECTED": DiagnosticStatus.WARN, "DENIED": DiagnosticStatus.ERROR}


def update_fusion_status(fus: ComponentStats, gn: ComponentStats, est, resets: int,
                         pipeline_counters: Mapping[str, int] | None = None,
                         pipeline_reasons: Mapping[str, str] | None = None) -> None:
    """The filter's and the GNSS monitor's statuses from the newest estimate (mode, sigmas,
    counters; GNSS verdict and reason), and the pipeline's input-check counters
    (``counter.pipeline.<input>.<what>``: NaN points, wrong frames, LiDAR gaps, floods, clock
    jumps; ``Localizer.counters``/``reasons``) read live, so that a robot that is not localized
    yet (no estimate) still reports its bad inputs."""
    fus.values["resets"] = resets
    if est is None:
        fus.level, fus.message = DiagnosticStatus.WARN, "no estimate yet"
        for k in ("sigma_x_m", "sigma_y_m", "sigma_yaw_deg", "wheel_slip", "wheel_scale",
                  "wheel_scale_std"):   # of an estimate before a reset
            fus.values.pop(k, None)
        fus.values["mode"] = "no estimate"
        if pipeline_counters:
            n = sum(int(v) for v in pipeline_counters.values())
            fus.message += f"; {n} input problems (" + ", ".join(
                f"{k} {v}" for k, v in sorted(pipeline_counters.items(), key=lambda kv: -kv[1])[:3]) + ")"
    else:
        sig = np.sqrt(np.clip(np.diag(np.asarray(est.cov6, float)), 0, None))
        fus.level = DiagnosticStatus.OK if est.mode == "localized" else DiagnosticStatus.WARN
        fus.message = est.mode
        fus.values.update({"mode": est.mode, "sigma_x_m": round(float(sig[0]), 3),
                           "sigma_y_m": round(float(sig[1]), 3),
                           "sigma_yaw_deg": round(math.degrees(float(sig[5])), 2),
                           "wheel_slip": est.wheel_slip,
                           "wheel_scale": round(float(est.wheel_scale), 4),    # reported / true wheel speed
                           "wheel_scale_std": round(float(est.wheel_scale_std), 4)})
        for k, v in (est.counters or {}).items():
            fus.values[f"counter.{k}"] = v
        v = est.gnss_verdict
        if v is None:
            gn.level, gn.message = DiagnosticStatus.WARN, "no GNSS verdict yet"
        else:
            vs = v.value if hasattr(v, "value") else str(v)
            gn.level = _VERDICT_LEVEL.get(vs, DiagnosticStatus.WARN)
            gn.message = f"{vs}: {est.gnss_reason}" if est.gnss_reason else vs
            gn.values.update({"verdict": vs, "reason": est.gnss_reason})
    for k, v in dict(pipeline_counters or {}).items():   # live: newer than the estimate's copy
        fus.values[f"counter.pipeline.{k}"] = v
    for k, why in dict(pipeline_reasons or {}).items():
        fus.values[f"reason.pipeline.{k}"] = why
