"""Between the subscriptions and the processing thread: per-input bounded queues, released in
stamp order, with a latency bound. No ROS here (unit-tested without DDS).

Why per input: the executor delivers each topic on its own, so under CPU load one topic (the
200 Hz IMU) can arrive late behind the others. One shared FIFO would then either hand the
pipeline events out of stamp order or, when full, drop whatever is oldest -- IMU samples
included, which an ESKF cannot do without. Here:

1. every input has its own FIFO. Bulk inputs (clouds, images) keep the newest few and drop the
   oldest (``bulk_capacity``, counted): a late scan is worth less than keeping up. Small inputs
   (IMU, wheel, GNSS, fixes) get ``capacity`` each, a memory bound that a working node never
   reaches (an overflow still drops the oldest, counted);
2. :meth:`take` releases the head with the smallest stamp once it has waited ``window_s`` after
   arrival and, for anything but the clock input (IMU), once the IMU has been received up to its
   stamp (or the IMU is silent for ``clock_wait_s``): a measurement never overtakes the IMU that
   precedes it;
3. when the oldest released event has waited longer than ``max_latency_s`` (the node is behind:
   a flood, a slow engine step), consecutive IMU samples are merged into one per
   ``imu_merge_period_s`` (mean specific force and rate over the interval at its first stamp:
   the velocity and angle increments are kept to first order) instead of being dropped, so the
   backlog and the latency stay bounded;
   IMU samples closer than ``1 / imu_max_rate_hz`` (a stream faster than its sensor: a flood)
   are merged the same way at any time, so a flood costs the filter no more than the sensor;
4. one :meth:`take` returns at most ``max_batch`` events; the node publishes once per batch.
"""
from __future__ import annotations

import collections
import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from geoloc_ros import events as ev
from geoloc_ros.input_checks import validate_event

__all__ = ["InputQueues", "merge_imu"]

BULK_INPUTS = ("points", "camera")


def merge_imu(samples: list) -> ev.ImuEvent:
    """Consecutive ImuEvents -> one with their mean acceleration and rate (m/s^2, rad/s) at the
    FIRST stamp: the filter holds a sample from its stamp until the next one (zero-order hold),
    so the mean then covers the group's interval. The orientation, when reported, is the last."""
    if len(samples) == 1:
        return samples[0]
    acc = np.mean([np.asarray(s.acc_mps2, float) for s in samples], axis=0)
    gyr = np.mean([np.asarray(s.gyr_rps, float) for s in samples], axis=0)
    first, last = samples[0], samples[-1]
    return ev.ImuEvent(t=first.t, acc_mps2=acc, gyr_rps=gyr, orientation_xyzw=last.orientation_xyzw,
                       frame_id=first.frame_id)


@dataclass
class _Stream:
    capacity: int
    items: collections.deque = field(default_factory=collections.deque)   # (event, t_rx wall s)
    last_stamp: float = -math.inf       # stamp of the newest put (s)
    last_rx: float = -math.inf          # wall time of the newest put (s)
    dropped: int = 0
    high_water: int = 0


def _foldable(e: ev.ImuEvent) -> bool:
    """A sample the IMU merge may average: one :func:`validate_event` passes (finite stamp, (3,)
    finite specific force and rate)."""
    return validate_event(e) is None


class InputQueues:
    """Thread-safe per-input queues; ``put`` never blocks, ``take`` blocks up to a timeout.

    ``maxlen`` (the per-input bound of small inputs), ``high_water`` (the longest any input
    queue got), ``dropped`` (total) and ``merged`` (IMU samples folded into others) are what the
    node reports in diagnostics.
    """

    def __init__(self, capacity: int = 2000, bulk_capacity: int = 4, window_s: float = 0.05,
                 clock_input: str = "imu", clock_wait_s: float = 0.2, max_latency_s: float = 0.2,
                 imu_merge_period_s: float = 0.02, max_batch: int = 100, imu_max_rate_hz: float = 1000.0):
        self.maxlen = max(1, int(capacity))
        self.bulk_capacity = max(1, int(bulk_capacity))
        self.window_s = float(window_s)
        self.clock_input = clock_input
        self.clock_wait_s = float(clock_wait_s)
        self.max_latency_s = float(max_latency_s)
        self.imu_merge_period_s = float(imu_merge_period_s)
        self.max_batch = max(1, int(max_batch))
        self.imu_min_period_s = 1.0 / imu_max_rate_hz if imu_max_rate_hz > 0 else 0.0
        self._idle = False
        self._in_hand = 0
        self._streams: dict[str, _Stream] = {}
        self._cv = threading.Condition()
        self._seq = 0
        self.merged = 0                     # IMU samples folded into others (all inputs)
        self.merged_by: collections.Counter = collections.Counter()
        self.high_water = 0

    # ---- producers ------------------------------------------------------------------------
    def _stream(self, name: str) -> _Stream:
        s = self._streams.get(name)
        if s is None:
            s = self._streams[name] = _Stream(self.bulk_capacity if name in BULK_INPUTS else self.maxlen)
        return s

    def put(self, name: str, event, t_rx: float | None = None) -> bool:
        """Enqueue ``event`` of input ``name``; False when the input's oldest event was dropped."""
        t_rx = time.monotonic() if t_rx is None else t_rx
        with self._cv:
            s = self._stream(name)
            dropped = len(s.items) >= s.capacity
            if dropped:
                s.items.popleft()
                s.dropped += 1
            s.items.append((event, t_rx))
            s.last_stamp, s.last_rx = float(event.t), t_rx
            s.high_water = max(s.high_water, len(s.items))
            self.high_water = max(self.high_water, len(s.items))
            if self._idle:
                self._cv.notify()
            return not dropped

    # ---- the consumer ---------------------------------------------------------------------
    def _releasable(self, name: str, e, t_rx: float, now: float) -> bool:
        if now - t_rx < self.window_s:
            return False
        if name == self.clock_input:
            return True
        clk = self._streams.get(self.clock_input)
        if clk is None or now - clk.last_rx > self.clock_wait_s:
            return True   # no IMU (or it went silent): nothing to wait for
        return clk.last_stamp >= e.t or now - t_rx > self.clock_wait_s + self.window_s

    def _release(self, now: float) -> list:
        out = []
        while len(out) < self.max_batch:
            heads = [(s.items[0][0].t, n) for n, s in self._streams.items() if s.items]
            if not heads:
                break
            _, name = min(heads)
            e, t_rx = self._streams[name].items[0]
            if not self._releasable(name, e, t_rx, now):
                break
            self._streams[name].items.popleft()
            out.append((name, e, t_rx))
        return out

    def take(self, timeout_s: float = 0.1) -> list:
        """Events ready for the pipeline, in stamp order: [(input name, event, t_rx wall s)];
        [] after ``timeout_s`` without any."""
        t_end = time.monotonic() + timeout_s
        with self._cv:
            while True:
                now = time.monotonic()
                out = self._release(now)
                if out or now >= t_end:
                    break
                # sleep until the oldest waiting event leaves its reorder window (a new event
                # only wakes an idle consumer: under a flood, waking per message costs the
                # interpreter time the subscriptions need); poll while one waits for the IMU
                oldest = min((s.items[0][1] for s in self._streams.values() if s.items), default=None)
                if oldest is None:
                    self._idle = True
                    self._cv.wait(t_end - now)
                    self._idle = False
                else:
                    self._cv.wait(min(t_end - now, max(oldest + self.window_s - now, 0.005)))
            if out:
                behind = now - min(t for _, _, t in out) > self.max_latency_s
                out = self._merge_imu_runs(out, self.imu_merge_period_s if behind else self.imu_min_period_s)
            self._in_hand = len(out)   # counted as pending until done() (no gap for pending())
        return out

    def done(self, n: int = 1) -> None:
        """The consumer finished ``n`` of the events it took."""
        with self._cv:
            self._in_hand = max(0, self._in_hand - n)

    def _merge_imu_runs(self, batch: list, period_s: float) -> list:
        """Fold runs of consecutive IMU samples closer than ``period_s`` into one per period
        (the events between them keep their place): ``imu_merge_period_s`` when behind by more
        than max_latency_s, else ``imu_min_period_s`` (a stream faster than the IMU can be)."""
        if period_s <= 0:
            return batch
        out, run = [], []

        def flush():
            if not run:
                return
            group = [run[0]]
            for item in run[1:]:
                if item[1].t - group[0][1].t >= period_s - 1e-9:   # (stamps on a grid: no rounding flip)
                    out.append(self._fold(group))
                    group = [item]
                else:
                    group.append(item)
            out.append(self._fold(group))
            run.clear()

        for item in batch:
            e = item[1]
            if item[0] == self.clock_input and isinstance(e, ev.ImuEvent) and _foldable(e):
                if run and (e.frame_id != run[-1][1].frame_id or e.t < run[-1][1].t):
                    flush()
                run.append(item)
            else:
                # a malformed, wrong-frame or stale sample is never folded into good ones (its NaN
                # would spoil their mean; the filter rejects it, counted, on its own)
                flush()
                out.append(item)
        flush()
        return out

    def _fold(self, group: list):
        self.merged += len(group) - 1
        self.merged_by[group[0][0]] += len(group) - 1
        return (group[0][0], merge_imu([g[1] for g in group]), min(g[2] for g in group))

    # ---- bookkeeping ----------------------------------------------------------------------
    def clear(self) -> None:
        with self._cv:
            for s in self._streams.values():
                s.items.clear()

    def __len__(self) -> int:
        """Events waiting plus those taken and not yet done."""
        with self._cv:
            return sum(len(s.items) for s in self._streams.values()) + self._in_hand

    @property
    def dropped(self) -> int:
        return sum(s.dropped for s in self._streams.values())

    def dropped_by_input(self) -> dict[str, int]:
        return {n: s.dropped for n, s in self._streams.items() if s.dropped}

    def capacity_of(self, name: str) -> int:
        return self._stream(name).capacity if name in self._streams else (
            self.bulk_capacity if name in BULK_INPUTS else self.maxlen)

    def reset_high_water(self) -> None:
        with self._cv:
            self.high_water = 0
            for s in self._streams.values():
                s.high_water = len(s.items)
