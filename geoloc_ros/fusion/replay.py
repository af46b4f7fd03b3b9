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

from geoloc_ros.events import FixStatus, GnssEvent, ImuEvent, PoseEstimate, PoseFixEvent, WheelEvent
from geoloc_ros.fusion.gnss import Datum
from geoloc_ros.geometry import rot_z, rpy_to_matrix, se3

__all__ = ["load_husky_events", "GnssFault", "inject_gnss_faults", "run_events", "RunResult",
           "HUSKY_R_BASE_IMU", "sim_fault_scenario"]

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


def run_events(filt, events, sample_every: int = 1, on_gnss=None) -> RunResult:
    """Feed ``events`` to ``filt`` (anything with ``process``); keep every ``sample_every``-th
    estimate returned on an IMU event and the verdict after each GNSS event; ``on_gnss(filt, e)``,
    when given, is called after each GNSS event (to read more of the filter's state there)."""
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
            if on_gnss is not None:
                on_gnss(filt, e)
        if est is not None:
            last = est
    secs = time.perf_counter() - t0
    if not ts:
        return RunResult(np.zeros(0), np.zeros((0, 4, 4)), np.zeros((0, 6, 6)), verdicts, last, secs, n_imu)
    return RunResult(np.array(ts), np.array(Ts), np.array(Cs), verdicts, last, secs, n_imu)


def sim_fault_scenario(duration_s: float, seed: int = 0, faults: bool = True, datum=None,
                       imu_rate_hz: float | None = None, truth: dict | None = None):
    """A simulated loop run (3 m/s around a 160 m x 90 m block) with IMU, wheel, GNSS and
    BEV-like global fixes (0.5 Hz, 0.3 m / 2 deg, delivered 0.8 s late), and with ``faults``:
    GNSS denial (60 s), multipath jumps (20 s), drift 0.4 m/s (40 s), spoofing 36 m (40 s) and
    wheel slip (+50 % speed, 10 s), spread over the run at tenths of ``duration_s``.

    ``truth``, when given, receives what the sensors drew (``wheel_scale``: reported / true speed).

    Returns (time-ordered events, gt_t (N,), gt_T (N, 4, 4), [(fault name, t0, t1)]).
    """
    from geoloc_ros.sim import sensors
    from geoloc_ros.sim.config import SimConfig
    from geoloc_ros.sim.trajectory import Trajectory, route_polyline
    from geoloc_ros.sim.world import Ground
    cfg = SimConfig()
    if imu_rate_hz:
        cfg.imu_rate_hz = float(imu_rate_hz)
    datum = datum or Datum(48.1351, 11.5820, 520.0, 0.3)
    ground = Ground(0.01, -0.005, 0.3, 0.04, 0.05, 0.3, 1.1, 0.2, np.array([0.02, 0.03]), 0.5)
    loop = np.array([[0, 0], [160, 0], [160, 90], [0, 90]] * 6 + [[0, 0]], float)
    traj = Trajectory(route_polyline(loop, 10.0), ground, 1.7e9, duration_s, speed_mps=3.0)
    t0 = traj.t0
    F = sensors.Fault
    intervals = []
    fl = []
    if faults:
        s = duration_s / 10.0
        spec = [("denial", "gnss", "denial_silent", 1.0 * s, 1.0 * s + 60.0, {}),
                ("multipath", "gnss", "multipath", 3.0 * s, 3.0 * s + 20.0, {"jump_m": [8.0, 25.0], "hold_s": 4.0}),
                ("drift", "gnss", "drift", 4.5 * s, 4.5 * s + 40.0, {"rate_mps": 0.4, "dir_enu": [0.0, 1.0, 0.0]}),
                ("spoofing", "gnss", "spoofing", 6.5 * s, 6.5 * s + 40.0, {"offset_enu_m": [30.0, -20.0, 0.0]}),
                ("slip", "wheel", "slip", 8.5 * s, 8.5 * s + 10.0, {"slip_ratio": 0.5})]
        for name, sensor, kind, a, b, params in spec:
            fl.append(F(sensor, kind, t0 + a, t0 + b, params))
            intervals.append((name, t0 + a, t0 + b))
    ev = list(sensors.imu(traj, cfg=cfg, seed=seed))
    ev += list(sensors.wheel(traj, fl, cfg=cfg, seed=seed, truth=truth))
    ev += list(sensors.gnss(traj, datum, fl, cfg=cfg, seed=seed))
    gt_t, gt_T = traj.gt()
    # BEV-like global fixes: 0.5 Hz, 0.3 m / 2 deg, delivered 0.8 s late (late-measurement path)
    rng = np.random.default_rng(seed + 7)
    fixes = []
    for tf in np.arange(t0 + 5.0, traj.t1, 2.0):
        T = traj.poses(np.array([tf]))[0]
        yaw = np.arctan2(T[1, 0], T[0, 0]) + rng.normal(0, np.radians(2.0))
        Tn = se3(rot_z(yaw), T[:3, 3] + np.append(rng.normal(0, 0.3, 2), 0.0))
        cov = np.diag([0.09, 0.09, 1.0, 0.01, 0.01, np.radians(2.0) ** 2])
        fixes.append((tf + 0.8, PoseFixEvent(tf, Tn, cov, source="bev", dof="xyyaw")))
    keyed = [(e.t, e) for e in ev] + fixes
    keyed.sort(key=lambda x: x[0])
    return [e for _, e in keyed], gt_t, gt_T, intervals
