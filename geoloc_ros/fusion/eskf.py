"""Error-state Kalman filter (ESKF) over IMU, wheel, GNSS and pose fixes: the 15 navigation
states plus the wheel-speed scale.

Nominal state (map frame, REP-103/105: x east/forward, z up): position ``p`` (3,) m, velocity
``v`` (3,) m/s, orientation ``R`` (3, 3) = R_map_base, accelerometer bias ``ba`` (3,) m/s^2,
gyro bias ``bg`` (3,) rad/s and the wheel-speed scale ``ks`` (reported forward speed = ks x true
forward speed; 1 = calibrated). Error state (16,) = [dp, dv, dtheta, dba, dbg, dks] with the
attitude error in the body frame (R_true = R Exp(dtheta)), after Sola, "Quaternion kinematics for
the error-state Kalman filter" (2017). The scale is a random walk (``wheel_scale_walk``): a wheel
radius a percent or two off, held as white noise, biased the along-track position by a third of a
metre at 3 m/s with GNSS and gave a covariance that did not know it; GNSS, pose fixes and the IMU
make the scale observable whenever the robot drives.

Propagation integrates the most recent IMU sample (zero-order hold) from the state's stamp to the
next stamp; a measurement between two IMU samples first propagates to its own stamp. Every step
is logged with a snapshot, so a measurement that arrives late (within ``history_s``) is applied
at its own stamp by :meth:`ErrorStateKF.rewind` + :meth:`ErrorStateKF.replay`.

The hot path (:meth:`propagate`) uses plain numpy 3x3 math and preallocated N_ERR x N_ERR blocks.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from geoloc_ros.geometry import wrap_angle

__all__ = ["N_ERR", "KS_", "ErrorStateKF", "Measurement", "GnssPosition", "WheelSpeed", "PoseFix", "ZeroVelocity",
           "BodyVelocity", "skew", "so3_exp", "so3_log", "yaw_jacobian_global", "UpdateResult"]

_I3 = np.eye(3)
N_ERR = 16                                   # error-state dimension
P_, V_, TH_, BA_, BG_ = slice(0, 3), slice(3, 6), slice(6, 9), slice(9, 12), slice(12, 15)
KS_ = 15                                     # index of the wheel-scale error
_EYE4 = np.eye(4)
# flat indices of the (p, theta) rows/columns of P (N_ERR, N_ERR), for P.take -> (6, 6)
_POSE_IDX = np.array([[r * N_ERR + c for c in (0, 1, 2, 6, 7, 8)] for r in (0, 1, 2, 6, 7, 8)])


def skew(w) -> np.ndarray:
    """(3, 3) cross-product matrix of a (3,) vector."""
    return np.array([[0.0, -w[2], w[1]], [w[2], 0.0, -w[0]], [-w[1], w[0], 0.0]])


def so3_exp(phi) -> np.ndarray:
    """Rotation matrix (3, 3) of a rotation vector (3,) rad (Rodrigues).

    Scalar arithmetic, one array at the end: at IMU rate numpy's per-call overhead on 3x3
    operands cost more than the arithmetic (12 -> 7 us per call measured on this CPU)."""
    x, y, z = phi.tolist() if isinstance(phi, np.ndarray) else (float(phi[0]), float(phi[1]), float(phi[2]))
    return _so3_exp_xyz(x, y, z)


def _so3_exp_xyz(x: float, y: float, z: float) -> np.ndarray:
    """:func:`so3_exp` of the rotation vector (x, y, z) rad given as Python floats."""
    a2 = x * x + y * y + z * z
    if a2 < 1e-12:
        s, c = 1.0, 0.5
    else:
        a = math.sqrt(a2)
        s, c = math.sin(a) / a, (1.0 - math.cos(a)) / a2
    xx, yy, zz, xy, xz, yz = x * x, y * y, z * z, x * y, x * z, y * z
    # I + s K + c K^2 with K = skew(phi), K^2 = phi phi^T - |phi|^2 I
    return np.array([[1.0 - c * (yy + zz), c * xy - s * z, c * xz + s * y],
                     [c * xy + s * z, 1.0 - c * (xx + zz), c * yz - s * x],
                     [c * xz - s * y, c * yz + s * x, 1.0 - c * (xx + yy)]])


def _cross(a, b) -> np.ndarray:
    """a x b of two (3,) vectors (np.cross costs ~15 us of axis bookkeeping on (3,) operands)."""
    a0, a1, a2 = a.tolist()
    b0, b1, b2 = b.tolist()
    return np.array([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0])


def so3_log(R) -> np.ndarray:
    """Rotation vector (3,) rad of a rotation matrix (3, 3)."""
    c = np.clip(0.5 * (R[0, 0] + R[1, 1] + R[2, 2] - 1.0), -1.0, 1.0)
    a = np.arccos(c)
    w = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    if a < 1e-6:
        return 0.5 * w
    if np.pi - a < 1e-4:  # near pi: use the symmetric part
        B = 0.5 * (R + _I3)
        ax = np.sqrt(np.maximum(np.diag(B), 0.0))
        ax[1] = np.copysign(ax[1], B[0, 1]) if ax[0] > 0 else ax[1]
        ax[2] = np.copysign(ax[2], B[0, 2]) if ax[0] > 0 else np.copysign(ax[2], B[1, 2])
        return a * ax / max(np.linalg.norm(ax), 1e-12)
    return (a / (2.0 * np.sin(a))) * w


def yaw_jacobian_global(R) -> np.ndarray:
    """d yaw / d (global rotation vector), (3,): [cos(y) tan(p), sin(y) tan(p), 1] for R = Rz Ry Rx."""
    yaw = np.arctan2(R[1, 0], R[0, 0])
    cp = max(np.hypot(R[0, 0], R[1, 0]), 1e-6)
    tp = -R[2, 0] / cp
    return np.array([np.cos(yaw) * tp, np.sin(yaw) * tp, 1.0])


@dataclass
class UpdateResult:
    """Outcome of one measurement: innovation, its covariance, NIS (dimensionless), applied or not."""
    residual: np.ndarray
    S: np.ndarray
    nis: float
    applied: bool


class Measurement:
    """A measurement model: ``model(kf) -> (H (m, N_ERR), r (m,), Rm (m,m))`` at the filter's state.

    ``noise_scale`` multiplies Rm (DEGRADED GNSS, slipping wheels); the filter decides it once and
    the replay after a late measurement reuses it.
    """
    kind = "meas"

    def __init__(self, t: float, noise_scale: float = 1.0):
        self.t = float(t)
        self.noise_scale = float(noise_scale)

    def model(self, kf: "ErrorStateKF"):  # pragma: no cover - interface
        raise NotImplementedError


class GnssPosition(Measurement):
    """Antenna position in the map frame: z (3,) m, cov (3, 3) m^2, lever (3,) m in base_link."""
    kind = "gnss"

    def __init__(self, t, z_map, cov_map, lever_m, use_altitude=True, noise_scale=1.0):
        super().__init__(t, noise_scale)
        self.z = np.asarray(z_map, float)
        self.cov = np.asarray(cov_map, float)
        self.lever = np.asarray(lever_m, float)
        self.rows = slice(0, 3) if use_altitude else slice(0, 2)

    def model(self, kf):
        Rl = kf.R @ self.lever
        H = np.zeros((3, N_ERR))
        H[:, P_] = _I3
        H[:, TH_] = -kf.R @ skew(self.lever)
        r = self.z - (kf.p + Rl)
        rows = self.rows
        return H[rows], r[rows], self.cov[rows, rows] * self.noise_scale


class WheelSpeed(Measurement):
    """Wheel forward speed (m/s) with the non-holonomic constraint (lateral, vertical speed = 0).

    The measured frame sits at ``lever_m`` in base_link rotated by ``R_base_wheel``; the forward
    speed is ``ks`` times the frame's true forward speed (the filter's wheel-scale state); the
    optional yaw rate (rad/s) is a measurement of ``gyr_z - bg_z`` with the last gyro sample.
    """
    kind = "wheel"

    def __init__(self, t, v_mps, var_v, nhc_var, R_base_wheel=None, lever_m=(0, 0, 0),
                 yaw_rate_rps=None, var_yaw_rate=None, noise_scale=1.0, nhc=True):
        super().__init__(t, noise_scale)
        self.v = float(v_mps)
        self.var_v = float(var_v)
        self.nhc_var = float(nhc_var)
        self.Rbw = _I3 if R_base_wheel is None else np.asarray(R_base_wheel, float)
        self.lever = np.asarray(lever_m, float)
        self.yaw_rate = yaw_rate_rps
        self.var_yaw_rate = var_yaw_rate
        self.nhc = nhc

    def predicted_speed(self, kf) -> float:
        w = kf.gyr - kf.bg
        vb = kf.R.T @ kf.v + _cross(w, self.lever)
        return kf.ks * float((self.Rbw.T @ vb)[0])

    def model(self, kf):
        w = kf.gyr - kf.bg
        RtV = kf.R.T @ kf.v
        vb = RtV + _cross(w, self.lever)
        Rwb = self.Rbw.T
        H = np.zeros((4, N_ERR))
        H[0:3, V_] = Rwb @ kf.R.T
        H[0:3, TH_] = Rwb @ skew(RtV)
        H[0:3, BG_] = Rwb @ skew(self.lever)
        h = np.zeros(4)
        h[0:3] = Rwb @ vb
        H[0, KS_] = h[0]                              # d(ks v_fwd) / d ks
        H[0, :KS_] *= kf.ks
        h[0] *= kf.ks
        z = np.array([self.v, 0.0, 0.0, 0.0])
        var = np.array([self.var_v, self.nhc_var, self.nhc_var, 0.0])
        rows = [0, 1, 2] if self.nhc else [0]
        if self.yaw_rate is not None:
            H[3, 14] = -1.0
            h[3] = w[2]
            z[3] = self.yaw_rate
            var[3] = self.var_yaw_rate
            rows.append(3)
        return H[rows], (z - h)[rows], np.diag(var[rows]) * self.noise_scale


class PoseFix(Measurement):
    """Absolute pose in the map frame: ``dof`` 'xyyaw' (3), 'xyzyaw' (4) or 'full' (6).

    ``cov6`` (6, 6) in ROS order (x, y, z, roll, pitch, yaw); the rotation part of 'full' is used
    as the covariance of the global rotation-vector error.
    """
    kind = "fix"
    ROWS = {"xyyaw": [0, 1, 5], "xyzyaw": [0, 1, 2, 5], "full": [0, 1, 2, 3, 4, 5]}

    def __init__(self, t, T_map_base, cov6, dof="xyyaw", noise_scale=1.0):
        super().__init__(t, noise_scale)
        self.T = np.asarray(T_map_base, float)
        self.cov6 = np.asarray(cov6, float)
        self.dof = dof

    def model(self, kf):
        idx = self.ROWS[self.dof]
        H = np.zeros((6, N_ERR))
        r = np.zeros(6)
        H[0:3, P_] = _I3
        r[0:3] = self.T[:3, 3] - kf.p
        if self.dof == "full":
            H[3:6, TH_] = kf.R
            r[3:6] = so3_log(self.T[:3, :3] @ kf.R.T)
        else:
            H[5, TH_] = yaw_jacobian_global(kf.R) @ kf.R
            yaw_m = np.arctan2(self.T[1, 0], self.T[0, 0])
            r[5] = wrap_angle(yaw_m - np.arctan2(kf.R[1, 0], kf.R[0, 0]))
        return H[idx], r[idx], self.cov6[np.ix_(idx, idx)] * self.noise_scale


class ZeroVelocity(Measurement):
    """Zero-velocity pseudo-measurement (robot stationary): v = 0 with std ``std_mps``."""
    kind = "zupt"

    def __init__(self, t, std_mps):
        super().__init__(t)
        self.var = float(std_mps) ** 2

    def model(self, kf):
        H = np.zeros((3, N_ERR))
        H[:, V_] = _I3
        return H, -kf.v, self.var * _I3


class BodyVelocity(Measurement):
    """Body-frame velocity of base_link from LiDAR odometry: ``v`` (3,) m/s with ``cov_v`` (3, 3),
    h(x) = R^T v (no non-holonomic assumption: sideways and vertical motion are measured too);
    optionally the angular rate ``w`` (3,) rad/s with ``cov_w`` (3, 3), h(x) = gyr - bg with the
    held gyro sample (``cov_w`` must then include that sample's noise).

    Error-state Jacobians (attitude error in the body frame, R_true = R Exp(dtheta)):
    d(R^T v)/d dv = R^T, d(R^T v)/d dtheta = [R^T v]x; d(gyr - bg)/d dbg = -I.
    """
    kind = "velocity"

    def __init__(self, t, v_mps, cov_v, w_rps=None, cov_w=None, noise_scale=1.0):
        super().__init__(t, noise_scale)
        self.v = np.asarray(v_mps, float).reshape(3)
        self.cov_v = np.asarray(cov_v, float).reshape(3, 3)
        self.w = None if w_rps is None else np.asarray(w_rps, float).reshape(3)
        self.cov_w = None if cov_w is None else np.asarray(cov_w, float).reshape(3, 3)

    def model(self, kf):
        RtV = kf.R.T @ kf.v
        m = 3 if self.w is None else 6
        H = np.zeros((m, N_ERR))
        H[0:3, V_] = kf.R.T
        H[0:3, TH_] = skew(RtV)
        r = np.empty(m)
        r[0:3] = self.v - RtV
        Rm = np.zeros((m, m))
        Rm[0:3, 0:3] = self.cov_v
        if self.w is not None:
            H[3:6, BG_] = -_I3
            r[3:6] = self.w - (kf.gyr - kf.bg)
            Rm[3:6, 3:6] = self.cov_w
        return H, r, Rm * self.noise_scale


class ErrorStateKF:
    """The ESKF core: state, IMU propagation, generic update, state history for late measurements.

    Parameters (from :class:`geoloc_ros.fusion.config.FusionConfig`): gravity, IMU noise
    densities, ``history_s``.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.g = np.array([0.0, 0.0, -float(cfg.gravity_mps2)])
        self._q = np.array([cfg.acc_noise ** 2, cfg.gyr_noise ** 2, cfg.acc_bias_walk ** 2,
                            cfg.gyr_bias_walk ** 2])
        # bridging a gap on one held sample: the motion during the gap is unknown, not white noise
        self._q_gap = (float(cfg.imu_gap_acc_std_mps2) ** 2, float(cfg.imu_gap_gyr_std_rps) ** 2)
        self._F = np.eye(N_ERR)
        self._F_dt = None                            # dt of the constant blocks written in _F
        qi = np.arange(3, 15)                       # diagonal of v, theta, ba, bg
        self._Qd = np.zeros((N_ERR, N_ERR))         # their process-noise densities squared (per s)
        self._Qd[qi, qi] = np.repeat(self._q, 3)
        self._Qd[KS_, KS_] = float(cfg.wheel_scale_walk) ** 2
        self._ks_var0 = float(cfg.init_wheel_scale_std) ** 2
        self._I = np.eye(N_ERR)
        self._B6 = np.eye(6)                        # blockdiag(I, R) scratch of pose_cov6
        self.log: deque = deque()
        self.reset()

    # ---- state ----------------------------------------------------------------------------
    def reset(self) -> None:
        self.t = None
        self.p = np.zeros(3)
        self.v = np.zeros(3)
        self.R = np.eye(3)
        self.ba = np.zeros(3)
        self.bg = np.zeros(3)
        self.ks = 1.0
        self.P = np.eye(N_ERR)
        self.acc = -self.g.copy()  # held IMU sample (zero-order hold); stationary default
        self.gyr = np.zeros(3)
        self.log.clear()

    @property
    def initialized(self) -> bool:
        return self.t is not None

    def initialize(self, t, p, R, v=None, P0=None, ba=None, bg=None) -> None:
        """Set the nominal state at stamp ``t`` (s) with error covariance ``P0`` (N_ERR, N_ERR), or
        (15, 15) for the navigation states only (the wheel scale then gets ``init_wheel_scale_std``).

        The wheel scale ``ks`` is a calibration, not a pose: it survives re-initialization."""
        self.t = float(t)
        self.p = np.array(p, float)
        self.R = np.array(R, float)
        self.v = np.zeros(3) if v is None else np.array(v, float)
        if ba is not None:
            self.ba = np.array(ba, float)
        if bg is not None:
            self.bg = np.array(bg, float)
        P = np.array(P0, float) if P0 is not None else np.eye(15) * 1e-2
        if P.shape == (15, 15):
            P = np.pad(P, ((0, 1), (0, 1)))
            P[KS_, KS_] = self._ks_var0
        self.P = P
        self.log.clear()
        self._record("init", self.t, None)

    def snapshot(self):
        return (self.t, self.p.copy(), self.v.copy(), self.R.copy(), self.ba.copy(), self.bg.copy(),
                self.P.copy(), self.acc.copy(), self.gyr.copy(), self.ks)

    def restore(self, s) -> None:
        (self.t, p, v, R, ba, bg, P, acc, gyr, self.ks) = s
        self.p, self.v, self.R, self.ba, self.bg = p.copy(), v.copy(), R.copy(), ba.copy(), bg.copy()
        self.P, self.acc, self.gyr = P.copy(), acc.copy(), gyr.copy()

    def _record(self, kind, t, payload) -> None:
        self.log.append((t, kind, payload, self.snapshot()))
        horizon = t - self.cfg.history_s
        while len(self.log) > 1 and self.log[1][0] < horizon:
            self.log.popleft()

    # ---- propagation ----------------------------------------------------------------------
    def _integrate(self, dt: float) -> None:
        """Integrate the held IMU sample over ``dt`` seconds (nominal state and covariance).

        The 3-vector arithmetic runs on Python floats (numpy's per-call overhead on (3,) operands
        is ~1 us, more than the arithmetic); the covariance is ``F P F^T + Qd dt``."""
        if dt <= 0.0:
            return
        R = self.R
        (r00, r01, r02), (r10, r11, r12), (r20, r21, r22) = R.tolist()
        ax, ay, az = (self.acc - self.ba).tolist()          # bias-corrected specific force, body
        gx, gy, gz = self.g.tolist()
        awx = r00 * ax + r01 * ay + r02 * az + gx           # acceleration in the map frame
        awy = r10 * ax + r11 * ay + r12 * az + gy
        awz = r20 * ax + r21 * ay + r22 * az + gz
        vx, vy, vz = self.v.tolist()
        px, py, pz = self.p.tolist()
        h = 0.5 * dt
        self.p = np.array([px + (vx + h * awx) * dt, py + (vy + h * awy) * dt, pz + (vz + h * awz) * dt])
        self.v = np.array([vx + awx * dt, vy + awy * dt, vz + awz * dt])
        wx, wy, wz = (self.gyr - self.bg).tolist()
        dR = _so3_exp_xyz(wx * dt, wy * dt, wz * dt)
        self.R = np.dot(R, dR)
        F = self._F
        if dt != self._F_dt:        # blocks that depend on dt only (constant at a steady rate)
            F[0:3, 3:6] = _I3 * dt
            F[6:9, 12:15] = -_I3 * dt
            self._F_dt = dt
            self._Qd_dt = self._Qd * dt
        ax, ay, az = ax * dt, ay * dt, az * dt
        # d dv / [d dtheta, d dba] = -R dt [[a_b]x, I]
        F[3:6, 6:12] = np.dot(R, np.array([[0.0, az, -ay, -dt, 0.0, 0.0],
                                           [-az, 0.0, ax, 0.0, -dt, 0.0],
                                           [ay, -ax, 0.0, 0.0, 0.0, -dt]]))
        F[6:9, 6:9] = dR.T
        P = np.dot(np.dot(F, self.P), F.T)
        P += self._Qd_dt
        self.P = P
        self.t += dt

    def _gap_noise(self, dt: float) -> None:
        """Process noise of ``dt`` seconds (s) bridged without IMU samples: an unknown acceleration
        of ``imu_gap_acc_std_mps2`` (velocity dt, position dt^3/3, their correlation dt^2/2) and an
        unknown turn rate of ``imu_gap_gyr_std_rps`` (attitude dt)."""
        if dt <= 0.0:
            return
        qa, qw = self._q_gap
        P = self.P
        i3 = np.arange(3)
        P[i3, i3] += qa * dt ** 3 / 3.0
        P[i3 + 3, i3 + 3] += qa * dt
        P[i3, i3 + 3] += qa * dt ** 2 / 2.0
        P[i3 + 3, i3] += qa * dt ** 2 / 2.0
        P[i3 + 6, i3 + 6] += qw * dt

    def propagate(self, t: float, acc=None, gyr=None, record: bool = True) -> None:
        """Propagate to stamp ``t`` with the held sample, then hold (acc, gyr) when given.

        Gaps longer than ``imu_max_dt_s`` are integrated in pieces of at most that length, each
        with the gap's own process noise (:meth:`_gap_noise`): the held sample says nothing of
        how the robot moved meanwhile.
        """
        dt = t - self.t
        max_dt = self.cfg.imu_max_dt_s
        gap = dt > max_dt
        while dt > max_dt:
            self._integrate(max_dt)
            self._gap_noise(max_dt)
            dt = t - self.t
        self._integrate(dt)
        if gap:
            self._gap_noise(dt)
        self.t = float(t)
        if acc is not None:
            self.acc = np.asarray(acc, float)
            self.gyr = np.asarray(gyr, float)
        if record:
            self._record("imu", self.t, (self.acc, self.gyr))

    # ---- update ---------------------------------------------------------------------------
    def innovation(self, meas: Measurement) -> UpdateResult:
        """Residual, its covariance S and NIS of ``meas`` at the current state (no change)."""
        H, r, Rm = meas.model(self)
        S = H @ self.P @ H.T + Rm
        try:
            nis = float(r @ np.linalg.solve(S, r))
        except np.linalg.LinAlgError:
            nis = float("inf")
        return UpdateResult(r, S, nis, False)

    def update(self, meas: Measurement, record: bool = True) -> UpdateResult:
        """Propagate to ``meas.t`` (when ahead) and apply the measurement (Joseph form)."""
        if meas.t > self.t:
            self.propagate(meas.t, record=False)
        H, r, Rm = meas.model(self)
        PHt = self.P @ H.T
        S = H @ PHt + Rm
        try:
            Sinv = np.linalg.inv(S)
        except np.linalg.LinAlgError:
            return UpdateResult(r, S, float("inf"), False)
        nis = float(r @ Sinv @ r)
        K = PHt @ Sinv
        dx = K @ r
        IKH = self._I - K @ H
        P = IKH @ self.P @ IKH.T + K @ Rm @ K.T
        self.P = 0.5 * (P + P.T)
        self.inject(dx)
        if record:
            self._record(meas.kind, self.t, meas)
        return UpdateResult(r, S, nis, True)

    def inject(self, dx) -> None:
        """Fold an error-state correction (N_ERR,) into the nominal state."""
        self.p += dx[0:3]
        self.v += dx[3:6]
        self.R = self.R @ so3_exp(dx[6:9])
        self.ba += dx[9:12]
        self.bg += dx[12:15]
        self.ks = min(max(self.ks + float(dx[KS_]), 0.5), 2.0)

    # ---- late measurements ----------------------------------------------------------------
    def can_rewind(self, t: float) -> bool:
        return bool(self.log) and self.log[0][0] <= t

    def rewind(self, t: float) -> list:
        """Restore the state just before stamp ``t``; return the logged steps after it to replay."""
        log = self.log
        k = len(log) - 1
        while k > 0 and log[k][0] > t:
            k -= 1
        later = [log[j] for j in range(k + 1, len(log))]
        self.restore(log[k][3])
        for _ in range(len(later)):
            log.pop()
        return later

    def replay(self, steps: list) -> None:
        """Re-apply logged steps (IMU samples and measurements with their decided noise)."""
        for (t, kind, payload, _snap) in steps:
            if kind == "imu":
                self.propagate(t, payload[0], payload[1])
            elif kind != "init":
                self.update(payload)

    # ---- outputs --------------------------------------------------------------------------
    def pose(self) -> np.ndarray:
        """T_map_base (4, 4)."""
        T = _EYE4.copy()
        T[:3, :3] = self.R
        T[:3, 3] = self.p
        return T

    def pose_cov6(self) -> np.ndarray:
        """(6, 6) pose covariance, ROS order (x, y, z, roll, pitch, yaw), rotation in the map frame:
        B P[(p, theta), (p, theta)] B^T with B = blockdiag(I, R)."""
        B = self._B6                                          # scratch, only used here
        B[3:6, 3:6] = self.R
        C = np.dot(np.dot(B, self.P.take(_POSE_IDX)), B.T)    # np.dot: less call overhead than @
        C = C + C.T                # (not +=: in place on its own transpose numpy copies first)
        C *= 0.5
        return C

    def twist(self) -> np.ndarray:
        """(6,) body-frame linear (m/s) and angular (rad/s) velocity."""
        out = np.empty(6)
        out[0:3] = self.v @ self.R          # = R^T v
        out[3:6] = self.gyr - self.bg
        return out
