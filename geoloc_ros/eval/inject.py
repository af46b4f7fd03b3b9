"""Fault injectors: what a robot's sensors, clocks and files get wrong, applied to clean inputs.

Stream faults wrap an iterator of :mod:`geoloc_ros.events` objects and yield a corrupted stream
(events are copied before they are changed, the input is never modified). Every injector records
its interval in a :class:`FaultLog` as ``(t0, t1, kind, count)``, ``count`` being the number of
events it changed, dropped or added. ``t0``/``t1`` are TRUE times (the clean stream's stamps),
also for the clock faults, whose corrupted events carry their clean stamp in ``t_true_s``::

    log = FaultLog()
    stream = inject(clean_events, [StreamFault("gnss_multipath", t0=1e9 + 20.0, duration_s=8.0)], log)
    for e in stream: localizer.process(e)
    log.intervals  # [FaultInterval(t0, t1, "gnss_multipath", count)]

Kinds (``STREAM_FAULTS``): NaN/inf in points and in the fields of every event type; empty and
near-empty clouds; LiDAR dropout; IMU gap, out-of-order and duplicated IMU stamps; clock jumps
backwards and forwards; GNSS denial (silence), multipath jump, drift, spoofing, NO_FIX with stale
coordinates; wheel slip and frozen wheel odometry; wrong frame ids; a 10x IMU flood.

File faults (ROS-free, for map directories and weights files) make broken copies of good files:
:func:`truncate_file`, :func:`corrupt_file`, :func:`set_map_version`, :func:`escape_manifest`,
:func:`write_corrupt_weights`, :func:`write_wrong_shape_weights`, :func:`write_pickle_weights`.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from geoloc_ros.events import (FixStatus, GnssEvent, ImageEvent, ImuEvent, PoseFixEvent, ScanEvent,
                               WheelEvent)

__all__ = ["FaultInterval", "FaultLog", "StreamFault", "STREAM_FAULTS", "inject", "true_stamp",
           "gnss_offset", "truncate_file", "corrupt_file", "set_map_version", "escape_manifest",
           "copy_mapdir", "write_corrupt_weights", "write_wrong_shape_weights", "write_pickle_weights"]


# ---- bookkeeping -----------------------------------------------------------------------------
@dataclass
class FaultInterval:
    """One injected fault: true-time interval (s), kind, and how many events it touched."""
    t0: float
    t1: float
    kind: str
    count: int = 0
    sensor: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class FaultLog:
    """Every fault interval an :func:`inject` call applied."""
    intervals: list = field(default_factory=list)

    def open(self, fault: "StreamFault", sensor: str) -> FaultInterval:
        iv = FaultInterval(fault.t0, fault.t0 + fault.duration_s, fault.kind, 0, sensor)
        self.intervals.append(iv)
        return iv

    @property
    def injected(self) -> int:
        """Events changed, dropped or added over all intervals."""
        return sum(iv.count for iv in self.intervals)


@dataclass
class StreamFault:
    """A fault to inject: ``kind`` (a key of :data:`STREAM_FAULTS`), start ``t0`` (true stamp, s),
    ``duration_s`` and kind-specific ``params`` (defaults in the injector's docstring)."""
    kind: str
    t0: float
    duration_s: float = 5.0
    params: dict = field(default_factory=dict)

    @property
    def t1(self) -> float:
        return self.t0 + self.duration_s


def true_stamp(e) -> float:
    """The clean stream's stamp of an event (differs from ``e.t`` only under a clock fault)."""
    return float(getattr(e, "t_true_s", e.t))


def _copy(e, **changes):
    """A deep copy of ``e`` with ``changes`` (keeps the clean stamp in ``t_true_s``)."""
    t_true = true_stamp(e)
    c = copy.deepcopy(e)
    for k, v in changes.items():
        setattr(c, k, v)
    c.t_true_s = t_true
    return c


def _inside(e, f: StreamFault) -> bool:
    return f.t0 <= true_stamp(e) < f.t1


# ---- NaN / inf -------------------------------------------------------------------------------
def _poison(e, k: int):
    """A copy of ``e`` with NaN (even k) or inf (odd k) in its main numeric field."""
    bad = np.nan if k % 2 == 0 else np.inf
    if isinstance(e, ImuEvent):
        acc = np.array(e.acc_mps2, float)
        acc[k % 3] = bad
        return _copy(e, acc_mps2=acc)
    if isinstance(e, WheelEvent):
        return _copy(e, v_mps=bad) if k % 2 == 0 else _copy(e, yaw_rate_rps=bad)
    if isinstance(e, GnssEvent):
        return _copy(e, lat_deg=bad) if k % 2 == 0 else _copy(e, alt_m=bad)
    if isinstance(e, ScanEvent):
        return _copy(e, points=np.full_like(np.asarray(e.points, np.float32), bad))
    if isinstance(e, PoseFixEvent):
        T = np.array(e.T_map_base, float)
        T[0, 3] = bad
        return _copy(e, T_map_base=T)
    if isinstance(e, ImageEvent) and e.depth_m is not None:
        return _copy(e, depth_m=np.full_like(np.asarray(e.depth_m, np.float32), bad))
    return None


def _nan_fields(events, f, iv, rng):
    """Every ``every``-th event of each type (default 2) inside the window is replaced by a copy
    with NaN or inf in a field (IMU acc, wheel speed/yaw rate, GNSS lat/alt, all scan points,
    pose-fix translation, depth image)."""
    every = int(f.params.get("every", 2))
    seen: dict = {}
    for e in events:
        if _inside(e, f):
            k = seen.get(type(e), 0)
            seen[type(e)] = k + 1
            if k % every == 0:
                bad = _poison(e, k // every)
                if bad is not None:
                    iv.count += 1
                    yield bad
                    continue
        yield e


def _nan_points(events, f, iv, rng):
    """Scans inside the window get ``fraction`` (default 0.3) of their points set to NaN/inf."""
    frac = float(f.params.get("fraction", 0.3))
    for e in events:
        if isinstance(e, ScanEvent) and _inside(e, f) and len(e.points):
            pts = np.array(e.points, np.float32)
            idx = rng.random(len(pts)) < frac
            pts[idx] = np.where(rng.random((int(idx.sum()), 1)) < 0.5, np.nan, np.inf)
            iv.count += 1
            yield _copy(e, points=pts)
        else:
            yield e


def _scan_points(n: int | None):
    """Scans inside the window get ``n`` points (0: an empty cloud)."""
    def run(events, f, iv, rng):
        k = int(f.params.get("points", n))
        for e in events:
            if isinstance(e, ScanEvent) and _inside(e, f):
                pts = np.asarray(e.points, np.float32)
                keep = (np.sort(rng.choice(len(pts), size=min(k, len(pts)), replace=False)) if len(pts)
                        else np.zeros(0, np.int64))
                iv.count += 1
                yield _copy(e, points=pts.reshape(-1, 3)[keep],
                            intensity=None, point_time_s=None, ring=None)
            else:
                yield e
    return run


def _drop(cls):
    """Events of this type inside the window are not delivered (dropout, gap, denial)."""
    def run(events, f, iv, rng):
        for e in events:
            if isinstance(e, cls) and _inside(e, f):
                iv.count += 1
                continue
            yield e
    return run


# ---- IMU stamps ------------------------------------------------------------------------------
def _imu_out_of_order(events, f, iv, rng):
    """Inside the window each pair of consecutive IMU samples is delivered swapped."""
    held = None
    for e in events:
        if isinstance(e, ImuEvent) and _inside(e, f):
            if held is None:
                held = e
                continue
            iv.count += 1
            yield e
            yield held
            held = None
            continue
        if held is not None and isinstance(e, ImuEvent):
            yield held
            held = None
        yield e
    if held is not None:
        yield held


def _imu_duplicate(events, f, iv, rng):
    """Inside the window every IMU sample is delivered twice (same stamp, same values)."""
    for e in events:
        yield e
        if isinstance(e, ImuEvent) and _inside(e, f):
            iv.count += 1
            yield _copy(e)


def _imu_flood(events, f, iv, rng):
    """Inside the window ``factor - 1`` (default 10 - 1) extra IMU samples are inserted between
    consecutive samples (interpolated stamps, same values): ``factor`` x the nominal rate."""
    factor = int(f.params.get("factor", 10))
    prev = None
    for e in events:
        if isinstance(e, ImuEvent):
            if prev is not None and _inside(e, f):
                t0, t1 = prev.t, e.t
                for j in range(1, factor):
                    iv.count += 1
                    yield _copy(prev, t=t0 + (t1 - t0) * j / factor)
            prev = e
        yield e


# ---- clocks ----------------------------------------------------------------------------------
def _clock_jump(sign: float):
    """From ``t0`` on every stamp is shifted by ``sign * jump_s`` (default 30 s): a restarted
    recorder or a looping bag (backwards), a clock step (forwards). ``duration_s`` is the span
    over which recovery is judged; the shift lasts to the end of the run."""
    def run(events, f, iv, rng):
        dt = sign * float(f.params.get("jump_s", 30.0))
        for e in events:
            if true_stamp(e) >= f.t0:
                if true_stamp(e) < f.t1:
                    iv.count += 1
                yield _copy(e, t=e.t + dt)
            else:
                yield e
    return run


# ---- GNSS ------------------------------------------------------------------------------------
def gnss_offset(e: GnssEvent, d_enu_m) -> GnssEvent:
    """Copy of ``e`` moved by ``d_enu_m`` (3,) metres East/North/Up (exact, through the datum's
    geodesy at the fix itself)."""
    from geoloc_ros.fusion.gnss import Datum
    lat, lon, alt = Datum(e.lat_deg, e.lon_deg, e.alt_m, 0.0).from_map(np.asarray(d_enu_m, float))
    return _copy(e, lat_deg=float(lat), lon_deg=float(lon), alt_m=float(alt))


def _gnss_shift(mode: str):
    """GNSS positions inside the window are offset; the reported covariance is scaled by
    ``cov_scale``. ``multipath``: a jump of ``jump_m`` (default 15 m) along ``dir_deg`` (default
    60 deg from East) with cov_scale 1; ``drift``: ``rate_mps`` (default 0.4) growing offset;
    ``spoof``: a constant ``offset_m`` (default 40 m) with cov_scale 0.25 (a confident liar)."""
    def run(events, f, iv, rng):
        ang = np.radians(float(f.params.get("dir_deg", 60.0)))
        u = np.array([np.cos(ang), np.sin(ang), 0.0])
        scale = float(f.params.get("cov_scale", 0.25 if mode == "spoof" else 1.0))
        for e in events:
            if isinstance(e, GnssEvent) and _inside(e, f):
                tau = true_stamp(e) - f.t0
                mag = {"multipath": float(f.params.get("jump_m", 15.0)),
                       "drift": float(f.params.get("rate_mps", 0.4)) * tau,
                       "spoof": float(f.params.get("offset_m", 40.0))}[mode]
                out = gnss_offset(e, mag * u)
                if out.cov_enu_m2 is not None:
                    out.cov_enu_m2 = np.asarray(out.cov_enu_m2, float) * scale
                iv.count += 1
                yield out
            else:
                yield e
    return run


def _gnss_nofix_stale(events, f, iv, rng):
    """Inside the window GNSS reports status NO_FIX with the coordinates of the last good fix."""
    last = None
    for e in events:
        if isinstance(e, GnssEvent):
            if _inside(e, f) and last is not None:
                iv.count += 1
                yield _copy(e, lat_deg=last.lat_deg, lon_deg=last.lon_deg, alt_m=last.alt_m,
                            status=FixStatus.NO_FIX, cov_enu_m2=last.cov_enu_m2)
                continue
            last = e
        yield e


# ---- wheel -----------------------------------------------------------------------------------
def _wheel_slip(events, f, iv, rng):
    """Inside the window the wheels over-report speed by ``slip_ratio`` (default 0.5) and
    yaw rate by ``yaw_bias_rps`` (default 0.05)."""
    r = float(f.params.get("slip_ratio", 0.5))
    b = float(f.params.get("yaw_bias_rps", 0.05))
    for e in events:
        if isinstance(e, WheelEvent) and _inside(e, f):
            iv.count += 1
            yield _copy(e, v_mps=e.v_mps * (1.0 + r), yaw_rate_rps=e.yaw_rate_rps + b)
        else:
            yield e


def _wheel_frozen(events, f, iv, rng):
    """Inside the window wheel odometry is frozen: the odometry pose stops changing, so speed
    and yaw rate read 0 while the robot moves (stuck encoder / hung driver)."""
    for e in events:
        if isinstance(e, WheelEvent) and _inside(e, f):
            iv.count += 1
            yield _copy(e, v_mps=0.0, yaw_rate_rps=0.0)
        else:
            yield e


# ---- frames ----------------------------------------------------------------------------------
def _wrong_frame(events, f, iv, rng):
    """Inside the window every event carries ``frame_id`` = ``frame`` (default 'wrong_frame')."""
    frame = str(f.params.get("frame", "wrong_frame"))
    for e in events:
        if _inside(e, f) and hasattr(e, "frame_id"):
            iv.count += 1
            yield _copy(e, frame_id=frame)
        else:
            yield e


Injector = Callable[[Iterable, StreamFault, FaultInterval, np.random.Generator], Iterator]

#: kind -> (sensor, injector, default duration s)
STREAM_FAULTS: dict[str, tuple[str, Injector, float]] = {
    "nan_fields": ("all", _nan_fields, 3.0),
    "nan_points": ("lidar", _nan_points, 5.0),
    "empty_cloud": ("lidar", _scan_points(0), 5.0),
    "tiny_cloud": ("lidar", _scan_points(5), 5.0),
    "lidar_dropout": ("lidar", _drop(ScanEvent), 5.0),
    "imu_gap": ("imu", _drop(ImuEvent), 1.0),
    "imu_out_of_order": ("imu", _imu_out_of_order, 3.0),
    "imu_duplicate": ("imu", _imu_duplicate, 3.0),
    "clock_back": ("clock", _clock_jump(-1.0), 10.0),
    "clock_forward": ("clock", _clock_jump(+1.0), 10.0),
    "gnss_denial": ("gnss", _drop(GnssEvent), 30.0),
    "gnss_multipath": ("gnss", _gnss_shift("multipath"), 8.0),
    "gnss_drift": ("gnss", _gnss_shift("drift"), 20.0),
    "gnss_spoof": ("gnss", _gnss_shift("spoof"), 15.0),
    "gnss_nofix_stale": ("gnss", _gnss_nofix_stale, 15.0),
    "wheel_slip": ("wheel", _wheel_slip, 5.0),
    "wheel_frozen": ("wheel", _wheel_frozen, 5.0),
    "wrong_frame": ("all", _wrong_frame, 3.0),
    "imu_flood": ("imu", _imu_flood, 3.0),
}


def inject(events: Iterable, faults: Iterable[StreamFault], log: FaultLog | None = None,
           seed: int = 0) -> Iterator:
    """``events`` with every fault of ``faults`` applied (in the given order); intervals and
    counts go to ``log``. Unknown kinds raise ValueError before anything is yielded."""
    faults = list(faults)
    for f in faults:
        if f.kind not in STREAM_FAULTS:
            raise ValueError(f"unknown fault kind {f.kind!r}; known: {', '.join(STREAM_FAULTS)}")
    log = log if log is not None else FaultLog()
    rng = np.random.default_rng(seed)
    stream: Iterable = iter(events)
    for f in faults:
        sensor, fn, _ = STREAM_FAULTS[f.kind]
        stream = fn(stream, f, log.open(f, sensor), rng)
    return iter(stream)


# ---- file faults -----------------------------------------------------------------------------
def copy_mapdir(src: str | Path, dst: str | Path) -> Path:
    """A copy of a map directory to break (``dst`` is replaced)."""
    dst = Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst


def truncate_file(path: str | Path, keep_fraction: float = 0.5) -> Path:
    """Cut ``path`` to ``keep_fraction`` of its bytes (an interrupted copy)."""
    p = Path(path)
    data = p.read_bytes()
    p.write_bytes(data[: int(len(data) * keep_fraction)])
    return p


def corrupt_file(path: str | Path, n_bytes: int = 64, seed: int = 0) -> Path:
    """Overwrite ``n_bytes`` random bytes in the middle of ``path`` (bit rot, same size)."""
    p = Path(path)
    data = bytearray(p.read_bytes())
    rng = np.random.default_rng(seed)
    if data:
        lo = len(data) // 4
        idx = rng.integers(lo, max(lo + 1, len(data) - lo), size=min(n_bytes, len(data)))
        for i in idx:
            data[int(i)] ^= 0xFF
    p.write_bytes(bytes(data))
    return p


def set_map_version(root: str | Path, version) -> Path:
    """Rewrite the manifest of a map directory with another format ``version``."""
    mp = Path(root) / "manifest.json"
    m = json.loads(mp.read_text())
    m["version"] = version
    mp.write_text(json.dumps(m, indent=1))
    return mp


def escape_manifest(root: str | Path, name: str = "../outside.json") -> Path:
    """Add a manifest entry whose file name tries to leave the map directory (``../x``,
    ``/etc/passwd``, ``sub/../../x``)."""
    mp = Path(root) / "manifest.json"
    m = json.loads(mp.read_text())
    m.setdefault("files", {})[name] = "0" * 64
    mp.write_text(json.dumps(m, indent=1))
    return mp


def write_corrupt_weights(path: str | Path, n_bytes: int = 4096, seed: int = 0) -> Path:
    """Random bytes where a weights file is expected."""
    p = Path(path)
    p.write_bytes(np.random.default_rng(seed).integers(0, 256, n_bytes, dtype=np.uint8).tobytes())
    return p


def write_wrong_shape_weights(good: str | Path, path: str | Path) -> Path:
    """A copy of the state_dict ``good`` with its first tensor of a different shape."""
    import torch
    state = torch.load(good, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    k = next(iter(state))
    state = dict(state)
    state[k] = torch.zeros(tuple(s + 1 for s in state[k].shape) or (2,))
    torch.save(state, path)
    return Path(path)


class _NotATensor:
    """An arbitrary object: loading it needs pickle's code execution (refused by weights_only)."""

    def __reduce__(self):
        return (print, ("a weights file must never run code when loaded",))


def write_pickle_weights(path: str | Path) -> Path:
    """A file that is a valid pickle but not a plain state_dict (would run code if unpickled)."""
    import torch
    torch.save({"net.weight": _NotATensor()}, path)
    return Path(path)
