"""Trajectory files: TUM (read/write), KITTI poses and EuRoC ground-truth csv (read).

A trajectory here is a pair ``(t_s (N,), T (N, 4, 4))``: float seconds and poses ``T_frame_body``
(for our own files ``T_map_base``, REP-105). Quaternions in files are normalised on reading; a row
that is malformed, non-finite or has a degenerate quaternion is a :class:`TrajectoryFileError`
naming the file and the line, never a traceback from numpy.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from geoloc_ros.geometry import matrix_to_quat, quat_to_matrix

__all__ = ["TrajectoryFileError", "read_tum", "write_tum", "read_kitti_poses", "read_euroc_csv", "read_trajectory"]

_SPLIT = re.compile(r"[,\s]+")
#: a quaternion whose norm is further than this from 1 is taken for a corrupt row, not rounding
_QUAT_NORM_TOL = 0.1


class TrajectoryFileError(ValueError):
    """A trajectory file that cannot be used; the message names the file (and line)."""


def _rows(path: Path, ncols: int, what: str, skip_header: bool = False):
    """Yield (line_no, floats) for each data row; '#' comments and blank lines are skipped."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise TrajectoryFileError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TrajectoryFileError(f"{path}: cannot read {what} file ({e})") from None
    header_skipped = not skip_header
    for no, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if not header_skipped:
            header_skipped = True
            if re.match(r"^[A-Za-z_]", s):  # a csv header without '#'
                continue
        parts = [p for p in _SPLIT.split(s) if p]
        if len(parts) != ncols:
            raise TrajectoryFileError(
                f"{path}:{no}: expected {ncols} numbers per {what} row, got {len(parts)}: {s[:80]!r}")
        try:
            vals = [float(p) for p in parts]
        except ValueError:
            raise TrajectoryFileError(f"{path}:{no}: not a number in {what} row: {s[:80]!r}") from None
        if not all(math.isfinite(v) for v in vals):
            raise TrajectoryFileError(f"{path}:{no}: NaN or infinite value in {what} row: {s[:80]!r}")
        yield no, vals


def _quat_rows_to_poses(path: Path, lines: list[int], xyz: np.ndarray, q_xyzw: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(q_xyzw, axis=1)
    bad = np.flatnonzero(np.abs(n - 1.0) > _QUAT_NORM_TOL)
    if bad.size:
        i = int(bad[0])
        raise TrajectoryFileError(
            f"{path}:{lines[i]}: quaternion norm {n[i]:.4g} is not 1 (corrupt row or wrong column order?)")
    T = np.tile(np.eye(4), (len(xyz), 1, 1))
    if len(xyz):
        T[:, :3, :3] = quat_to_matrix(q_xyzw / n[:, None])
        T[:, :3, 3] = xyz
    return T


def _check_order(path: Path, lines: list[int], t: np.ndarray, sort: bool) -> np.ndarray:
    """Indices putting ``t`` in time order; decreasing stamps raise unless ``sort``."""
    back = np.flatnonzero(np.diff(t) < 0)
    if back.size and not sort:
        i = int(back[0]) + 1
        raise TrajectoryFileError(
            f"{path}:{lines[i]}: timestamp {t[i]:.6f} s goes back in time (previous {t[i - 1]:.6f} s); "
            "pass sort=True to reorder")
    return np.argsort(t, kind="stable")


def read_tum(path, sort: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read a TUM file (``t x y z qx qy qz qw`` per line, '#' comments allowed).

    Returns ``t_s`` (N,) float seconds and ``T`` (N, 4, 4). Stamps going back in time are an error
    unless ``sort`` (then rows are reordered, stably). An empty file gives N = 0.
    """
    path = Path(path)
    lines, vals = [], []
    for no, v in _rows(path, 8, "TUM"):
        lines.append(no)
        vals.append(v)
    a = np.asarray(vals, float).reshape(-1, 8)
    T = _quat_rows_to_poses(path, lines, a[:, 1:4], a[:, 4:8])
    order = _check_order(path, lines, a[:, 0], sort)
    return a[order, 0].copy(), T[order]


def write_tum(path, t_s, T, header: str | None = None) -> Path:
    """Write ``t_s`` (N,) s and poses ``T`` (N, 4, 4) as a TUM file (quaternion x, y, z, w; w >= 0).

    Non-finite stamps or poses are refused (a ValueError naming the first bad row) rather than
    written as 'nan' that no reader accepts. Parent folders are created.
    """
    path = Path(path)
    t = np.asarray(t_s, float).reshape(-1)
    T = np.asarray(T, float).reshape(-1, 4, 4)
    if len(t) != len(T):
        raise ValueError(f"write_tum({path}): {len(t)} stamps but {len(T)} poses")
    finite = np.isfinite(t) & np.isfinite(T).all(axis=(1, 2))
    if not finite.all():
        raise ValueError(f"write_tum({path}): row {int(np.flatnonzero(~finite)[0])} is not finite")
    path.parent.mkdir(parents=True, exist_ok=True)
    q = matrix_to_quat(T[:, :3, :3]) if len(T) else np.zeros((0, 4))
    data = np.column_stack([t, T[:, :3, 3], q]) if len(T) else np.zeros((0, 8))
    head = "timestamp tx ty tz qx qy qz qw" if header is None else header
    np.savetxt(path, data, fmt=["%.9f"] + ["%.9f"] * 7, header=head, comments="# ")
    return path


def read_kitti_poses(path, times_path=None, rate_hz: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """Read KITTI odometry poses (12 numbers per row: row-major 3x4 ``[R|t]``).

    Stamps come from ``times_path`` (one float per line, KITTI ``times.txt``) when given, else
    ``index / rate_hz``. Returns ``t_s`` (N,), ``T`` (N, 4, 4). Rotations are taken as they are.
    """
    path = Path(path)
    rows = [v for _, v in _rows(path, 12, "KITTI pose")]
    a = np.asarray(rows, float).reshape(-1, 12)
    T = np.tile(np.eye(4), (len(a), 1, 1))
    T[:, :3, :] = a.reshape(-1, 3, 4)
    if times_path is None:
        t = np.arange(len(a)) / float(rate_hz)
    else:
        tp = Path(times_path)
        lines, ts = [], []
        for no, v in _rows(tp, 1, "time"):
            lines.append(no)
            ts.append(v[0])
        t = np.asarray(ts, float)
        if len(t) != len(a):
            raise TrajectoryFileError(f"{tp}: {len(t)} stamps for {len(a)} poses in {path}")
        _check_order(tp, lines, t, sort=False)
    return t, T


def read_euroc_csv(path) -> tuple[np.ndarray, np.ndarray]:
    """Read an EuRoC ground-truth csv (``t_ns, px, py, pz, qw, qx, qy, qz, ...`` 17 columns, or 8).

    Returns ``t_s`` (N,) seconds and ``T_world_body`` (N, 4, 4).
    """
    path = Path(path)
    try:
        first = next((ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")), "")
    except (OSError, UnicodeDecodeError) as e:
        raise TrajectoryFileError(f"{path}: cannot read EuRoC csv ({e})") from None
    ncols = len([p for p in _SPLIT.split(first.strip()) if p]) if first else 17
    if ncols not in (8, 17):
        ncols = 17
    lines, vals = [], []
    for no, v in _rows(path, ncols, "EuRoC csv", skip_header=True):
        lines.append(no)
        vals.append(v[:8])
    a = np.asarray(vals, float).reshape(-1, 8)
    t = a[:, 0] * 1e-9
    T = _quat_rows_to_poses(path, lines, a[:, 1:4], a[:, [5, 6, 7, 4]])
    _check_order(path, lines, t, sort=False)
    return t, T


def poses_to_tum_rows(t_s, T) -> np.ndarray:
    """(N, 8) array ``t x y z qx qy qz qw`` (handy for tables and tests)."""
    T = np.asarray(T, float).reshape(-1, 4, 4)
    return np.column_stack([np.asarray(t_s, float), T[:, :3, 3], matrix_to_quat(T[:, :3, :3])])


def read_trajectory(path) -> tuple[np.ndarray, np.ndarray]:
    """Read TUM, EuRoC csv (``.csv``) or KITTI poses (12 numbers per row, stamped at 10 Hz), by content."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return read_euroc_csv(path)
    try:
        with open(path, "r", errors="replace") as f:
            first = next((ln for ln in f if ln.strip() and not ln.lstrip().startswith("#")), "")
    except OSError as e:
        raise TrajectoryFileError(f"{path}: cannot read ({e})") from None
    if len([p for p in _SPLIT.split(first.strip()) if p]) == 12:
        return read_kitti_poses(path)
    return read_tum(path)
