"""LidarOdometry: scan-to-local-map ICP odometry in the spirit of KISS-ICP, giving the filter a
body-velocity measurement per scan.

Steps of :meth:`LidarOdometry.step` for one :class:`~geoloc_ros.events.ScanEvent`:

1. points into base_link with the profile's extrinsic (:func:`geoloc_ros.bev.image.level_points`),
   non-finite points and those outside ``[min_range_m, max_range_m]`` of the sensor dropped;
2. deskew: every point moved to the middle of the sweep with the constant-velocity model of the
   last interval (when the scan has per-point times; the pose then refers to that instant);
3. voxel downsampling: ``frame_voxel_m`` for the map update, ``source_voxel_m`` for registration;
4. prediction: the last pose moved by the last body twist over the interval (constant velocity);
5. robust point-to-point ICP against the local voxel map, correspondences within an adaptive
   threshold (3 sigma of the observed prediction errors, after KISS-ICP) and a Geman-McClure kernel;
6. covariance from the point-to-plane least squares at the result (residuals and the geometry's
   degeneracy), and a body velocity + angular rate from the motion between this scan and the last,
   as a :class:`~geoloc_ros.events.VelocityEvent` stamped at the middle of the interval;
7. the scan is merged into the local map, which forgets points beyond ``max_range_m``.

Bad input (empty, NaN, too few points, a stamp not after the last, a failed registration) gives no
update and a counted reason; a failed registration restarts the local map at the next scan, so
the odometry recovers on its own.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from geoloc_ros.events import ScanEvent, VelocityEvent, sweep_middle_offset_s
from geoloc_ros.odometry.config import OdometryConfig
from geoloc_ros.odometry.icp import plane_covariance, register, se3_exp, se3_log
from geoloc_ros.odometry.voxel import LocalMap, voxel_downsample

__all__ = ["LidarOdometry", "OdometryResult", "scan_points_base", "deskew", "odometry_enabled"]


def odometry_enabled(cfg: OdometryConfig, profile=None) -> bool:
    """Whether the pipeline runs LiDAR odometry: ``cfg.enable`` 'on' / 'off', or 'auto': on when
    the sensor profile has a LiDAR and no wheel odometry (Oxford Spires), off otherwise (the
    wheels already give the filter its body velocity) and off without a profile."""
    mode = str(cfg.enable).strip().lower()
    if mode in ("on", "true", "1", "yes"):
        return True
    if mode in ("off", "false", "0", "no"):
        return False
    if mode != "auto":
        raise ValueError(f"odometry.enable must be 'auto', 'on' or 'off', got {cfg.enable!r}")
    roles = getattr(profile, "roles", None) or {}
    return "lidar" in roles and "wheel" not in roles


@dataclass
class OdometryResult:
    """What one scan gave: the new pose (None when the scan gave no update) and the velocity."""
    t: float
    ok: bool
    T_odom_base: np.ndarray | None           # (4, 4) pose of base_link in the odometry's own frame
    cov6: np.ndarray | None = None           # (6, 6) its registration covariance in base_link, [t (m), rotvec (rad)]
    velocity: VelocityEvent | None = None    # body velocity over the interval since the last scan
    reason: str = ""
    info: dict = field(default_factory=dict)  # iterations, correspondences, rmse_m, threshold_m, latency_ms...


class OdometryInputError(ValueError):
    """A scan the odometry cannot use; the message says why."""


def scan_points_base(scan: ScanEvent, cfg: OdometryConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, 3) finite points of the scan in base_link within the range band, and their (N,) time
    offsets from the stamp (s) or None. Raises :class:`OdometryInputError` on unusable input."""
    from geoloc_ros.bev.image import BevInputError, level_points
    if scan is None or scan.points is None:
        raise OdometryInputError("empty scan")
    raw = np.asarray(scan.points)
    if raw.ndim != 2 or raw.shape[0] == 0 or raw.shape[1] < 3:
        raise OdometryInputError(f"empty or malformed scan (shape {raw.shape})")
    raw = raw[:, :3].astype(np.float64)
    rng = np.sqrt(np.einsum("ij,ij->i", raw, raw))
    keep = np.isfinite(rng) & (rng >= cfg.min_range_m) & (rng <= cfg.max_range_m)
    if not keep.any():
        raise OdometryInputError("no finite point within the range band")
    try:
        pts = level_points(ScanEvent(scan.t, raw[keep], T_base_sensor=scan.T_base_sensor))
    except BevInputError as e:
        raise OdometryInputError(str(e)) from None
    dt = None
    if scan.point_time_s is not None:
        pt = np.asarray(scan.point_time_s, float).reshape(-1)
        if len(pt) == len(raw):
            dt = pt[keep]
            if not np.all(np.isfinite(dt)) or np.abs(dt).max() > 1.0:
                dt = None   # unusable per-point times: no deskew rather than a wrong one
    return pts, dt


def deskew(pts: np.ndarray, dt_s: np.ndarray, v_mps: np.ndarray, w_rps: np.ndarray) -> np.ndarray:
    """Move (N, 3) base-frame points taken at ``t + dt_s`` (N,) into base_link at ``t`` with the
    constant body twist (v (3,) m/s, w (3,) rad/s): p' = Exp(dt w) p + dt v."""
    w = np.asarray(w_rps, float)
    a = np.linalg.norm(w)
    out = pts + dt_s[:, None] * np.asarray(v_mps, float)
    if a < 1e-9:
        return out
    k = w / a
    ang = dt_s * a
    c, s = np.cos(ang)[:, None], np.sin(ang)[:, None]
    kp = pts @ k
    return (pts * c + np.cross(k, pts) * s + np.outer(kp, k) * (1.0 - c)) + dt_s[:, None] * np.asarray(v_mps, float)


class LidarOdometry:
    """Scan-to-local-map LiDAR odometry; ``step(scan) -> OdometryResult``.

    The odometry frame is base_link at the first usable scan; only its motion matters (the
    filter receives velocities).
    """

    def __init__(self, cfg: OdometryConfig | None = None):
        self.cfg = cfg or OdometryConfig()
        self.map = LocalMap(self.cfg.map_voxel_m, self.cfg.max_range_m)
        self.counters: Counter = Counter()
        self.reset()

    def reset(self) -> None:
        """Forget the map, the pose and the motion model (the counters stay)."""
        self.map.clear()
        self.T = np.eye(4)
        self.t: float | None = None     # stamp of the pose T: the middle of the last registered sweep (s)
        self._t_scan: float | None = None   # header stamp of the last scan (s)
        self.twist = np.zeros(6)        # body twist of the last interval [v (m/s), w (rad/s)]
        self.cov_last: np.ndarray | None = None
        self._err_sum = 0.0
        self._err_n = 0
        self._restart = False

    def odom_xyyaw(self) -> np.ndarray | None:
        """(x, y, yaw) (m, m, rad) of the newest pose in the odometry frame, None before the first
        scan or while the map restarts after a failed registration (the pose then jumps)."""
        if self.t is None or self._restart:
            return None
        T = self.T
        return np.array([T[0, 3], T[1, 3], np.arctan2(T[1, 0], T[0, 0])])

    @property
    def threshold_m(self) -> float:
        """Adaptive correspondence distance: 3 sigma of the prediction errors seen so far (m)."""
        c = self.cfg
        if self._err_n < 1:
            return c.initial_threshold_m
        return max(3.0 * np.sqrt(self._err_sum / self._err_n), c.min_threshold_m)

    def _fail(self, t: float, reason: str, info: dict, restart: bool = False) -> OdometryResult:
        key = reason.split(" (")[0]
        key = " ".join(w for w in key.split() if not any(ch.isdigit() for ch in w))
        self.counters["rejected"] += 1
        self.counters[f"rejected.{key}"] += 1
        if restart:
            self._restart = True
        return OdometryResult(t, False, None, reason=reason, info=info)

    def step(self, scan: ScanEvent, T_guess_delta: np.ndarray | None = None) -> OdometryResult:
        """Register one scan; ``T_guess_delta`` (4, 4), optional, is a predicted motion of base_link
        since the last scan (e.g. from the IMU) used instead of the constant-velocity model."""
        c = self.cfg
        t0, c0 = time.perf_counter(), time.process_time()
        t = float(getattr(scan, "t", np.nan)) if scan is not None else np.nan
        info: dict = {}
        self.counters["scans"] += 1
        if not np.isfinite(t):
            return self._fail(t, "non-finite stamp", info)
        if self._t_scan is not None and t <= self._t_scan:
            return self._fail(t, f"stamp not after the last scan ({t - self._t_scan:+.3f} s)", info)
        try:
            pts, pdt = scan_points_base(scan, c)
        except OdometryInputError as e:
            return self._fail(t, str(e), info)
        self._t_scan = t        # only a usable scan moves the clock (a garbage stamp cannot block)
        # the pose refers to the middle of the sweep (KISS-ICP's choice): deskewing towards the
        # start would feed a twist error back into the next pose (a marginally stable loop)
        t_off = sweep_middle_offset_s(pdt)
        t_pose = t + t_off
        info["t_offset_s"] = t_off
        dt = None if self.t is None else t_pose - self.t
        if dt is not None and dt <= 0:
            return self._fail(t, f"sweep middle not after the last one ({dt:+.3f} s)", info)
        gap = dt is not None and dt > c.max_gap_s
        twist = np.zeros(6) if gap else self.twist
        if c.deskew and pdt is not None and not self._restart:
            pts = deskew(pts, pdt - t_off, twist[0:3], twist[3:6])
        frame = voxel_downsample(pts, c.frame_voxel_m)
        src = voxel_downsample(frame, c.source_voxel_m)
        info.update(n_points=int(len(pts)), n_frame=int(len(frame)), n_source=int(len(src)))
        if len(src) < c.min_points:
            return self._fail(t, f"only {len(src)} points after downsampling (need {c.min_points})", info)
        if self._restart or self.t is None or not len(self.map):
            restarted = self._restart
            self.map.clear()
            self.map.add(frame @ self.T[:3, :3].T + self.T[:3, 3])
            self.t, self.twist, self._restart, self.cov_last = t_pose, np.zeros(6), False, None
            self.counters["map_starts"] += 1
            info["latency_ms"] = 1e3 * (time.perf_counter() - t0)
            return OdometryResult(t, True, self.T.copy(), None, None,
                                  reason="map restarted" if restarted else "first scan", info=info)
        if T_guess_delta is not None:
            delta_pred = np.asarray(T_guess_delta, float)
        else:
            delta_pred = se3_exp(twist * dt)
        T_pred = self.T @ delta_pred
        tau = self.threshold_m
        t1 = time.perf_counter()
        self.map.scan_id += 1
        self.map.tree()
        t2 = time.perf_counter()
        res = register(src, self.map, T_pred, tau, c.max_iterations, c.convergence_eps,
                       c.min_correspondences)
        t3 = time.perf_counter()
        info.update(iterations=res.iterations, n_corr=res.n_corr, n_planar=res.n_planar, threshold_m=tau,
                    rmse_m=res.rmse_m,
                    n_map=len(self.map))
        if not res.ok:
            return self._fail(t, f"registration failed: {res.reason}", info, restart=True)
        if res.inlier_fraction < c.min_inlier_fraction:
            return self._fail(t, f"registration failed: {res.inlier_fraction:.0%} of the points matched "
                                 f"(need {c.min_inlier_fraction:.0%})", info, restart=True)
        corr = np.linalg.inv(T_pred) @ res.T
        corr_m = float(np.linalg.norm(corr[:3, 3]))
        model_err = corr_m + c.max_range_m * float(np.linalg.norm(se3_log(corr)[3:6]))
        if corr_m > c.max_correction_m:
            return self._fail(t, f"registration failed: {corr_m:.2f} m from the prediction "
                                 f"(max {c.max_correction_m:g} m)", info, restart=True)
        if model_err > c.min_motion_m and not gap:   # after a gap the prediction is knowingly poor
            self._err_sum += model_err ** 2
            self._err_n += 1
        cov, cinfo = plane_covariance(res, c.cov_inflation, c.min_trans_std_m, c.min_rot_std_rad,
                                      c.degenerate_ratio, c.degenerate_std_m)
        info.update(cinfo)
        # motion since the last scan -> body velocity at the middle of the interval
        delta = np.linalg.inv(self.T) @ res.T
        xi = se3_log(delta)
        vel = None
        if not gap:
            Rh = se3_exp(np.r_[0, 0, 0, 0.5 * xi[3:6]])[:3, :3]
            v_b = Rh.T @ delta[:3, 3] / dt
            cov_rel = cov + (self.cov_last if self.cov_last is not None else cov)
            Jv = Rh.T / dt
            vel = VelocityEvent(t=t_pose - 0.5 * dt, v_mps=v_b, w_rps=xi[3:6] / dt,
                                cov_v=Jv @ cov_rel[0:3, 0:3] @ Jv.T, cov_w=cov_rel[3:6, 3:6] / dt ** 2,
                                source="lidar_odom", frame_id="base_link")
            self.counters["velocities"] += 1
        self.twist = xi / dt if not gap else np.zeros(6)
        self.T, self.t, self.cov_last = res.T, t_pose, cov
        self.map.add(frame @ res.T[:3, :3].T + res.T[:3, 3])
        self.map.prune(res.T[:3, 3])
        self.counters["accepted"] += 1
        t4 = time.perf_counter()
        info["latency_ms"] = 1e3 * (t4 - t0)
        info["cpu_ms"] = 1e3 * (time.process_time() - c0)
        info["latency_breakdown_ms"] = {"prepare": 1e3 * (t1 - t0), "tree": 1e3 * (t2 - t1),
                                        "icp": 1e3 * (t3 - t2), "covariance_map": 1e3 * (t4 - t3)}
        return OdometryResult(t, True, res.T.copy(), cov, vel, reason="ok" if not gap else
                              f"gap of {dt:.2f} s: pose only, no velocity", info=info)
