"""Offline helpers for the fusion filter: the real Husky bag, GNSS fault injection, running a
filter over an event list.

``load_husky_events`` reads ``../shared/realdata/rl_husky_gps/husky_imu_odom_gps.bag`` with the
io helper's reader when it exposes ``read_events`` and a ``husky`` profile, else with a small
private rosbags loader. The IMU extrinsic there is the static transform robot_localization's
test launch publishes, ``static_transform_publisher 0 -0.3 0.52 -1.5708 0 1.5708`` whose angle
order is (yaw, pitch, roll): roll = +pi/2, yaw = -pi/2, which puts gravity on base_link +z and
the gyro's y axis on the yaw rate (checked against the wheel yaw rate: correlation 0.85).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from geoloc_ros.events import FixStatus, GnssEvent, ImuEvent, PoseEstimate, WheelEvent
from geoloc_ros.geometry import rpy_to_matrix

__all__ = ["load_husky_events", "GnssFault", "inject_gnss_faults", "run_events", "RunResult",
           "HUSKY_R_BASE_IMU"]

HUSKY_R_BASE_IMU = rpy_to_matrix(np.pi / 2, 0.0, -np.pi / 2)


def _stamp(msg) -> float:
    return msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec


def load_husky_events(bag_path: str | Path) -> list:
    """Time-ordered ImuEvent / WheelEvent / GnssEvent list of the Husky bag (header stamps)."""
    from rosbags.highlevel import AnyReader
    bag_path = Path(bag_path)
    R = HUSKY_R_BASE_IMU
    events = []
    with AnyReader([bag_path]) as reader:
        for conn, _t, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            t = _stamp(msg)
            if conn.topic == "/imu/data":
                a, w = msg.linear_acceleration, msg.angular_velocity
                events.append(ImuEvent(t, R @ np.array([a.x, a.y, a.z]), R @ np.array([w.x, w.y, w.z])))
            elif conn.topic == "/husky_velocity_controller/odom":
                tw = msg.twist
                cov = np.asarray(tw.covariance, float).reshape(6, 6)
                events.append(WheelEvent(t, float(tw.twist.linear.x), float(tw.twist.angular.z),
                                         var_v=float(cov[0, 0]), var_yaw_rate=float(cov[5, 5])))
            elif conn.topic == "/fix":
                cov = None
                if msg.position_covariance_type != 0:
                    cov = np.asarray(msg.position_covariance, float).reshape(3, 3)
                status = FixStatus.NO_FIX if msg.status.status < 0 else FixStatus(min(msg.status.status, 3))
                events.append(GnssEvent(t, float(msg.latitude), float(msg.longitude), float(msg.altitude),
                                        cov, status, frame_id="gps"))
    events.sort(key=lambda e: e.t)
    return events


@dataclass
class GnssFault:
    """A GNSS fault interval [t0_s, t1_s) (stamps): ``kind`` is
    'jump' (constant ``offset_m`` (3,) in the map/ENU frame), 'outage' (messages dropped),
    'drift' (offset growing at ``rate_mps`` along ``direction`` (2,)), 'spoof' (offset growing at
    ``rate_mps`` up to ``offset_m`` then held), 'nofix' (status NO_FIX, no covariance)."""
    kind: str
    t0_s: float
    t1_s: float
    offset_m: tuple = (0.0, 0.0, 0.0)
    rate_mps: float = 0.0
    direction: tuple = (1.0, 0.0)

    def offset(self, t: float) -> np.ndarray:
        if self.kind == "jump":
            return np.asarray(self.offset_m, float)
        d = np.asarray(self.direction, float)
        d = np.append(d / np.linalg.norm(d), 0.0)
        grown = self.rate_mps * (t - self.t0_s)
        if self.kind == "spoof":
            grown = min(grown, float(np.linalg.norm(self.offset_m)))
        return d * grown


def inject_gnss_faults(events: list, faults: list[GnssFault], datum) -> list:
    """Copy of ``events`` with the faults applied to its GnssEvents (offsets through ``datum``)."""
    out = []
    for e in events:
        if isinstance(e, GnssEvent):
            drop = False
            for f in faults:
                if not (f.t0_s <= e.t < f.t1_s):
                    continue
                if f.kind == "outage":
                    drop = True
                elif f.kind == "nofix":
                    e = replace(e, status=FixStatus.NO_FIX, cov_enu_m2=None)
                else:
                    p = datum.to_map(e.lat_deg, e.lon_deg, e.alt_m) + f.offset(e.t)
                    lat, lon, alt = datum.from_map(p)
                    e = replace(e, lat_deg=lat, lon_deg=lon, alt_m=alt)
            if drop:
                continue
        out.append(e)
    return out


@dataclass
class RunResult:
    """Estimates of one run at the IMU events: t (N,), T (N, 4, 4), cov6 (N, 6, 6), and the
    GNSS verdict of every GNSS epoch (t, verdict value), last estimate, wall time (s), IMU count."""
    t: np.ndarray
    T: np.ndarray
    cov6: np.ndarray
    verdicts: list
    last: PoseEstimate | None
    seconds: float
    n_imu: int


def run_events(filt, events, sample_every: int = 1) -> RunResult:
    """Feed ``events`` to ``filt`` (anything with ``process``); keep every ``sample_every``-th
    estimate returned on an IMU event and the verdict after each GNSS event."""
    import time
    ts, Ts, Cs, verdicts = [], [], [], []
    n_imu = 0
    last = None
    t0 = time.perf_counter()
    for e in events:
        est = filt.process(e)
        if isinstance(e, ImuEvent):
            n_imu += 1
            if est is not None and n_imu % sample_every == 0:
                ts.append(est.t)
                Ts.append(est.T_map_base)
                Cs.append(est.cov6)
        elif isinstance(e, GnssEvent):
            cur = filt.estimate()
            verdicts.append((e.t, cur.gnss_verdict.value if cur.gnss_verdict else "NONE", cur.gnss_reason))
        if est is not None:
            last = est
    secs = time.perf_counter() - t0
    if not ts:
        return RunResult(np.zeros(0), np.zeros((0, 4, 4)), np.zeros((0, 6, 6)), verdicts, last, secs, n_imu)
    return RunResult(np.array(ts), np.array(Ts), np.array(Cs), verdicts, last, secs, n_imu)
