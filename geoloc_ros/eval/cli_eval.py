"""``geoloc eval EST.tum GT.tum [--report DIR] [--align none|se3|sim3]``.

Files are TUM; EuRoC ground-truth ``.csv`` and KITTI pose files (12 numbers a row) are recognised.

Prints ATE (in the map frame; the chosen alignment too when it is not ``none``), SE(3)-aligned
ATE, RPE and, when ``EST.npz`` (written by ``geoloc replay`` beside the TUM file) holds per-epoch
covariances, the NEES check; ``--report DIR`` also writes the Markdown/PNG report. Returns the
exit status: 0, or 2 with a one-line message for unusable input (missing or malformed file, no
time overlap).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from geoloc_ros.eval import metrics as M
from geoloc_ros.eval.config import EvalConfig
from geoloc_ros.io.tum import TrajectoryFileError, read_trajectory

__all__ = ["run_eval", "load_estimate", "main"]


def load_estimate(path) -> M.Trajectory:
    """The estimate TUM plus, when ``<stem>.npz`` beside it has matching ``t``/``cov6``, its covariances."""
    path = Path(path)
    t, T = read_trajectory(path)
    cov = None
    side = path.with_suffix(".npz")
    if side.is_file():
        try:
            with np.load(side, allow_pickle=False) as z:
                if "cov6" in z.files and "t" in z.files and len(z["t"]) == len(t) \
                        and np.allclose(z["t"], t, atol=1e-6):
                    cov = np.asarray(z["cov6"], float).reshape(-1, 6, 6)
        except (OSError, ValueError) as e:
            print(f"warning: ignoring {side}: {e}", file=sys.stderr)
    return M.Trajectory(t, T, cov, name=path.stem)


def _row(name: str, st: M.ErrorStats, scale: float = 1.0) -> str:
    f = lambda v: f"{v * scale:10.4f}" if math.isfinite(v) else f"{'-':>10s}"  # noqa: E731
    return f"{name:34s}{f(st.rmse)}{f(st.mean)}{f(st.median)}{f(st.max)}{st.n:8d}"


def run_eval(estimate, groundtruth, report_dir=None, align: str = "none",
             max_dt_s: float | None = None, cfg: EvalConfig | None = None, out=None, faults=None) -> int:
    """Compare an estimate TUM with a ground-truth TUM; print a table; optionally write a report.

    ``faults``: fault intervals ``[(t0_s, t1_s, kind)]`` or manifest dicts, shaded in the report.
    """
    cfg = cfg or EvalConfig()
    out = out or sys.stdout
    dt = cfg.max_dt_s if max_dt_s is None else float(max_dt_s)
    try:
        mode = M.Alignment(str(align).lower())
        est = load_estimate(estimate)
        gt_t, gt_T = read_trajectory(groundtruth)
        gt = M.Trajectory(gt_t, gt_T, name=Path(groundtruth).stem)
        a0 = M.ate(est, gt, M.Alignment.NONE, dt)
    except (TrajectoryFileError, M.MetricsError, ValueError) as e:
        print(f"geoloc eval: {e}", file=sys.stderr)
        return 2
    p = lambda s="": print(s, file=out)  # noqa: E731
    p(f"estimate {estimate}: {len(est)} poses; ground truth {groundtruth}: {len(gt)} poses; "
      f"{a0.n} matched within {dt * 1e3:.0f} ms (coverage {M.coverage(est.t_s, gt.t_s):.2f})")
    p(f"{'metric':34s}{'rmse':>10s}{'mean':>10s}{'median':>10s}{'max':>10s}{'n':>8s}")
    p(_row("ATE trans, no alignment [m]", a0.trans))
    p(_row("ATE horizontal, no alignment [m]", a0.xy))
    p(_row("ATE yaw, no alignment [deg]", a0.yaw, 180.0 / math.pi))
    for m in dict.fromkeys([M.Alignment.SE3, mode]):
        if m is M.Alignment.NONE:
            continue
        try:
            p(_row(f"ATE trans, {m.value}-aligned [m]", M.ate(est, gt, m, dt).trans))
        except M.MetricsError as e:
            p(f"ATE {m.value}-aligned: {e}")
    for delta, unit in ((1, M.DeltaUnit.FRAMES), (cfg.rpe_delta_m, M.DeltaUnit.METERS)):
        try:
            r = M.rpe(est, gt, delta, unit, max_dt_s=dt)
            lbl = f"{delta:g} {unit.value}"
            p(_row(f"RPE trans, {lbl} [m]", r.trans))
            p(_row(f"RPE rot, {lbl} [deg]", r.rot, 180.0 / math.pi))
        except M.MetricsError as e:
            p(f"RPE {delta:g} {unit.value}: {e}")
    max_rad = math.radians(cfg.success_max_yaw_deg)
    p(f"epochs within {cfg.success_max_m:g} m / {cfg.success_max_yaw_deg:g} deg: "
      f"{M.success_rate(a0.xy_err_m, a0.yaw_err_rad, cfg.success_max_m, max_rad):.3f}")
    if est.cov6 is not None:
        d = list(cfg.nees_dims)
        nr = M.nees(a0.err6[:, d], est.cov6[a0.idx_est][:, d][:, :, d], cfg.nees_prob)
        p(f"NEES (dof {nr.dof}): mean {nr.mean:.2f} (consistent in [{nr.mean_bound[0]:.2f}, "
          f"{nr.mean_bound[1]:.2f}]), {nr.frac_inside:.1%} of epochs inside the {nr.prob:.0%} bound"
          + (f", {nr.n_invalid} unusable covariances" if nr.n_invalid else ""))
    if report_dir:
        from geoloc_ros.eval.report import RunResult, write_report
        run = RunResult(name=est.name, est_t=est.t_s, est_T=est.T, gt_t=gt.t_s, gt_T=gt.T, est_cov=est.cov6,
                        faults=list(faults or []))
        path = write_report(Path(report_dir), [run], cfg=cfg, title=f"geoloc eval: {est.name}")
        p(f"report: {path}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="geoloc eval", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("estimate")
    ap.add_argument("groundtruth")
    ap.add_argument("--report", default=None)
    ap.add_argument("--align", default="none", choices=[m.value for m in M.Alignment])
    ap.add_argument("--max-dt", type=float, default=None, help="time matching tolerance [s] (default 0.01)")
    a = ap.parse_args(argv)
    return run_eval(a.estimate, a.groundtruth, report_dir=a.report, align=a.align, max_dt_s=a.max_dt)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
