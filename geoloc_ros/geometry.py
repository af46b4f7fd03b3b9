"""SE(2)/SE(3) helpers, quaternions (via scipy.spatial.transform) and covariance helpers.

Conventions (REP-103/105): right-handed, x forward, y left, z up; yaw about +z, counter-clockwise.
Poses are 4x4 homogeneous matrices ``T_a_b`` mapping points from frame b into frame a.
Quaternions are in ROS order (x, y, z, w). Covariances of a pose follow ROS order
(x, y, z, roll, pitch, yaw) and are expressed in the parent frame (m^2, rad^2).
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

__all__ = [
    "wrap_angle", "rot_z", "se2", "se2_from_matrix", "se3", "se3_inverse", "yaw_of",
    "quat_to_matrix", "matrix_to_quat", "rpy_to_matrix", "matrix_to_rpy", "transform_points",
    "pose_to_xyzquat", "xyzquat_to_pose", "yaw_only", "symmetrize", "is_valid_covariance",
    "nees", "interpolate_poses", "PoseInterpolator",
]


def wrap_angle(a_rad):
    """Wrap angle(s) to [-pi, pi)."""
    return (np.asarray(a_rad) + np.pi) % (2.0 * np.pi) - np.pi


def rot_z(yaw_rad: float) -> np.ndarray:
    """3x3 rotation about +z by ``yaw_rad``."""
    c, s = np.cos(yaw_rad), np.sin(yaw_rad)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def se2(x_m: float, y_m: float, yaw_rad: float) -> np.ndarray:
    """3x3 homogeneous SE(2) matrix."""
    c, s = np.cos(yaw_rad), np.sin(yaw_rad)
    return np.array([[c, -s, x_m], [s, c, y_m], [0.0, 0.0, 1.0]])


def se2_from_matrix(T: np.ndarray) -> tuple[float, float, float]:
    """(x_m, y_m, yaw_rad) from a 3x3 SE(2) or a 4x4 SE(3) matrix (yaw of its rotation)."""
    T = np.asarray(T)
    if T.shape == (3, 3):
        return float(T[0, 2]), float(T[1, 2]), float(np.arctan2(T[1, 0], T[0, 0]))
    return float(T[0, 3]), float(T[1, 3]), yaw_of(T)


def se3(R: np.ndarray | None = None, t=None) -> np.ndarray:
    """4x4 homogeneous matrix from a 3x3 rotation and a (3,) translation."""
    T = np.eye(4)
    if R is not None:
        T[:3, :3] = R
    if t is not None:
        T[:3, 3] = np.asarray(t, float).reshape(3)
    return T


def se3_inverse(T: np.ndarray) -> np.ndarray:
    """Inverse of a 4x4 rigid transform."""
    Ti = np.eye(4)
    Ti[:3, :3] = T[:3, :3].T
    Ti[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return Ti


def yaw_of(T_or_R: np.ndarray) -> float:
    """Yaw (rad) of a 3x3 rotation or 4x4 pose: heading of its x axis projected on the xy plane."""
    R = np.asarray(T_or_R)[:3, :3]
    return float(np.arctan2(R[1, 0], R[0, 0]))


def yaw_only(T: np.ndarray) -> np.ndarray:
    """The 4x4 pose with roll and pitch removed (same translation, same yaw)."""
    out = np.eye(4)
    out[:3, :3] = rot_z(yaw_of(T))
    out[:3, 3] = np.asarray(T)[:3, 3]
    return out


def quat_to_matrix(q_xyzw) -> np.ndarray:
    """3x3 rotation from a quaternion (x, y, z, w); shape (...,4) -> (...,3,3)."""
    return Rotation.from_quat(np.asarray(q_xyzw, float)).as_matrix()


def matrix_to_quat(R: np.ndarray) -> np.ndarray:
    """Quaternion (x, y, z, w) with w >= 0 from a 3x3 rotation."""
    q = Rotation.from_matrix(np.asarray(R, float)).as_quat()
    return np.where(q[..., 3:4] < 0, -q, q)


def rpy_to_matrix(roll_rad: float, pitch_rad: float, yaw_rad: float) -> np.ndarray:
    """3x3 rotation from fixed-axis roll, pitch, yaw (R = Rz(yaw) Ry(pitch) Rx(roll), as ROS)."""
    return Rotation.from_euler("xyz", [roll_rad, pitch_rad, yaw_rad]).as_matrix()


def matrix_to_rpy(R: np.ndarray) -> np.ndarray:
    """(roll, pitch, yaw) in rad from a 3x3 rotation (inverse of :func:`rpy_to_matrix`)."""
    return Rotation.from_matrix(np.asarray(R, float)[:3, :3]).as_euler("xyz")


def transform_points(T: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to points of shape (N, 3); returns (N, 3)."""
    pts = np.asarray(pts)
    return pts @ T[:3, :3].T + T[:3, 3]


def pose_to_xyzquat(T: np.ndarray) -> np.ndarray:
    """(7,) array x, y, z, qx, qy, qz, qw from a 4x4 pose."""
    return np.concatenate([T[:3, 3], matrix_to_quat(T[:3, :3])])


def xyzquat_to_pose(v) -> np.ndarray:
    """4x4 pose from (7,) x, y, z, qx, qy, qz, qw."""
    v = np.asarray(v, float)
    return se3(quat_to_matrix(v[3:7]), v[:3])


def symmetrize(P: np.ndarray) -> np.ndarray:
    """(P + P^T) / 2."""
    return 0.5 * (P + np.swapaxes(P, -1, -2))


def is_valid_covariance(P: np.ndarray, min_eig: float = 0.0) -> bool:
    """True when P is finite, square, symmetric (to 1e-9 relative) and its eigenvalues exceed ``min_eig``."""
    P = np.asarray(P, float)
    if P.ndim != 2 or P.shape[0] != P.shape[1] or not np.all(np.isfinite(P)):
        return False
    if not np.allclose(P, P.T, rtol=1e-6, atol=1e-9 * max(1.0, float(np.abs(P).max()))):
        return False
    return bool(np.linalg.eigvalsh(symmetrize(P)).min() > min_eig)


def nees(err: np.ndarray, P: np.ndarray) -> float:
    """Normalized estimation error squared e^T P^-1 e (dimensionless)."""
    err = np.asarray(err, float)
    return float(err @ np.linalg.solve(P, err))


class PoseInterpolator:
    """Poses of a trajectory ``t_s`` (N,) / ``T`` (N,4,4) at any times: linear in translation,
    slerp in rotation. Built once (the slerp table), queried many times."""

    def __init__(self, t_s: np.ndarray, T: np.ndarray, max_gap_s: float = np.inf):
        from scipy.spatial.transform import Slerp

        self.t_s = np.asarray(t_s, float)
        self.T = np.asarray(T, float)
        self.max_gap_s = max_gap_s
        self._slerp = (Slerp(self.t_s, Rotation.from_matrix(self.T[:, :3, :3]))
                       if len(self.t_s) >= 2 else None)

    def __call__(self, t_query_s):
        """(T_q (M,4,4), valid (M,) bool); queries outside the trajectory or inside a gap longer
        than ``max_gap_s`` are invalid (their pose is the nearest one)."""
        tq = np.atleast_1d(np.asarray(t_query_s, float))
        t_s, T = self.t_s, self.T
        out = np.repeat(np.eye(4)[None], len(tq), axis=0)
        if len(t_s) == 0:
            return out, np.zeros(len(tq), bool)
        if len(t_s) == 1:
            out[:] = T[0]
            return out, np.isclose(tq, t_s[0])
        i = np.clip(np.searchsorted(t_s, tq) - 1, 0, len(t_s) - 2)
        gap = t_s[i + 1] - t_s[i]
        valid = (tq >= t_s[0]) & (tq <= t_s[-1]) & (gap <= self.max_gap_s)
        tc = np.clip(tq, t_s[0], t_s[-1])
        a = np.clip((tc - t_s[i]) / np.where(gap > 0, gap, 1.0), 0.0, 1.0)
        out[:, :3, 3] = (1 - a)[:, None] * T[i, :3, 3] + a[:, None] * T[i + 1, :3, 3]
        out[:, :3, :3] = self._slerp(tc).as_matrix()
        return out, valid


def interpolate_poses(t_query_s, t_s: np.ndarray, T: np.ndarray, max_gap_s: float = np.inf):
    """Poses at ``t_query_s`` (M,) from a trajectory ``t_s`` (N,) / ``T`` (N,4,4): linear in
    translation, slerp in rotation. Returns (T_q (M,4,4), valid (M,) bool); queries outside the
    trajectory or inside a gap longer than ``max_gap_s`` are invalid (their pose is the nearest one).
    For many queries on one trajectory, build a :class:`PoseInterpolator` once.
    """
    return PoseInterpolator(t_s, T, max_gap_s)(t_query_s)
