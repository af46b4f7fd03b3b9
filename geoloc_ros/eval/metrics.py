"""Trajectory and localization metrics (no plotting, no ROS).

evo-style core: evo does the time matching (``evo.core.sync``), the Umeyama alignment
(``evo.core.geometry``) and the RPE pair selection (``evo.core.filters``); the per-pose errors and
their statistics are computed here, vectorised, and cross-checked against evo's own APE/RPE in
``test/test_eval_metrics.py``.

A localizer promises poses in the map frame, which IS the ground-truth frame, so the headline
ATE is computed WITHOUT alignment (:attr:`Alignment.NONE`, the default); SE(3)/Sim(3)-aligned ATE
only tells the shape of the trajectory apart from its placement.

Conventions: trajectories are ``(t_s (N,), T (N, 4, 4))`` with ``T = T_map_base``; pose errors in
ROS covariance order (x, y, z, roll, pitch, yaw) in the parent (map) frame, m and rad.

Engine and consistency scores (recall@N, success rate, NEES, interval statistics, coverage, fix
errors) live in :mod:`geoloc_ros.eval.scores` and are re-exported here.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from geoloc_ros.eval.scores import (NeesResult, coverage, fix_errors, interval_stats, nees, recall_at_n,
                                    success_rate)
from geoloc_ros.eval.stats import DEFAULT_MAX_DT_S, ErrorStats, MetricsError, clean_stamps, yaw_batch
from geoloc_ros.geometry import wrap_angle

__all__ = [
    "Alignment", "DeltaUnit", "MetricsError", "Trajectory", "ErrorStats", "AteResult", "RpeResult",
    "NeesResult", "associate", "align", "pose_errors6", "ate", "rpe", "recall_at_n", "success_rate",
    "nees", "interval_stats", "coverage", "fix_errors", "DEFAULT_MAX_DT_S",
]


class Alignment(str, enum.Enum):
    """How the estimate is aligned to the reference before ATE."""
    NONE = "none"   # map frame is the truth frame: what a localizer promises
    SE3 = "se3"     # rigid Umeyama alignment (shape only)
    SIM3 = "sim3"   # Umeyama with scale (monocular-style)


class DeltaUnit(str, enum.Enum):
    """Unit of the RPE step between the two poses of a pair."""
    FRAMES = "frames"
    METERS = "m"


# --------------------------------------------------------------------------- containers
@dataclass
class Trajectory:
    """Time-stamped poses ``T_map_base``; optional per-pose 6x6 covariances (ROS order)."""
    t_s: np.ndarray                 # (N,) s
    T: np.ndarray                   # (N, 4, 4)
    cov6: np.ndarray | None = None  # (N, 6, 6) m^2 / rad^2, parent frame
    name: str = ""

    def __post_init__(self):
        self.t_s = np.asarray(self.t_s, float).reshape(-1)
        self.T = np.asarray(self.T, float).reshape(-1, 4, 4)
        if len(self.t_s) != len(self.T):
            raise MetricsError(f"trajectory {self.name!r}: {len(self.t_s)} stamps but {len(self.T)} poses")
        if self.cov6 is not None:
            self.cov6 = np.asarray(self.cov6, float).reshape(-1, 6, 6)
            if len(self.cov6) != len(self.t_s):
                raise MetricsError(f"trajectory {self.name!r}: {len(self.cov6)} covariances for {len(self.t_s)} poses")

    def __len__(self) -> int:
        return len(self.t_s)

    @property
    def xyz(self) -> np.ndarray:
        """(N, 3) positions, m."""
        return self.T[:, :3, 3]

    def subset(self, idx) -> "Trajectory":
        return Trajectory(self.t_s[idx], self.T[idx], None if self.cov6 is None else self.cov6[idx], self.name)

    @classmethod
    def from_tum(cls, path, name: str = "") -> "Trajectory":
        from geoloc_ros.io.tum import read_tum
        t, T = read_tum(path)
        return cls(t, T, name=name or str(path))


def _as_traj(x, name: str) -> Trajectory:
    if isinstance(x, Trajectory):
        return x
    if isinstance(x, (tuple, list)) and len(x) in (2, 3):
        return Trajectory(*x, name=name)
    raise MetricsError(f"{name}: expected a Trajectory or a (t_s, T[, cov6]) tuple, got {type(x).__name__}")


@dataclass
class AteResult:
    """Absolute trajectory error at matched stamps (arrays are (M,), M = matched poses)."""
    t_s: np.ndarray              # (M,) estimate stamps
    idx_est: np.ndarray          # (M,) indices into the estimate
    idx_ref: np.ndarray          # (M,) indices into the reference
    trans_err_m: np.ndarray      # (M,) |p_est - p_ref|
    rot_err_rad: np.ndarray      # (M,) angle of R_ref^T R_est
    xy_err_m: np.ndarray         # (M,) horizontal error
    yaw_err_rad: np.ndarray      # (M,) signed yaw_est - yaw_ref, wrapped
    err6: np.ndarray             # (M, 6) x, y, z, roll, pitch, yaw error in the map frame
    align: Alignment
    T_align: np.ndarray          # (4, 4) applied to the estimate (identity for NONE)
    scale: float
    n_nonfinite: int = 0         # matched pairs dropped because a pose was NaN/inf
    trans: ErrorStats = field(init=False)
    rot: ErrorStats = field(init=False)
    xy: ErrorStats = field(init=False)
    yaw: ErrorStats = field(init=False)

    def __post_init__(self):
        self.trans = ErrorStats.of(self.trans_err_m)
        self.rot = ErrorStats.of(self.rot_err_rad)
        self.xy = ErrorStats.of(self.xy_err_m)
        self.yaw = ErrorStats.of(np.abs(self.yaw_err_rad))

    # shorthands for the headline numbers (translation error)
    @property
    def rmse(self) -> float:
        return self.trans.rmse

    @property
    def max(self) -> float:
        return self.trans.max

    @property
    def n(self) -> int:
        return int(len(self.t_s))

    def summary(self) -> dict[str, float]:
        """Flat numbers for tables / bench JSON."""
        return {"n": int(len(self.t_s)), "trans_rmse_m": self.trans.rmse, "trans_mean_m": self.trans.mean,
                "trans_median_m": self.trans.median, "trans_max_m": self.trans.max,
                "xy_rmse_m": self.xy.rmse, "rot_rmse_deg": float(np.degrees(self.rot.rmse)),
                "yaw_rmse_deg": float(np.degrees(self.yaw.rmse))}


@dataclass
class RpeResult:
    """Relative pose error over pose pairs (i, j) of the matched trajectories."""
    pairs: np.ndarray            # (P, 2) indices into the matched arrays
    t_s: np.ndarray              # (P,) stamp of the second pose of each pair
    trans_err_m: np.ndarray      # (P,)
    rot_err_rad: np.ndarray      # (P,)
    delta: float
    unit: DeltaUnit
    trans: ErrorStats = field(init=False)
    rot: ErrorStats = field(init=False)

    def __post_init__(self):
        self.trans = ErrorStats.of(self.trans_err_m)
        self.rot = ErrorStats.of(self.rot_err_rad)


# --------------------------------------------------------------------------- association / alignment
def associate(t_est, t_ref, max_dt_s: float = DEFAULT_MAX_DT_S) -> tuple[np.ndarray, np.ndarray]:
    """Match stamps within ``max_dt_s`` (nearest neighbour, evo's ``matching_time_indices``).

    As evo does, the shorter of the two series is matched into the longer one, so no pose of the
    sparser series is lost and none is used twice. Stamps need not be sorted. Returns
    ``(idx_est (M,), idx_ref (M,))`` sorted by estimate time; M = 0 when nothing matches.
    """
    from evo.core.sync import matching_time_indices

    te, tr = clean_stamps(t_est, "estimate"), clean_stamps(t_ref, "reference")
    if te.size == 0 or tr.size == 0:
        return np.zeros(0, int), np.zeros(0, int)
    oe, orf = np.argsort(te, kind="stable"), np.argsort(tr, kind="stable")
    if len(te) <= len(tr):
        i_e, i_r = matching_time_indices(te[oe], tr[orf], max_diff=max_dt_s)
    else:
        i_r, i_e = matching_time_indices(tr[orf], te[oe], max_diff=max_dt_s)
    ie, ir = oe[np.asarray(i_e, int)], orf[np.asarray(i_r, int)]
    k = np.argsort(te[ie], kind="stable")
    return ie[k], ir[k]


def align(T_est, T_ref, mode: Alignment = Alignment.SE3) -> tuple[np.ndarray, float]:
    """Umeyama alignment of estimate positions onto reference positions (evo's implementation).

    Returns ``(T_align (4, 4), scale)`` such that an aligned pose is ``T_align @ S(scale) @ T_est``
    where S scales the translation only. NONE gives the identity.
    """
    mode = Alignment(mode)
    if mode is Alignment.NONE:
        return np.eye(4), 1.0
    from evo.core.geometry import GeometryException, umeyama_alignment
    pe, pr = np.asarray(T_est)[:, :3, 3], np.asarray(T_ref)[:, :3, 3]
    if len(pe) < 3:
        raise MetricsError(f"{mode.value} alignment needs >= 3 matched poses, got {len(pe)}")
    try:
        R, t, s = umeyama_alignment(pe.T, pr.T, with_scale=mode is Alignment.SIM3)
    except GeometryException as e:
        raise MetricsError(f"{mode.value} alignment impossible: {e}") from None
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T, float(s)


def _apply_alignment(T_est: np.ndarray, T_align: np.ndarray, scale: float) -> np.ndarray:
    out = T_est.copy()
    out[:, :3, 3] *= scale
    return T_align[None] @ out


def pose_errors6(T_est, T_ref) -> np.ndarray:
    """(N, 6) error of each estimate in the map frame: ``p_est - p_ref`` and the rotation vector of
    ``R_est R_ref^T`` (small angles: roll, pitch, yaw), the frame the ROS covariances use."""
    T_est, T_ref = np.asarray(T_est, float).reshape(-1, 4, 4), np.asarray(T_ref, float).reshape(-1, 4, 4)
    e = np.zeros((len(T_est), 6))
    if len(T_est):
        e[:, :3] = T_est[:, :3, 3] - T_ref[:, :3, 3]
        dR = T_est[:, :3, :3] @ np.swapaxes(T_ref[:, :3, :3], 1, 2)
        e[:, 3:] = Rotation.from_matrix(dR).as_rotvec()
    return e


def _rot_angle(R: np.ndarray) -> np.ndarray:
    """(N,) rotation angle (rad) of (N, 3, 3) matrices (scipy; accurate near 0 and pi)."""
    if len(R) == 0:
        return np.zeros(0)
    return Rotation.from_matrix(R).magnitude()


def _inv(T: np.ndarray) -> np.ndarray:
    """Batch rigid inverse of (N, 4, 4) poses (transpose of the rotation, as evo does)."""
    Ti = np.tile(np.eye(4), (len(T), 1, 1))
    Rt = np.swapaxes(T[:, :3, :3], 1, 2)
    Ti[:, :3, :3] = Rt
    Ti[:, :3, 3] = -(Rt @ T[:, :3, 3:4])[:, :, 0]
    return Ti


# --------------------------------------------------------------------------- ATE / RPE
def _match(est: Trajectory, ref: Trajectory, max_dt_s: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Associated indices with the pairs holding a non-finite pose dropped (and their count)."""
    ie, ir = associate(est.t_s, ref.t_s, max_dt_s)
    ok = np.isfinite(est.T[ie]).all(axis=(1, 2)) & np.isfinite(ref.T[ir]).all(axis=(1, 2))
    return ie[ok], ir[ok], int((~ok).sum())


def ate(est, ref, align: Alignment = Alignment.NONE, max_dt_s: float = DEFAULT_MAX_DT_S) -> AteResult:
    """Absolute trajectory error of ``est`` against ``ref`` (Trajectory or ``(t_s, T)``).

    Poses are matched by time within ``max_dt_s``; with ``align`` SE3/SIM3 the estimate is first
    Umeyama-aligned on the matched positions. Raises :class:`MetricsError` when nothing matches.
    """
    est, ref = _as_traj(est, "estimate"), _as_traj(ref, "reference")
    mode = Alignment(align)
    ie, ir, bad = _match(est, ref, max_dt_s)
    if ie.size == 0:
        span = lambda t: f"[{t.min():.3f}, {t.max():.3f}]" if len(t) else "[empty]"  # noqa: E731
        raise MetricsError(f"no estimate within {max_dt_s * 1e3:.0f} ms of a reference stamp "
                           f"(estimate {span(est.t_s)} s, reference {span(ref.t_s)} s)"
                           + (f"; {bad} matched poses are not finite" if bad else ""))
    Te, Tr = est.T[ie], ref.T[ir]
    T_al, s = _align_fn(Te, Tr, mode)
    Te = _apply_alignment(Te, T_al, s)
    e6 = pose_errors6(Te, Tr)
    dR = np.swapaxes(Tr[:, :3, :3], 1, 2) @ Te[:, :3, :3]
    return AteResult(t_s=est.t_s[ie], idx_est=ie, idx_ref=ir, trans_err_m=np.linalg.norm(e6[:, :3], axis=1),
                     rot_err_rad=_rot_angle(dR), xy_err_m=np.linalg.norm(e6[:, :2], axis=1),
                     yaw_err_rad=wrap_angle(yaw_batch(Te) - yaw_batch(Tr)), err6=e6, align=mode, T_align=T_al, scale=s,
                     n_nonfinite=bad)


_align_fn = align  # ate() has a parameter named ``align``


def _pairs(T: np.ndarray, delta: float, unit: DeltaUnit, all_pairs: bool, rel_tol: float) -> np.ndarray:
    from evo.core import filters
    if unit is DeltaUnit.FRAMES:
        if delta < 1 or float(delta) != int(delta):
            raise MetricsError(f"RPE delta in frames must be a positive integer, got {delta}")
        p = filters.filter_pairs_by_index(list(T), int(delta), all_pairs)
    else:
        if not delta > 0:
            raise MetricsError(f"RPE delta in metres must be > 0, got {delta}")
        p = filters.filter_pairs_by_path(list(T), float(delta), float(delta) * rel_tol, all_pairs)
    return np.asarray(p, int).reshape(-1, 2)


def rpe(est, ref, delta: float = 1.0, unit: DeltaUnit = DeltaUnit.FRAMES, all_pairs: bool = False,
        pairs_from_reference: bool = True, rel_tol: float = 0.1,
        max_dt_s: float = DEFAULT_MAX_DT_S) -> RpeResult:
    """Relative pose error (TUM RGB-D definition, as evo's RPE): for pairs (i, j) of matched poses
    ``delta`` frames or metres of path apart, ``E = (Q_i^-1 Q_j)^-1 (P_i^-1 P_j)``; errors are
    |t(E)| (m) and angle(E) (rad). Pairs are chosen on the reference path by default (evo's
    ``pairs_from_reference``); no alignment is needed (RPE is frame-invariant)."""
    est, ref = _as_traj(est, "estimate"), _as_traj(ref, "reference")
    unit = DeltaUnit(unit)
    ie, ir, _ = _match(est, ref, max_dt_s)
    if ie.size < 2:
        raise MetricsError(f"RPE needs >= 2 matched poses, got {ie.size}")
    P, Q = est.T[ie], ref.T[ir]
    pairs = _pairs(Q if pairs_from_reference else P, delta, unit, all_pairs, rel_tol)
    if len(pairs) == 0:
        raise MetricsError(f"RPE delta {delta} {unit.value} gives no pose pair over {ie.size} matched poses")
    i, j = pairs[:, 0], pairs[:, 1]
    Q_rel = _inv(Q[i]) @ Q[j]
    P_rel = _inv(P[i]) @ P[j]
    E = _inv(Q_rel) @ P_rel
    return RpeResult(pairs=pairs, t_s=est.t_s[ie][j], trans_err_m=np.linalg.norm(E[:, :3, 3], axis=1),
                     rot_err_rad=_rot_angle(E[:, :3, :3]), delta=float(delta), unit=unit)
