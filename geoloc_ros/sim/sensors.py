"""Sensor models of the simulator: generators yielding :mod:`geoloc_ros.events` objects.

Everything is in memory and deterministic for a seed; each generator takes the
:class:`~geoloc_ros.sim.trajectory.Trajectory` (and the :class:`~geoloc_ros.sim.world.World`
for ray-cast sensors) and yields events in time order::

    for scan in lidar_scans(world, traj, pattern="mid360"):   # SimScanEvent (a ScanEvent)
        scan.points, scan.point_time_s, scan.object_ids        # (N,3) sensor frame, (N,), (N,)
    imu(traj)      -> SimImuEvent (an ImuEvent, base_link frame, + true biases)
    wheel(traj, faults)  -> WheelEvent
    gnss(traj, datum, faults) -> GnssEvent (nothing during a "denial_silent" fault)
    rgbd(world, traj)     -> ImageEvent (rgb, depth_m, instance ids)

Faults are :class:`Fault` intervals (``sensor``, ``kind``, ``t_start``, ``t_end``, ``params``);
the scenario scripts them and records them in its manifest. Kinds: wheel ``slip``; gnss
``denial_nofix`` (NO_FIX status, no covariance), ``denial_silent`` (no messages),
``multipath`` (jumps of 5-30 m, small reported covariance), ``drift`` (slowly growing offset),
``spoofing`` (constant offset, good covariance).

The whole suite of a scenario's run, merged in time order, comes from
:func:`geoloc_ros.sim.scenario.prepare` + :func:`geoloc_ros.sim.scenario.run_events`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

from geoloc_ros.events import (CameraIntrinsics, FixStatus, GnssEvent, ImageEvent, ImuEvent, ScanEvent,
                               WheelEvent)
from geoloc_ros.geometry import rot_z, rpy_to_matrix, se3
from geoloc_ros.sim.config import SimConfig
from geoloc_ros.sim.trajectory import Trajectory
from geoloc_ros.sim.world import SKY_RGB, World

__all__ = ["Fault", "SimScanEvent", "SimImuEvent", "lidar_scans", "lidar_directions", "imu", "wheel",
           "gnss", "rgbd", "D435I_INTRINSICS", "DEFAULT_EXTRINSICS", "GRAVITY_MPS2"]

GRAVITY_MPS2 = 9.80665
D435I_INTRINSICS = CameraIntrinsics(640, 480, 607.80, 607.84, 328.80, 245.53)
_R_BASE_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
# Defaults when no profile gives them (the same values as config/profiles/m3dgr.yaml and
# oxford_spires.yaml; the scenario passes the io profiles' extrinsics).
DEFAULT_EXTRINSICS = {
    "mid360": se3(rpy_to_matrix(0.0, np.radians(31.0), 0.0), [0.01329, -0.02329, 0.04348]),  # tilted 31 deg
    "qt64": se3(rot_z(np.pi), [0.0, 0.0, 0.124]),                                          # yaw 180 deg
    "camera": se3(_R_BASE_OPTICAL, [0.15, 0.0, -0.15]),
    "gnss": se3(None, [-0.10, 0.0, 0.20]),
}
_TIME_QUANTUM_S = 1e-4
_REFLECTIVITY = {"building": 0.6, "wall": 0.5, "tree": 0.3, "pole": 0.8, "car": 0.7, "bin": 0.4}


@dataclass
class Fault:
    """A scripted fault interval of one sensor (times in unix s)."""
    sensor: str            # "gnss" | "wheel"
    kind: str
    t_start: float
    t_end: float
    params: dict = field(default_factory=dict)

    def active(self, t: np.ndarray) -> np.ndarray:
        return (t >= self.t_start) & (t < self.t_end)

    def to_dict(self) -> dict:
        return {"sensor": self.sensor, "kind": self.kind, "t_start": float(self.t_start),
                "t_end": float(self.t_end), "params": self.params}


@dataclass
class SimScanEvent(ScanEvent):
    """A ScanEvent plus the simulator's truth: ``object_ids`` (N,) int32 of the surface each
    point hit (0 = ground), ``T_world_base_start`` (4, 4) pose at ``t``."""
    object_ids: np.ndarray | None = None
    T_world_base_start: np.ndarray | None = None


@dataclass
class SimImuEvent(ImuEvent):
    """An ImuEvent plus the true biases inside it (``bias_acc`` m/s^2, ``bias_gyr`` rad/s, (3,))."""
    bias_acc: np.ndarray | None = None
    bias_gyr: np.ndarray | None = None


def _reflectivity_table(world: World) -> np.ndarray:
    """(max_id + 1,) LiDAR reflectivity 0..1 per object id (0 = ground)."""
    tab = np.full(max([o.id for o in world.objects], default=0) + 1, 0.25)
    for o in world.objects:
        tab[o.id] = _REFLECTIVITY.get(o.cls, 0.5)
    return tab


def _rng(seed, tag: str, traj: Trajectory) -> np.random.Generator:
    return np.random.default_rng([int(seed), sum(map(ord, tag)), int(traj.t0) % 100003])


def _frame_times(traj: Trajectory, rate_hz: float, span_s: float = 0.0) -> np.ndarray:
    """Stamps t0 + k/rate with the whole frame (of length ``span_s``) inside the run."""
    if not rate_hz > 0:
        raise ValueError(f"rate must be > 0 Hz, got {rate_hz}")
    n = int(np.floor((traj.duration_s - span_s) * rate_hz + 1e-9)) + 1
    return traj.t0 + np.arange(max(n, 0)) / rate_hz


# ---- LiDAR -------------------------------------------------------------------------------
def lidar_directions(pattern: str, t_start_s: float, sweep_s: float, cfg: SimConfig):
    """Beam pattern of one sweep starting at ``t_start_s``.

    Returns ``(dirs (N, 3) unit vectors in the sensor frame, dt (N,) s from the sweep start,
    ring (N,) uint16)``. ``mid360``: 4 lines spinning in azimuth while sweeping elevation
    -7..52 deg with a triangle wave whose phase depends on absolute time, so successive sweeps
    never repeat (rosette-like coverage). ``qt64``: 64 rings, -52..52 deg, ``cfg.qt64_columns``
    azimuth columns fired in time order.
    """
    if pattern == "mid360":
        n = int(round(cfg.mid360_points_per_s * sweep_s))
        k = np.arange(n)
        line = (k % 4).astype(np.uint16)
        dt = k / cfg.mid360_points_per_s
        tau = t_start_s + dt
        az = 2 * np.pi * (tau / sweep_s) + line * (np.pi / 2)
        f_el = 1237.1 + 0.61803398875 * 3.1
        ph = (f_el * tau + 0.25 * line + 0.137 * np.floor(tau / sweep_s) * 0.61803398875) % 1.0
        tri = 1.0 - np.abs(2.0 * ph - 1.0)
        el = np.radians(-7.0 + 59.0 * tri)
        ring = line
    elif pattern == "qt64":
        cols = int(cfg.qt64_columns)
        el_rings = np.radians(np.linspace(-52.0, 52.0, 64))
        c, r = np.meshgrid(np.arange(cols), np.arange(64), indexing="ij")
        c, r = c.ravel(), r.ravel()
        dt = c * (sweep_s / cols)
        az = 2 * np.pi * c / cols
        el = el_rings[r]
        ring = r.astype(np.uint16)
    else:
        raise ValueError(f"unknown LiDAR pattern {pattern!r} (use 'mid360' or 'qt64')")
    ce = np.cos(el)
    dirs = np.stack([ce * np.cos(az), ce * np.sin(az), np.sin(el)], 1)
    return dirs, dt, ring


def lidar_scans(world: World, traj: Trajectory, pattern: str = "mid360", rate_hz: float | None = None,
                T_base_sensor: np.ndarray | None = None, cfg: SimConfig | None = None, seed: int = 0,
                frame_id: str = "lidar") -> Iterator[SimScanEvent]:
    """Ray-cast LiDAR sweeps with motion during the sweep.

    Each point is cast from the sensor pose at its own time ``t + point_time_s``, gets Gaussian
    range noise (``cfg.lidar_range_sigma_m``) and is lost with probability ``cfg.lidar_dropout``
    or when out of range. Points are in the SENSOR frame at their own time; ``T_base_sensor``
    (default: the pattern's entry of :data:`DEFAULT_EXTRINSICS`) is carried in the event.
    """
    if pattern not in ("mid360", "qt64"):
        raise ValueError(f"unknown LiDAR pattern {pattern!r} (use 'mid360' or 'qt64')")
    cfg = cfg or SimConfig()
    rate_hz = rate_hz or cfg.lidar_rate_hz
    T_bs = np.asarray(T_base_sensor if T_base_sensor is not None else DEFAULT_EXTRINSICS[pattern], float)
    max_range = cfg.mid360_max_range_m if pattern == "mid360" else cfg.qt64_max_range_m
    sweep = 1.0 / rate_hz
    rng = _rng(seed, "lidar" + pattern, traj)
    refl_tab = _reflectivity_table(world)
    fixed = lidar_directions(pattern, 0.0, sweep, cfg) if pattern == "qt64" else None  # same every sweep
    for t in _frame_times(traj, rate_hz, sweep):
        dirs_s, dt, ring = fixed if fixed is not None else lidar_directions(pattern, t - traj.t0, sweep, cfg)
        # poses at each distinct firing time (times quantised to 0.1 ms: <1 mm of motion)
        ut, inv = np.unique(np.floor(dt / _TIME_QUANTUM_S + 1e-6).astype(np.int64), return_inverse=True)
        ut = ut * _TIME_QUANTUM_S
        dt = ut[inv]
        T_ws = traj.poses(t + ut) @ T_bs
        dirs_w = np.einsum("nij,nj->ni", T_ws[inv, :3, :3], dirs_s)
        h = world.cast(T_ws[inv, :3, 3], dirs_w)
        r, obj, nrm = h.range_m.astype(np.float64), h.obj_id, h.normal
        r_noisy = r + rng.normal(0.0, cfg.lidar_range_sigma_m, len(r))
        keep = (np.isfinite(r) & (r_noisy > cfg.lidar_min_range_m) & (r_noisy < max_range)
                & (rng.random(len(r)) >= cfg.lidar_dropout))
        cos_inc = np.abs((nrm[keep] * dirs_w[keep]).sum(1))
        obj_k = obj[keep]
        refl = refl_tab[obj_k]
        inten = np.clip(255.0 * refl * (0.3 + 0.7 * cos_inc) + rng.normal(0, 3, len(obj_k)), 0, 255)
        pts = (dirs_s[keep] * r_noisy[keep, None]).astype(np.float32)
        yield SimScanEvent(t=float(t), points=pts, intensity=inten.astype(np.float32),
                           point_time_s=dt[keep].astype(np.float64), ring=ring[keep], frame_id=frame_id,
                           T_base_sensor=T_bs.copy(), object_ids=obj_k.astype(np.int32),
                           T_world_base_start=traj.poses(t))


# ---- IMU ---------------------------------------------------------------------------------
def imu(traj: Trajectory, rate_hz: float | None = None, cfg: SimConfig | None = None, seed: int = 0,
        frame_id: str = "base_link", truth: dict | None = None) -> Iterator[SimImuEvent]:
    """IMU at base_link from the trajectory's analytic derivatives.

    Specific force ``f = R^T (a + [0, 0, g])`` and body rate plus white noise with discrete
    sigma ``n / sqrt(dt)`` and biases following a random walk with step sigma ``w * sqrt(dt)``
    (``n``, ``w``: the continuous-time densities ``cfg.acc_n, gyr_n, acc_w, gyr_w``). The true
    biases inside each sample ride along in ``bias_acc`` / ``bias_gyr``.
    """
    cfg = cfg or SimConfig()
    rate_hz = rate_hz or cfg.imu_rate_hz
    rng = _rng(seed, "imu", traj)
    ts = _frame_times(traj, rate_hz)
    dt = 1.0 / rate_hz
    ba = rng.normal(0.0, cfg.acc_bias0_sigma, 3)
    bg = rng.normal(0.0, cfg.gyr_bias0_sigma, 3)
    if truth is not None:
        truth.update(imu_bias_acc0=ba.copy(), imu_bias_gyr0=bg.copy())
    for k0 in range(0, len(ts), 2000):
        S = traj.state(ts[k0:k0 + 2000])
        f = np.einsum("nji,nj->ni", S.R, S.a + np.array([0.0, 0.0, GRAVITY_MPS2]))
        for i in range(len(S.t)):
            acc = f[i] + ba + rng.normal(0.0, cfg.acc_n / np.sqrt(dt), 3)
            gyr = S.w_body[i] + bg + rng.normal(0.0, cfg.gyr_n / np.sqrt(dt), 3)
            yield SimImuEvent(t=float(S.t[i]), acc_mps2=acc, gyr_rps=gyr, frame_id=frame_id,
                              bias_acc=ba.copy(), bias_gyr=bg.copy())
            ba = ba + rng.normal(0.0, cfg.acc_w * np.sqrt(dt), 3)
            bg = bg + rng.normal(0.0, cfg.gyr_w * np.sqrt(dt), 3)


# ---- wheel odometry ----------------------------------------------------------------------
def wheel(traj: Trajectory, faults: Sequence[Fault] = (), rate_hz: float | None = None,
          cfg: SimConfig | None = None, seed: int = 0, truth: dict | None = None) -> Iterator[WheelEvent]:
    """Wheel odometry: forward speed with a fixed scale error (1..2 %, sign random) and yaw
    rate, white noise reported honestly in ``var_v``/``var_yaw_rate``. During a ``slip``
    fault the wheels over-report speed by ``params['slip_ratio']`` (and yaw rate gets
    ``params['yaw_rate_bias_rps']``) while the reported variances stay the same."""
    cfg = cfg or SimConfig()
    rate_hz = rate_hz or cfg.wheel_rate_hz
    rng = _rng(seed, "wheel", traj)
    scale = 1.0 + rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.0) * cfg.wheel_scale_err_max
    if truth is not None:
        truth["wheel_scale"] = float(scale)
    ts = _frame_times(traj, rate_hz)
    S = traj.state(ts)
    v_body = np.einsum("nji,nj->ni", S.R, S.v)
    v = v_body[:, 0] * scale + rng.normal(0.0, cfg.wheel_v_sigma_mps, len(ts))
    w = S.w_body[:, 2] + rng.normal(0.0, cfg.wheel_yaw_rate_sigma_rps, len(ts))
    for f in faults:
        if f.sensor == "wheel" and f.kind == "slip":
            m = f.active(ts)
            v[m] += np.abs(v_body[m, 0]) * f.params.get("slip_ratio", 0.3)
            w[m] += f.params.get("yaw_rate_bias_rps", 0.0)
    for i in range(len(ts)):
        yield WheelEvent(t=float(ts[i]), v_mps=float(v[i]), yaw_rate_rps=float(w[i]),
                         var_v=cfg.wheel_v_sigma_mps ** 2, var_yaw_rate=cfg.wheel_yaw_rate_sigma_rps ** 2)


# ---- GNSS --------------------------------------------------------------------------------
def gnss(traj: Trajectory, datum, faults: Sequence[Fault] = (), rate_hz: float | None = None,
         T_base_antenna: np.ndarray | None = None, cfg: SimConfig | None = None,
         seed: int = 0) -> Iterator[GnssEvent]:
    """GNSS fixes of the antenna (``T_base_antenna`` lever arm) converted to WGS-84 by ``datum``
    (anything with ``from_map(p (3,)) -> (lat, lon, alt)`` and ``yaw_rad``, e.g.
    :class:`geoloc_ros.sim.geodesy.Datum`).

    Healthy: ENU noise N(0, diag(sh^2, sh^2, sv^2)) and exactly that covariance reported.
    Faults (offsets added in ENU, reported covariance unchanged unless stated):
    ``denial_silent`` no message; ``denial_nofix`` status NO_FIX, covariance None;
    ``multipath`` an offset of ``params['jump_m']`` (5-30 m) re-drawn every ``params['hold_s']``;
    ``drift`` an offset growing at ``params['rate_mps']`` along ``params['dir_enu']``;
    ``spoofing`` a constant ``params['offset_enu_m']`` with a smaller reported covariance.
    """
    cfg = cfg or SimConfig()
    rate_hz = rate_hz or cfg.gnss_rate_hz
    T_ba = np.asarray(T_base_antenna if T_base_antenna is not None else DEFAULT_EXTRINSICS["gnss"], float)
    rng = _rng(seed, "gnss", traj)
    ts = _frame_times(traj, rate_hz)
    T_wb = traj.poses(ts)
    p_map = T_wb[:, :3, :3] @ T_ba[:3, 3] + T_wb[:, :3, 3]
    R_enu_map = rot_z(float(datum.yaw_rad))
    sh, sv = cfg.gnss_sigma_h_m, cfg.gnss_sigma_v_m
    cov_ok = np.diag([sh ** 2, sh ** 2, sv ** 2])
    noise_enu = rng.normal(0.0, 1.0, (len(ts), 3)) * np.array([sh, sh, sv])
    offset = np.zeros((len(ts), 3))
    cov_scale = np.ones(len(ts))
    status = np.full(len(ts), int(FixStatus.FIX))
    silent = np.zeros(len(ts), bool)
    nsv = rng.integers(14, 22, len(ts))
    for f in faults:
        if f.sensor != "gnss":
            continue
        m = f.active(ts)
        if f.kind == "denial_silent":
            silent |= m
        elif f.kind == "denial_nofix":
            status[m] = int(FixStatus.NO_FIX)
            nsv[m] = rng.integers(0, 4, m.sum())
        elif f.kind == "multipath":
            idx = np.flatnonzero(m)
            hold = f.params.get("hold_s", 2.0)
            bins = np.floor((ts[idx] - f.t_start) / hold).astype(int)
            lo, hi = f.params.get("jump_m", [5.0, 30.0])
            for b in np.unique(bins):
                ang = rng.uniform(-np.pi, np.pi)
                mag = rng.uniform(lo, hi)
                offset[idx[bins == b]] = [mag * np.cos(ang), mag * np.sin(ang), rng.normal(0, 0.3 * mag)]
            nsv[m] = rng.integers(6, 12, m.sum())
        elif f.kind == "drift":
            d = np.asarray(f.params.get("dir_enu", [1.0, 0.0, 0.0]), float)
            offset[m] += np.outer((ts[m] - f.t_start) * f.params.get("rate_mps", 0.3), d / np.linalg.norm(d))
        elif f.kind == "spoofing":
            offset[m] += np.asarray(f.params.get("offset_enu_m", [40.0, -25.0, 0.0]), float)
            cov_scale[m] = f.params.get("cov_scale", 0.25)
            nsv[m] = rng.integers(20, 26, m.sum())
        else:
            raise ValueError(f"unknown GNSS fault kind {f.kind!r}")
    p_enu = p_map @ R_enu_map.T + noise_enu * np.sqrt(cov_scale)[:, None] + offset
    p_meas_map = p_enu @ R_enu_map  # back to map axes for the datum
    lla = np.array([datum.from_map(p) for p in p_meas_map]) if len(ts) else np.zeros((0, 3))
    for i in range(len(ts)):
        if silent[i]:
            continue
        nofix = status[i] == int(FixStatus.NO_FIX)
        yield GnssEvent(t=float(ts[i]), lat_deg=float(lla[i, 0]), lon_deg=float(lla[i, 1]), alt_m=float(lla[i, 2]),
                        cov_enu_m2=None if nofix else cov_ok * cov_scale[i], status=FixStatus(int(status[i])),
                        num_sv=int(nsv[i]))


# ---- RGB-D camera ------------------------------------------------------------------------
def rgbd(world: World, traj: Trajectory, rate_hz: float | None = None, T_base_sensor: np.ndarray | None = None,
         intrinsics: CameraIntrinsics = D435I_INTRINSICS, cfg: SimConfig | None = None, seed: int = 0,
         frame_id: str = "camera_color_optical_frame") -> Iterator[ImageEvent]:
    """Ray-cast RGB-D frames (global shutter, pinhole) with an instance-id image.

    ``rgb`` (H, W, 3) uint8: object colour shaded by a sun (Lambert + ambient), roads/grass on
    the ground, sky where nothing is hit, +-2 levels of noise. ``depth_m`` (H, W) float32
    z-depth aligned to colour, noise growing with depth squared, 0 beyond
    ``cfg.camera_max_depth_m`` or on a miss. ``instance`` (H, W) int32 object id (0 = ground
    or sky). ``T_base_sensor`` is base_link -> optical frame (z forward, x right, y down).
    """
    cfg = cfg or SimConfig()
    rate_hz = rate_hz or cfg.camera_rate_hz
    T_bc = np.asarray(T_base_sensor if T_base_sensor is not None else DEFAULT_EXTRINSICS["camera"], float)
    K = intrinsics
    rng = _rng(seed, "rgbd", traj)
    u, v = np.meshgrid(np.arange(K.width), np.arange(K.height))
    d_cam = np.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, np.ones_like(u, float)], -1).reshape(-1, 3).astype(np.float32)
    z_per_range = (1.0 / np.linalg.norm(d_cam, axis=1)).astype(np.float32)
    d_cam *= z_per_range[:, None]
    sun = np.array([0.4, 0.3, 0.866], np.float32)
    # row -1 (a miss) is the sky; the ground (row 0) is coloured per triangle below
    colours = np.vstack([world.colour_table(), SKY_RGB]).astype(np.float32) * 255.0
    npx = K.width * K.height
    # noise banks drawn once; each frame reads them at a random offset (cheap, deterministic)
    rgb_noise = rng.integers(-2, 3, 2 * npx * 3, dtype=np.int8).astype(np.float32)
    z_noise = rng.standard_normal(2 * npx, dtype=np.float32)
    for t in _frame_times(traj, rate_hz):
        T_wc = traj.poses(t) @ T_bc
        dirs = np.einsum("ij,kj->ik", d_cam, T_wc[:3, :3].astype(np.float32))  # no BLAS: (N,3)@(3,3)
        h = world.cast(T_wc[:3, 3], dirs)
        miss = h.obj_id < 0
        rgb = colours[h.obj_id]
        g = np.flatnonzero(h.obj_id == 0)
        rgb[g] = world.ground_rgb(h.prim_id[g]) * 255.0
        cos_sun = np.einsum("ij,j->i", h.normal, sun)
        cos_sun *= np.where(np.einsum("ij,ij->i", h.normal, dirs) > 0, -1.0, 1.0).astype(np.float32)
        shade = 0.45 + 0.55 * np.clip(cos_sun, 0.0, 1.0)
        shade[miss] = 1.0
        rgb *= shade[:, None]
        k = int(rng.integers(0, npx))
        rgb += rgb_noise[3 * k:3 * (k + npx)].reshape(-1, 3)
        img = np.clip(rgb, 0, 255).astype(np.uint8)
        z = np.where(miss, np.float32(0.0), h.range_m * z_per_range)
        k = int(rng.integers(0, npx))
        z += z_noise[k:k + npx] * np.float32(cfg.depth_sigma_rel) * z * z
        z[(z > cfg.camera_max_depth_m) | (z <= 0)] = 0.0
        inst = np.maximum(h.obj_id, 0)
        yield ImageEvent(t=float(t), rgb=img.reshape(K.height, K.width, 3), depth_m=z.reshape(K.height, K.width),
                         instance=inst.reshape(K.height, K.width), intrinsics=K, frame_id=frame_id,
                         T_base_sensor=T_bc.copy())
