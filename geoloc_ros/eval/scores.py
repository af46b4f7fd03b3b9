"""Scores of engines and of the filter's honesty: recall@N, success rate, NEES, interval statistics,
coverage, and the errors of sparse engine fixes against ground truth (no plotting, no ROS).

Re-exported by :mod:`geoloc_ros.eval.metrics`, the module to import.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import chi2

from geoloc_ros.eval.stats import DEFAULT_MAX_DT_S, ErrorStats, MetricsError, clean_stamps, yaw_batch
from geoloc_ros.geometry import wrap_angle

__all__ = ["NeesResult", "recall_at_n", "success_rate", "nees", "interval_stats", "coverage", "fix_errors"]


@dataclass
class NeesResult:
    """Normalised estimation error squared of each sample and its chi-square consistency check."""
    values: np.ndarray           # (M,) NEES per valid sample
    dof: int
    prob: float                  # two-sided probability mass of the bounds
    bound: tuple[float, float]   # per-sample chi2(dof) bounds
    frac_inside: float           # fraction of samples inside ``bound`` (~prob when consistent)
    frac_below_upper: float      # fraction below the upper bound only (overconfidence check)
    mean: float                  # average NEES (~dof when consistent)
    mean_bound: tuple[float, float]  # bounds of the average of M samples: chi2(M*dof)/M
    n_invalid: int               # samples skipped: non-finite error or unusable covariance

    @property
    def consistent(self) -> bool:
        return bool(self.mean_bound[0] <= self.mean <= self.mean_bound[1])


def recall_at_n(retrieved_xy, query_xy, n_values=(1, 5, 10), radius_m: float = 5.0,
                db_xy=None) -> dict[int, float]:
    """Place-recognition recall@N: the fraction of queries with a true match among the top N.

    ``retrieved_xy``: per query, an array (K_i, 2 or 3) of the ranked candidates' positions (best
    first; empty or None when the engine gave nothing: a miss). ``query_xy`` (Q, 2 or 3): the true
    query positions. A retrieval is correct within ``radius_m`` (horizontal). When ``db_xy``
    (D, 2 or 3) is given, queries with no database entry within ``radius_m`` are left out (they
    cannot be recalled), as in the place-recognition literature. Returns {N: recall}; NaN values
    when no query is left.
    """
    q = np.asarray(query_xy, float).reshape(len(retrieved_xy), -1)[:, :2]
    keep = np.ones(len(q), bool)
    if db_xy is not None:
        from scipy.spatial import cKDTree
        db = np.asarray(db_xy, float)
        if db.size:
            db = db.reshape(len(db), -1)[:, :2]
            d, _ = cKDTree(db).query(q, k=1)
            keep = d <= radius_m
        else:
            keep[:] = False
    first_hit = np.full(len(q), np.inf)
    for k, r in enumerate(retrieved_xy):
        if r is None or len(r) == 0:
            continue
        r = np.asarray(r, float).reshape(len(r), -1)[:, :2]
        ok = np.flatnonzero(np.linalg.norm(r - q[k], axis=1) <= radius_m)
        if ok.size:
            first_hit[k] = ok[0] + 1
    m = int(keep.sum())
    return {int(n): (float(np.mean(first_hit[keep] <= n)) if m else float("nan")) for n in n_values}


def success_rate(errors_xy_m, errors_yaw_rad, max_m: float = 2.0, max_rad: float = np.radians(5.0)) -> float:
    """Fraction of attempts whose horizontal error is <= ``max_m`` AND |yaw error| <= ``max_rad``.

    Arrays (N,) align per attempt; NaN marks an attempt that gave no fix (a failure). Returns NaN
    for N = 0.
    """
    exy = np.asarray(errors_xy_m, float).reshape(-1)
    eyaw = np.asarray(errors_yaw_rad, float).reshape(-1)
    if exy.shape != eyaw.shape:
        raise MetricsError(f"success_rate: {exy.size} xy errors but {eyaw.size} yaw errors")
    if exy.size == 0:
        return float("nan")
    with np.errstate(invalid="ignore"):
        ok = (exy <= max_m) & (np.abs(wrap_angle(eyaw)) <= max_rad)
    return float(np.mean(ok))


def nees(errors, covs, prob: float = 0.95) -> NeesResult:
    """NEES ``e^T P^-1 e`` of each sample, with chi-square bounds (``scipy.stats.chi2``).

    ``errors`` (M, k), ``covs`` (M, k, k): select the same components in both (e.g. x, y, yaw:
    ``err6[:, [0, 1, 5]]``, ``cov6[:, [0, 1, 5]][:, :, [0, 1, 5]]``). Samples with a non-finite
    error or a covariance that is not symmetric positive definite are skipped and counted. For a
    consistent filter about ``prob`` of the samples fall inside the per-sample bounds and the mean
    NEES lies inside ``mean_bound``.
    """
    e = np.asarray(errors, float)
    if e.ndim == 1:
        e = e[:, None]
    P = np.asarray(covs, float).reshape(len(e), e.shape[1], e.shape[1])
    k = e.shape[1]
    ok = np.isfinite(e).all(axis=1) & np.isfinite(P).all(axis=(1, 2))
    ok &= np.all(np.abs(P - np.swapaxes(P, 1, 2)) <= 1e-9 + 1e-6 * np.abs(P), axis=(1, 2))
    vals = np.full(len(e), np.nan)
    idx = np.flatnonzero(ok)
    if idx.size and not _all_pd(P[idx]):  # drop the ones that are not positive definite
        idx = idx[np.array([_all_pd(P[i][None]) for i in idx], bool)]
    if idx.size:
        L = np.linalg.cholesky(P[idx])
        y = np.linalg.solve(L, e[idx][:, :, None])[:, :, 0]
        vals[idx] = np.sum(y ** 2, axis=1)
    v = vals[np.isfinite(vals)]
    a = (1.0 - prob) / 2.0
    lo, hi = float(chi2.ppf(a, k)), float(chi2.ppf(1.0 - a, k))
    m = len(v)
    mean_b = (float(chi2.ppf(a, m * k) / m), float(chi2.ppf(1 - a, m * k) / m)) if m else (np.nan, np.nan)
    return NeesResult(values=v, dof=k, prob=prob, bound=(lo, hi),
                      frac_inside=float(np.mean((v >= lo) & (v <= hi))) if m else float("nan"),
                      frac_below_upper=float(np.mean(v <= hi)) if m else float("nan"),
                      mean=float(np.mean(v)) if m else float("nan"), mean_bound=mean_b,
                      n_invalid=int(len(e) - m))


def _all_pd(P: np.ndarray) -> bool:
    try:
        np.linalg.cholesky(P)
        return True
    except np.linalg.LinAlgError:
        return False


def interval_stats(t_s, errors, intervals) -> list[dict]:
    """Error statistics inside each time interval, plus one row for the time outside all of them.

    ``t_s`` (N,) s, ``errors`` (N,) (e.g. ``AteResult.xy_err_m``), ``intervals`` a list of
    ``(t0_s, t1_s, kind)`` (e.g. GNSS fault intervals from the simulator manifest). Returns a list
    of dicts ``{"kind", "t0_s", "t1_s", **ErrorStats}``; the last has kind "outside".
    """
    t = np.asarray(t_s, float).reshape(-1)
    err = np.asarray(errors, float).reshape(-1)
    if t.shape != err.shape:
        raise MetricsError(f"interval_stats: {t.size} stamps but {err.size} errors")
    inside_any = np.zeros(len(t), bool)
    rows = []
    for iv in intervals or []:
        t0, t1 = float(iv[0]), float(iv[1])
        kind = str(iv[2]) if len(iv) > 2 else "interval"
        m = (t >= t0) & (t <= t1)
        inside_any |= m
        rows.append({"kind": kind, "t0_s": t0, "t1_s": t1, **ErrorStats.of(err[m]).as_dict()})
    rows.append({"kind": "outside", "t0_s": float("nan"), "t1_s": float("nan"),
                 **ErrorStats.of(err[~inside_any]).as_dict()})
    return rows


def coverage(t_est, t_ref, max_dt_s: float | None = None) -> float:
    """Fraction of reference stamps that have an estimate within ``max_dt_s`` (NaN for no reference).

    ``max_dt_s`` None: 1.5 x the estimate's median period (at least 10 ms), i.e. the fraction of
    the reference time during which the localizer kept publishing.
    """
    tr = clean_stamps(t_ref, "reference")
    te = np.sort(clean_stamps(t_est, "estimate"))
    if max_dt_s is None:
        max_dt_s = max(DEFAULT_MAX_DT_S, 1.5 * float(np.median(np.diff(te))) if len(te) > 2 else 0.0)
    if tr.size == 0:
        return float("nan")
    if te.size == 0:
        return 0.0
    k = np.clip(np.searchsorted(te, tr), 1, len(te) - 1) if len(te) > 1 else np.zeros(len(tr), int)
    d = np.abs(te[k] - tr)
    if len(te) > 1:
        d = np.minimum(d, np.abs(te[k - 1] - tr))
    return float(np.mean(d <= max_dt_s))


def fix_errors(t_fix, T_fix, t_ref, T_ref, max_gap_s: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal (m) and signed yaw (rad) errors of sparse fixes (e.g. one engine's candidates)
    against a reference interpolated at their stamps (linear + slerp).

    ``T_fix`` (K, 4, 4) may hold NaN poses for queries that gave no fix; those, and fixes outside
    the reference or in a reference gap longer than ``max_gap_s``, get NaN errors (count them as
    failures with :func:`success_rate`). Returns ``(xy_err_m (K,), yaw_err_rad (K,))``.
    """
    from geoloc_ros.geometry import interpolate_poses
    tf = np.asarray(t_fix, float).reshape(-1)
    Tf = np.asarray(T_fix, float).reshape(-1, 4, 4)
    if len(tf) != len(Tf):
        raise MetricsError(f"fix_errors: {len(tf)} stamps but {len(Tf)} poses")
    tr = np.asarray(t_ref, float).reshape(-1)
    Tr = np.asarray(T_ref, float).reshape(-1, 4, 4)
    o = np.argsort(tr, kind="stable")
    ok_t = np.isfinite(tf)
    Tq, valid = interpolate_poses(np.where(ok_t, tf, tr[o][0] if len(tr) else 0.0), tr[o], Tr[o], max_gap_s)
    valid &= ok_t & np.isfinite(Tf).all(axis=(1, 2))
    exy = np.linalg.norm(Tf[:, :2, 3] - Tq[:, :2, 3], axis=1)
    with np.errstate(invalid="ignore"):
        eyaw = wrap_angle(yaw_batch(Tf) - yaw_batch(Tq))
    exy[~valid] = np.nan
    eyaw[~valid] = np.nan
    return exy, eyaw
