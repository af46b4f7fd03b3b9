"""Figures of the evaluation report (matplotlib, Agg backend; no display needed).

Every function takes the output path first, draws one PNG and returns True, or returns False when
there is nothing to draw (e.g. no engine statistics). ``ev`` arguments are the dicts of
:func:`geoloc_ros.eval.report.evaluate_run`.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

__all__ = ["plot_trajectory", "plot_errors", "plot_success", "plot_latency", "plot_success_latency",
           "fault_colors"]

_DPI = 130
_FAULT_PALETTE = ["#f4a261", "#e76f51", "#9b5de5", "#2a9d8f", "#e9c46a", "#f15bb5", "#00bbf9"]
_RUN_PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b"]
_STYLE = {"axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.25,
          "font.size": 9, "axes.titlesize": 10, "axes.titleweight": "bold", "legend.fontsize": 8,
          "legend.framealpha": 0.85}


def _faults(run) -> list[tuple[float, float, str]]:
    from geoloc_ros.eval.report import normalize_faults
    return normalize_faults(getattr(run, "faults", None))


def fault_colors(faults) -> dict[str, str]:
    """A stable colour per fault kind (in order of first appearance); ``faults`` as (t0, t1, kind)."""
    kinds: list[str] = []
    for f in faults or []:
        k = str(f[2]) if len(f) > 2 else "fault"
        if k not in kinds:
            kinds.append(k)
    return {k: _FAULT_PALETTE[i % len(_FAULT_PALETTE)] for i, k in enumerate(kinds)}


def _save(fig, path: Path) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return True


def _xy(a) -> np.ndarray | None:
    if a is None:
        return None
    a = np.asarray(a, float)
    if a.size == 0:
        return None
    a = a.reshape(len(a), -1)[:, :2]
    return a[np.isfinite(a).all(axis=1)]


def _segments(xy: np.ndarray, t: np.ndarray, max_gap_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Line segments between consecutive points (broken where the time gap exceeds ``max_gap_s``)."""
    seg = np.stack([xy[:-1], xy[1:]], axis=1)
    keep = np.diff(t) <= max_gap_s
    return seg[keep], keep


# --------------------------------------------------------------------------- trajectory
def plot_trajectory(path, run, ev: dict, background=None, cfg=None) -> bool:
    """Estimate (coloured by horizontal error) over ground truth and the map background."""
    from geoloc_ros.eval.config import EvalConfig
    cfg = cfg or EvalConfig()
    gt_xy = _xy(np.asarray(run.gt_T)[:, :3, 3]) if len(run.gt_t) else None
    est_T = np.asarray(run.est_T, float).reshape(-1, 4, 4)
    if gt_xy is None and len(est_T) == 0:
        return False
    faults = _faults(run)
    with plt.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=(8.0, 7.0))
        pts = [p for p in (gt_xy, _xy(est_T[:, :3, 3]) if len(est_T) else None) if p is not None and len(p)]
        allp = np.concatenate(pts)
        pad = max(1.0, 0.08 * float(np.max(allp.max(0) - allp.min(0))))
        lo, hi = allp.min(0) - pad, allp.max(0) + pad
        bg = background
        if bg is not None:
            mp = _xy(bg.points_xy)
            if mp is not None and len(mp):
                m = np.all((mp >= lo) & (mp <= hi), axis=1)
                mp = mp[m]
            if mp is not None and len(mp):
                cell = max(cfg.map_cell_m, 1e-3)
                nx, ny = (np.ceil((hi - lo) / cell)).astype(int).clip(1, 2000)
                H, xe, ye = np.histogram2d(mp[:, 0], mp[:, 1], bins=[nx, ny], range=[[lo[0], hi[0]], [lo[1], hi[1]]])
                img = np.log1p(H.T)
                ax.imshow(np.ma.masked_equal(img, 0), origin="lower", extent=(xe[0], xe[-1], ye[0], ye[-1]),
                          cmap="Greys", vmin=0, vmax=max(np.percentile(img[img > 0], 99), 1e-6),
                          alpha=0.75, interpolation="nearest", zorder=0)
                ax.plot([], [], "s", color="0.55", ms=6, label="map points (density)")
            kf = _xy(bg.keyframes_xy)
            if kf is not None and len(kf):
                ax.scatter(kf[:, 0], kf[:, 1], s=26, marker="^", facecolors="none", edgecolors="#17becf",
                           linewidths=1.1, alpha=0.95, zorder=6, label="BEV keyframes")
            ob = _xy(bg.objects_xy)
            if ob is not None and len(ob):
                labels = list(bg.object_labels) if bg.object_labels is not None and len(bg.object_labels) == len(ob) \
                    else ["object"] * len(ob)
                for i, cls in enumerate(sorted(set(map(str, labels)))[:10]):
                    sel = np.array([str(x) == cls for x in labels])
                    ax.scatter(ob[sel, 0], ob[sel, 1], s=22, marker="s", color=plt.cm.tab10(i % 10),
                               edgecolors="k", linewidths=0.4, alpha=0.85, zorder=3, label=f"object: {cls}")
        if gt_xy is not None and len(gt_xy):
            ax.plot(gt_xy[:, 0], gt_xy[:, 1], "-", color="k", lw=2.4, alpha=0.55, zorder=4, label="ground truth")
            gt_t = np.asarray(run.gt_t, float)
            for f in faults or []:
                col = fault_colors(faults)[str(f[2]) if len(f) > 2 else "fault"]
                m = (gt_t >= f[0]) & (gt_t <= f[1])
                if m.sum() > 1:
                    ax.plot(gt_xy[m, 0], gt_xy[m, 1], "-", color=col, lw=11, alpha=0.55, zorder=3.5,
                            solid_capstyle="round")
            for k, c in fault_colors(faults).items():
                ax.plot([], [], "-", color=c, lw=7, alpha=0.55, label=f"fault: {k}")
            ax.plot(*gt_xy[0], "o", color="#2ca02c", ms=8, mec="k", zorder=7, label="start")
            ax.plot(*gt_xy[-1], "s", color="#d62728", ms=7, mec="k", zorder=7, label="end")
        a = ev.get("ate") if ev else None
        if a is not None and len(a.t_s) > 1:
            exy = est_T[a.idx_est][:, :2, 3]
            err = a.xy_err_m
            seg, keep = _segments(exy, a.t_s, 1.0)
            vmax = max(cfg.success_max_m, float(np.nanpercentile(err, 95)))
            lc = LineCollection(seg, cmap="plasma", norm=plt.Normalize(0.0, vmax), linewidths=2.0, zorder=5)
            lc.set_array(0.5 * (err[:-1] + err[1:])[keep])
            ax.add_collection(lc)
            cb = fig.colorbar(lc, ax=ax, fraction=0.035, pad=0.02, extend="max")
            cb.set_label("estimate: horizontal error [m]")
            ax.plot([], [], "-", color=plt.cm.plasma(0.3), lw=2, label="estimate (colour = error)")
        elif len(est_T):
            ax.plot(est_T[:, 0, 3], est_T[:, 1, 3], "-", color="#d62728", lw=1.5, zorder=5, label="estimate (unmatched)")
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_aspect("equal")
        ax.set_xlabel("x [m] (map)")
        ax.set_ylabel("y [m] (map)")
        sub = f"ATE rmse {ev['ate_trans_rmse_m']:.2f} m (no alignment)" if ev and "ate_trans_rmse_m" in ev else ""
        ax.set_title(f"{run.name}: estimate vs ground truth" + (f"\n{sub}" if sub else ""))
        ax.legend(loc="upper left", bbox_to_anchor=(1.22, 1.0), borderaxespad=0.0)
        return _save(fig, Path(path))


# --------------------------------------------------------------------------- errors vs time
def _shade_faults(ax, faults, t0: float):
    cols = fault_colors(faults)
    for f in faults or []:
        ax.axvspan(f[0] - t0, f[1] - t0, color=cols[str(f[2]) if len(f) > 2 else "fault"], alpha=0.22, lw=0, zorder=0)


_MODE_COLORS = {"localized": "#2ca02c", "dead_reckoning": "#ff7f0e", "not_localized": "#7f7f7f"}


def _mode_strip(ax, t: np.ndarray, modes) -> list:
    """A thin band along the top of ``ax`` coloured by the filter mode of each epoch; returns legend patches."""
    from matplotlib.transforms import blended_transform_factory
    modes = np.asarray(modes).astype(str)
    if len(modes) != len(t) or len(t) < 2:
        return []
    tr = blended_transform_factory(ax.transData, ax.transAxes)
    change = np.flatnonzero(modes[1:] != modes[:-1]) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(t) - 1]])
    seen = []
    for i0, i1 in zip(starts, ends):
        m = modes[i0]
        ax.add_patch(plt.Rectangle((t[i0], 0.96), max(t[i1] - t[i0], 1e-6), 0.04, transform=tr,
                                   color=_MODE_COLORS.get(m, "#17becf"), lw=0, clip_on=False, zorder=5))
        if m not in seen:
            seen.append(m)
    return [Patch(color=_MODE_COLORS.get(m, "#17becf"), label=f"mode: {m}") for m in seen]


def _robust_lim(*arrays, floor: float) -> float:
    v = np.concatenate([np.abs(np.asarray(a, float)).ravel() for a in arrays if a is not None and np.size(a)] or [[0.0]])
    v = v[np.isfinite(v)]
    return max(floor, 1.25 * float(np.percentile(v, 99.5))) if v.size else floor


def plot_errors(path, run, ev: dict, cfg=None) -> bool:
    """x, y, yaw errors with the +-3 sigma bound of the reported covariance, and the horizontal
    error, against time; fault intervals shaded."""
    from geoloc_ros.eval.config import EvalConfig
    cfg = cfg or EvalConfig()
    a = ev.get("ate") if ev else None
    if a is None or len(a.t_s) == 0:
        return False
    t0 = float(np.min(run.gt_t)) if len(run.gt_t) else float(a.t_s[0])
    t = a.t_s - t0
    e = a.err6
    cov = None if run.est_cov is None else np.asarray(run.est_cov, float).reshape(-1, 6, 6)[a.idx_est]
    faults = _faults(run)
    with plt.rc_context(_STYLE):
        fig, axs = plt.subplots(4, 1, figsize=(9.0, 8.5), sharex=True)
        rows = [(0, "x error [m]", 1.0), (1, "y error [m]", 1.0), (5, "yaw error [deg]", 180.0 / math.pi)]
        for ax, (k, label, s) in zip(axs[:3], rows):
            _shade_faults(ax, faults, t0)
            val = a.yaw_err_rad * s if k == 5 else e[:, k] * s
            sig3 = 3.0 * np.sqrt(np.clip(cov[:, k, k], 0, None)) * s if cov is not None else None
            lim = _robust_lim(val, floor=0.5 if k != 5 else 2.0)
            if sig3 is not None:
                sg = np.minimum(sig3, 10 * lim)
                ax.fill_between(t, -sg, sg, color="#4c78a8", alpha=0.18, lw=0, label="±3σ (reported)")
                ax.plot(t, sg, "-", color="#4c78a8", lw=0.6, alpha=0.7)
                ax.plot(t, -sg, "-", color="#4c78a8", lw=0.6, alpha=0.7)
            ax.axhline(0, color="0.3", lw=0.6)
            ax.plot(t, val, "-", color="#d62728", lw=1.0, label="error")
            ax.set_ylim(-lim, lim)
            ax.set_ylabel(label)
        ax = axs[3]
        _shade_faults(ax, faults, t0)
        if cov is not None:
            lam = np.linalg.eigvalsh(0.5 * (cov[:, :2, :2] + np.swapaxes(cov[:, :2, :2], 1, 2)))[:, -1]
            b = 3.0 * np.sqrt(np.clip(lam, 0, None))
            ax.fill_between(t, 0, b, color="#4c78a8", alpha=0.18, lw=0)
            ax.plot(t, b, "-", color="#4c78a8", lw=0.8, label="3σ (largest horizontal axis)")
        ax.plot(t, a.xy_err_m, "-", color="#d62728", lw=1.1, label="horizontal error")
        ax.axhline(cfg.success_max_m, color="#2ca02c", ls="--", lw=1.0, label=f"success threshold {cfg.success_max_m:g} m")
        ax.set_ylim(0, _robust_lim(a.xy_err_m, floor=cfg.success_max_m * 1.5))
        mode_patches = _mode_strip(ax, t, np.asarray(run.modes)[a.idx_est]) \
            if run.modes is not None and len(run.modes) == len(run.est_t) else []
        ax.set_ylabel("horizontal error [m]")
        ax.set_xlabel(f"time [s] since {t0:.2f}")
        handles, labels = axs[0].get_legend_handles_labels()
        h3, l3 = ax.get_legend_handles_labels()
        handles += [h for h, lb in zip(h3, l3) if lb not in labels]
        labels += [lb for lb in l3 if lb not in labels]
        handles += [Patch(color=c, alpha=0.35, label=f"fault: {k}") for k, c in fault_colors(faults).items()]
        labels += [f"fault: {k}" for k in fault_colors(faults)]
        handles += mode_patches
        labels += [p.get_label() for p in mode_patches]
        rows = math.ceil(len(labels) / 4)
        fig.tight_layout(rect=(0, 0, 1, 0.955 - 0.022 * rows))
        fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 4), bbox_to_anchor=(0.5, 0.965))
        sub = []
        if "ate_trans_rmse_m" in ev:
            sub.append(f"ATE rmse {ev['ate_trans_rmse_m']:.2f} m")
        if "nees_frac_inside" in ev and math.isfinite(ev["nees_frac_inside"]):
            sub.append(f"NEES in {cfg.nees_prob:.0%} bound: {ev['nees_frac_inside']:.0%}")
        fig.suptitle(f"{run.name}: error vs time" + (" — " + ", ".join(sub) if sub else ""),
                     y=0.995, fontweight="bold")
        return _save(fig, Path(path))


# --------------------------------------------------------------------------- success / latency
def _success_axes(axs, evals: list[dict], cfg) -> list | None:
    """Draw the success bars; returns the legend handles (None when there is nothing to draw)."""
    engines = sorted({eng for e in evals for eng in e.get("engines", {})})
    if not engines and not any("success_epochs" in e for e in evals):
        return None
    handles = []
    names = [e["name"] for e in evals]
    x = np.arange(len(names))
    metrics = [("fixes", "fix returned", "#9ecae1"), ("accepted", "accepted by filter", "#4292c6"),
               ("correct", f"correct (≤{cfg.success_max_m:g} m, ≤{cfg.success_max_yaw_deg:g}°)", "#08519c")]
    for ax, eng in zip(axs, engines + ["epochs"]):
        if eng == "epochs":
            v = [e.get("success_epochs", float("nan")) for e in evals]
            bars = ax.bar(x, np.nan_to_num(v), width=0.55, color="#31a354")
            for b, val in zip(bars, v):
                ax.text(b.get_x() + b.get_width() / 2, b.get_height() + 0.02,
                        "–" if not math.isfinite(val) else f"{val:.0%}", ha="center", fontsize=8)
            ax.set_title("filter output: epochs within thresholds")
        else:
            w = 0.8 / len(metrics)
            for j, (key, label, col) in enumerate(metrics):
                vals, txt = [], []
                for e in evals:
                    r = e.get("engines", {}).get(eng, {})
                    q = r.get("scored", r.get("queries", 0)) if key == "correct" else r.get("queries", 0)
                    n = r.get(key)
                    vals.append(n / q if (n is not None and q) else np.nan)
                    txt.append("n/a" if n is None else f"{n}/{q}")
                bars = ax.bar(x + (j - 1) * w, np.nan_to_num(vals), width=w * 0.95, color=col, label=label)
                if len(handles) < len(metrics):
                    handles.append(bars)
                for b, tx in zip(bars, txt):
                    ax.text(b.get_x() + b.get_width() / 2, b.get_height() + 0.02, tx, ha="center",
                            fontsize=6.5, rotation=90 if len(evals) > 3 else 0)
            ax.set_title({"bev": "BEV place recognition", "objects": "object-map alignment"}.get(eng, eng))
        ax.set_xticks(x, names, rotation=20 if len(names) > 2 else 0, ha="right" if len(names) > 2 else "center")
        ax.set_ylim(0, 1.15)
        ax.set_ylabel("fraction of queries" if eng != "epochs" else "fraction of epochs")
    return handles


def plot_success(path, evals: list[dict], cfg=None) -> bool:
    """Bars per run and engine: fix returned / accepted / correct as fractions of the queries,
    plus the filter's epochs within the success thresholds."""
    from geoloc_ros.eval.config import EvalConfig
    cfg = cfg or EvalConfig()
    engines = sorted({eng for e in evals for eng in e.get("engines", {})})
    n = len(engines) + 1
    with plt.rc_context(_STYLE):
        fig, axs = plt.subplots(1, n, figsize=(3.6 * n + 0.6, 3.8), squeeze=False)
        handles = _success_axes(list(axs[0]), evals, cfg)
        if handles is None:
            plt.close(fig)
            return False
        fig.suptitle("Global localization success", fontweight="bold")
        fig.tight_layout(rect=(0, 0, 1, 0.9))
        if handles:
            fig.legend(handles=handles, loc="upper center", ncol=len(handles), bbox_to_anchor=(0.5, 0.93))
        return _save(fig, Path(path))


def _latency_axes(ax, evals: list[dict]) -> bool:
    stages = []
    for e in evals:
        for s in e.get("latency_ms", {}):
            if s not in stages:
                stages.append(s)
    if not stages:
        return False
    k = len(evals)
    h = 0.8 / k
    for i, e in enumerate(evals):
        data, pos = [], []
        for j, s in enumerate(stages):
            v = np.asarray(e.get("latency_ms", {}).get(s, []), float)
            v = v[np.isfinite(v) & (v > 0)]
            if v.size:
                data.append(v)
                pos.append(j + (i - (k - 1) / 2) * h)
        if not data:
            continue
        col = _RUN_PALETTE[i % len(_RUN_PALETTE)]
        bp = ax.boxplot(data, positions=pos, widths=h * 0.85, orientation="horizontal", patch_artist=True, showfliers=True,
                        flierprops={"marker": ".", "markersize": 2, "alpha": 0.4, "markeredgecolor": col},
                        medianprops={"color": "k"}, manage_ticks=False)
        for b in bp["boxes"]:
            b.set_facecolor(col)
            b.set_alpha(0.55)
        ax.plot([], [], "s", color=col, alpha=0.6, label=e["name"])
    ax.set_yticks(range(len(stages)), stages)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("latency per call [ms] (log scale)")
    ax.set_title("Latency per stage")
    if k > 1:
        ax.legend(loc="lower right")
    return True


def plot_latency(path, evals: list[dict]) -> bool:
    """Horizontal box plots of the per-call latency of every stage (one colour per run)."""
    stages = {s for e in evals for s in e.get("latency_ms", {})}
    if not stages:
        return False
    with plt.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=(8.0, 1.2 + 0.45 * len(stages) * max(1, len(evals)) ** 0.5))
        _latency_axes(ax, evals)
        fig.tight_layout()
        return _save(fig, Path(path))


def plot_success_latency(path, evals: list[dict], cfg=None) -> bool:
    """The demo's one-glance figure: engine success bars (top) and latency per stage (bottom)."""
    from geoloc_ros.eval.config import EvalConfig
    cfg = cfg or EvalConfig()
    engines = sorted({eng for e in evals for eng in e.get("engines", {})})
    stages = {s for e in evals for s in e.get("latency_ms", {})}
    n = len(engines) + 1
    with plt.rc_context(_STYLE):
        fig = plt.figure(figsize=(max(3.6 * n, 8.0), 4.0 + 0.4 * max(len(stages), 2)))
        gs = fig.add_gridspec(2, n, height_ratios=[1.0, 0.25 + 0.12 * max(len(stages), 2)])
        top = [fig.add_subplot(gs[0, i]) for i in range(n)]
        handles = _success_axes(top, evals, cfg)
        ok2 = _latency_axes(fig.add_subplot(gs[1, :]), evals)
        if handles is None and not ok2:
            plt.close(fig)
            return False
        fig.suptitle("Global localization: success and latency", fontweight="bold")
        fig.tight_layout(rect=(0, 0, 1, 0.93))
        if handles:
            fig.legend(handles=handles, loc="upper center", ncol=len(handles), bbox_to_anchor=(0.5, 0.955))
        return _save(fig, Path(path))
