"""BEV place recognition benchmark (`geoloc bench bev`): REIN vs Scan Context vs FPFH + RANSAC.

A simulated town (world seed 42, not a training world) is mapped along every road (right-hand lane,
keyframe every ``spacing`` m); queries come from another pass in the changed world (moved cars and
bins): ``same`` direction, ``reverse`` direction, ``lateral`` 2-4 m offset. All methods answer the
same queries. ``GEOLOC_BENCH_BEV_WEIGHTS=path`` benchmarks candidate weights instead of the shipped
ones. Metrics (``bench_out/bev.json``):

* ``rein|scancontext.recall1|recall5.<kind>``: a retrieved keyframe within 5 m of the truth;
* ``rein.recall1_reranked.<kind>``: the keyframe of REIN's answer after the pose re-ranking (most
  inliers among the ``top_k`` retrieved, gates passed) within 5 m (a no-fix counts as a miss);
* ``rein|scancontext|fpfh.success.<kind>`` (< 2 m and < 5 deg) and ``.median_err_m|deg.<kind>``;
  FPFH + RANSAC registers the query against the keyframe nearest to the ground truth;
* ``rein.latency_ms.<stage>.p50|p95`` (bev_image, network, keypoints, retrieval, pose, total wall clock;
  cpu_total: the process CPU time over the query, worker thread included, which other work on a
  shared CPU does not inflate; network and keypoints overlap with ``bev.query_threads`` 2),
  ``rein.latency_ms.p95`` (whole query), ``fpfh.latency_ms.p50|p95``, ``scancontext.latency_ms.p50``;
* ``retrieval_ms.flat|ivf.<N>`` per query over N random 256-D descriptors (1k..1M; 1M in full mode) and
  ``retrieval.ivf_agree.<N>``, the fraction of queries whose IVF first answer is the exact one;
* ``fpfh.latency_ms.cpu.p50`` (process CPU time), ``rein.speedup_vs_fpfh.p50|cpu_p50``;
* ``rein.nees_in_bound``: fraction of OK poses whose 3-DoF NEES is inside the 95 % chi-square bound;
* ``rein.no_fix.<kind>`` / ``rein.wrong_fix.<kind>``: fraction of queries answered NO_FIX / answered
  OK but outside 2 m, 5 deg; ``rein.unmapped_ok``: fraction of as many queries from another town
  (world 43, same roads' kind, not mapped) answered OK (each one a confident wrong fix);
  ``rein.impostor_floor``: the fewest inliers a fix needs in this map (from the wrong poses the map
  gives its own keyframes, ``BevDatabase.calibrate_impostors``).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import print_table, write_result

KINDS = ("same", "reverse", "lateral")


def _err(T_est: np.ndarray, T_gt: np.ndarray) -> tuple[float, float]:
    from geoloc_ros.geometry import wrap_angle, yaw_of
    return (float(np.linalg.norm(T_est[:2, 3] - T_gt[:2, 3])),
            float(abs(np.degrees(wrap_angle(yaw_of(T_est) - yaw_of(T_gt))))))


def _fpfh_register(src_pts: np.ndarray, tgt_pts: np.ndarray, voxel: float = 1.0) -> np.ndarray:
    """open3d FPFH + RANSAC (mutual filter) then point-to-point ICP refinement: T_tgt_src (4, 4)."""
    import open3d as o3d
    reg = o3d.pipelines.registration

    def prep(p):
        pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(p)).voxel_down_sample(voxel)
        pc.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=2 * voxel, max_nn=30))
        f = reg.compute_fpfh_feature(pc, o3d.geometry.KDTreeSearchParamHybrid(radius=5 * voxel, max_nn=100))
        return pc, f
    s, fs = prep(src_pts)
    t, ft = prep(tgt_pts)
    res = reg.registration_ransac_based_on_feature_matching(
        s, t, fs, ft, True, 1.5 * voxel, reg.TransformationEstimationPointToPoint(False), 3,
        [reg.CorrespondenceCheckerBasedOnEdgeLength(0.9), reg.CorrespondenceCheckerBasedOnDistance(1.5 * voxel)],
        reg.RANSACConvergenceCriteria(100000, 0.999))
    icp = reg.registration_icp(s, t, voxel, res.transformation, reg.TransformationEstimationPointToPoint())
    return np.asarray(icp.transformation)


def _retrieval_scaling(sizes, cfg, dim: int = 256, n_queries: int = 50) -> dict:
    """Per-query search time over N random unit descriptors, flat and IVF (``nlist`` = min(cfg.ivf_nlist,
    4 sqrt(N)), ``cfg.ivf_nprobe``), and how often IVF's first answer is the exact (flat) one."""
    from geoloc_ros.bev.database import make_index
    rng = np.random.default_rng(0)
    out = {}
    for n in sizes:
        X = rng.standard_normal((n, dim), dtype=np.float32)
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        Q = X[rng.choice(n, n_queries)] + 0.05 * rng.standard_normal((n_queries, dim), dtype=np.float32)
        Q /= np.linalg.norm(Q, axis=1, keepdims=True)
        first = {}
        for kind in ("flat", "ivf"):
            idx = make_index(X, kind, nlist=min(cfg.ivf_nlist, max(16, int(4 * np.sqrt(n)))),
                             nprobe=cfg.ivf_nprobe, use_gpu=False, train_max=40_000)
            idx.search(Q[:1], 5)
            t = time.perf_counter()
            first[kind] = [int(idx.search(q[None], 5)[1][0, 0]) for q in Q]
            out[f"retrieval_ms.{kind}.{n}"] = (time.perf_counter() - t) / len(Q) * 1e3
            del idx
        out[f"retrieval.ivf_agree.{n}"] = float(np.mean(np.array(first["ivf"]) == np.array(first["flat"])))
        del X
    return out


def run(out_dir: Path = Path("bench_out"), quick: bool = False) -> dict:
    import torch
    from scipy.stats import chi2

    from geoloc_ros.bev import simdata
    from geoloc_ros.bev.config import BevConfig
    from geoloc_ros.bev.database import BevDatabase
    from geoloc_ros.bev.engine import BevLocalizer
    from geoloc_ros.bev.features import extract_features
    from geoloc_ros.bev.image import bev_image, level_points
    from geoloc_ros.bev.rein import load_rein
    from geoloc_ros.bev.scan_context import ScanContextDB
    from geoloc_ros.events import CandidateStatus
    from geoloc_ros.geometry import rot_z, se3, wrap_angle, yaw_of
    from geoloc_ros.sim.world import make_world

    t_start = time.time()
    torch.set_num_threads(1)
    cfg = BevConfig(weights=os.environ.get("GEOLOC_BENCH_BEV_WEIGHTS", ""))   # candidate weights, else shipped
    net = load_rein(cfg)
    seed = 42
    n_q = 12 if quick else 60
    spacing = 2.0 if quick else 1.0
    world = make_world(seed, size_m=120.0 if quick else 200.0)
    changed = world.move_objects(0.2, seed=seed)
    rng = np.random.default_rng(seed)
    map_poses = simdata.road_poses(world, spacing)
    print(f"bench bev: world {seed}, {len(map_poses)} keyframes every {spacing} m, {n_q} queries per kind",
          flush=True)
    db = BevDatabase(cfg, net)
    sc = ScanContextDB()
    kf_pts = []
    for T in map_poses:
        ev = simdata.scan_event(simdata.cast_scan(world, T, rng))
        pts = level_points(ev)
        db.add_keyframe(extract_features(net, bev_image(pts, cfg), cfg), T)
        sc.add(pts, T)
        kf_pts.append(pts)
    t_cal = time.perf_counter()
    imp = db.calibrate_impostors()
    print(f"  impostor calibration: {len(imp)} wrong poses, max {int(imp.max()) if len(imp) else 0} inliers, "
          f"fixes need {db.impostor_floor()} ({time.perf_counter() - t_cal:.1f} s)", flush=True)
    loc = BevLocalizer(cfg, db, net)
    kf_xy = map_poses[:, :2, 3]
    m: dict[str, float] = {}
    stage_t = {k: [] for k in ("bev_image", "network", "keypoints", "retrieval", "pose", "total", "cpu_total")}
    fp_t, fp_cpu, sc_t, nees_in, nees_all = [], [], [], [], []
    bound = chi2.ppf(0.95, 3)
    rows = []
    for kind in KINDS:
        qposes = simdata.revisit_queries(changed, kind, n_q, rng)
        r1 = r5 = s1 = s5 = r1rr = 0
        rs, ss, fs = [], [], []
        e_rein, e_sc, e_fp = [], [], []
        for Tq in qposes:
            ev = simdata.scan_event(simdata.cast_scan(changed, Tq, rng))
            pts = level_points(ev)
            # REIN (+ pose)
            cands = loc.localize(ev)
            for k, v in loc.last_timings_ms.items():
                stage_t[k].append(v)
            idx = loc.last_retrieval[0]
            d = np.linalg.norm(kf_xy[idx] - Tq[:2, 3], axis=1) if len(idx) else np.array([np.inf])
            r1 += bool(d[0] < 5.0)
            r5 += bool((d[:5] < 5.0).any())
            c = cands[0]
            if c.status == CandidateStatus.OK:
                r1rr += bool(np.linalg.norm(kf_xy[c.info["keyframe"]] - Tq[:2, 3]) < 5.0)
                et, ey = _err(c.T_map_base, Tq)
                e_rein.append((et, ey))
                e = np.array([c.T_map_base[0, 3] - Tq[0, 3], c.T_map_base[1, 3] - Tq[1, 3],
                              float(wrap_angle(yaw_of(c.T_map_base) - yaw_of(Tq)))])
                P = c.cov6[np.ix_([0, 1, 5], [0, 1, 5])]
                nees_all.append(float(e @ np.linalg.solve(P, e)))
                nees_in.append(nees_all[-1] <= bound)
                rs.append(et < 2.0 and ey < 5.0)
            else:
                e_rein.append((np.inf, np.inf))
                rs.append(False)
            # Scan Context (+ yaw from shift)
            t = time.perf_counter()
            res = sc.query(pts)
            sc_t.append((time.perf_counter() - t) * 1e3)
            ds = [np.linalg.norm(kf_xy[i] - Tq[:2, 3]) for i, _, _ in res] or [np.inf]
            s1 += bool(ds[0] < 5.0)
            s5 += bool(min(ds[:5]) < 5.0)
            et, ey = _err(sc.pose(res[0]), Tq) if res else (np.inf, np.inf)
            e_sc.append((et, ey))
            ss.append(et < 2.0 and ey < 5.0)
            # FPFH + RANSAC against the keyframe nearest to the truth
            j = int(np.argmin(np.linalg.norm(kf_xy - Tq[:2, 3], axis=1)))
            t, tc = time.perf_counter(), time.process_time()
            T_kq = _fpfh_register(pts, kf_pts[j])
            fp_t.append((time.perf_counter() - t) * 1e3)
            fp_cpu.append((time.process_time() - tc) * 1e3)
            kf = map_poses[j]
            T_est = se3(rot_z(np.arctan2(kf[1, 0], kf[0, 0])), kf[:3, 3]) @ T_kq
            et, ey = _err(T_est, Tq)
            e_fp.append((et, ey))
            fs.append(et < 2.0 and ey < 5.0)
        m[f"rein.no_fix.{kind}"] = float(np.mean([not np.isfinite(e[0]) for e in e_rein]))
        m[f"rein.wrong_fix.{kind}"] = float(np.mean([np.isfinite(e[0]) and not ok for e, ok in zip(e_rein, rs)]))
        m[f"rein.recall1.{kind}"] = r1 / n_q
        m[f"rein.recall1_reranked.{kind}"] = r1rr / n_q
        m[f"rein.recall5.{kind}"] = r5 / n_q
        m[f"scancontext.recall1.{kind}"] = s1 / n_q
        m[f"scancontext.recall5.{kind}"] = s5 / n_q
        for name, succ, errs in (("rein", rs, e_rein), ("scancontext", ss, e_sc), ("fpfh", fs, e_fp)):
            errs = np.array(errs)
            m[f"{name}.success.{kind}"] = float(np.mean(succ))
            m[f"{name}.median_err_m.{kind}"] = float(np.median(errs[:, 0]))
            m[f"{name}.median_err_deg.{kind}"] = float(np.median(errs[:, 1]))
        rows.append([kind, m[f"rein.recall1.{kind}"], m[f"scancontext.recall1.{kind}"],
                     m[f"rein.recall5.{kind}"], m[f"scancontext.recall5.{kind}"],
                     m[f"rein.success.{kind}"], m[f"scancontext.success.{kind}"], m[f"fpfh.success.{kind}"],
                     m[f"rein.median_err_m.{kind}"], m[f"fpfh.median_err_m.{kind}"]])
        print(f"  {kind}: done ({time.time() - t_start:.0f} s)", flush=True)
    other = make_world(seed + 1, size_m=120.0 if quick else 200.0)     # a town the map does not hold
    unmapped = [loc.localize(simdata.scan_event(simdata.cast_scan(other, Tq, rng)))[0].status == CandidateStatus.OK
                for Tq in simdata.revisit_queries(other, "same", n_q, rng)]
    m["rein.unmapped_ok"] = float(np.mean(unmapped))
    m["rein.impostor_floor"] = float(db.impostor_floor())
    print(f"  unmapped town: {sum(unmapped)} of {n_q} queries answered OK (each a wrong fix)", flush=True)
    for k, v in stage_t.items():
        m[f"rein.latency_ms.{k}.p50"] = float(np.percentile(v, 50))
        m[f"rein.latency_ms.{k}.p95"] = float(np.percentile(v, 95))
    m["rein.latency_ms.p50"] = m["rein.latency_ms.total.p50"]
    m["rein.latency_ms.p95"] = m["rein.latency_ms.total.p95"]
    m["fpfh.latency_ms.p50"] = float(np.percentile(fp_t, 50))
    m["fpfh.latency_ms.p95"] = float(np.percentile(fp_t, 95))
    m["scancontext.latency_ms.p50"] = float(np.percentile(sc_t, 50))
    m["fpfh.latency_ms.cpu.p50"] = float(np.percentile(fp_cpu, 50))       # all threads of the process
    m["rein.speedup_vs_fpfh.p50"] = m["fpfh.latency_ms.p50"] / m["rein.latency_ms.p50"]
    m["rein.speedup_vs_fpfh.cpu_p50"] = m["fpfh.latency_ms.cpu.p50"] / m["rein.latency_ms.cpu_total.p50"]
    m["rein.nees_in_bound"] = float(np.mean(nees_in)) if nees_in else float("nan")
    m["rein.nees_median"] = float(np.median(nees_all)) if nees_all else float("nan")
    m["rein.keyframes"] = float(len(db))
    m["host.loadavg_1min"] = float(os.getloadavg()[0])      # other work on this CPU inflates latencies
    sizes = (1000, 10_000, 100_000) if quick else (1000, 10_000, 100_000, 1_000_000)
    m.update(_retrieval_scaling(sizes, cfg))
    print()
    print_table(["kind", "REIN R@1", "SC R@1", "REIN R@5", "SC R@5", "REIN succ", "SC succ", "FPFH succ",
                 "REIN med m", "FPFH med m", "REIN no fix", "REIN wrong", "REIN R@1 rr"],
                [r + [m[f"rein.no_fix.{r[0]}"], m[f"rein.wrong_fix.{r[0]}"], m[f"rein.recall1_reranked.{r[0]}"]]
                 for r in rows],
                title="BEV place recognition (success: < 2 m and < 5 deg; R@1 rr: after the pose re-ranking)")
    print()
    print_table(["stage", "p50 ms", "p95 ms"],
                [[k, m[f"rein.latency_ms.{k}.p50"], m[f"rein.latency_ms.{k}.p95"]] for k in stage_t]
                + [["fpfh+ransac", m["fpfh.latency_ms.p50"], m["fpfh.latency_ms.p95"]],
                   ["fpfh+ransac cpu", m["fpfh.latency_ms.cpu.p50"], float("nan")],
                   ["scan context", m["scancontext.latency_ms.p50"], float("nan")]],
                title=f"latency per query on this CPU ({cfg.torch_threads} torch thread(s), {cfg.query_threads} query "
                      f"thread(s): network and keypoints overlap; FPFH: open3d on every core)")
    print(f"REIN query vs FPFH+RANSAC, p50: {m['rein.speedup_vs_fpfh.p50']:.1f}x faster wall clock, "
          f"{m['rein.speedup_vs_fpfh.cpu_p50']:.1f}x less CPU time (target 10x)")
    print()
    print_table(["descriptors", "flat ms", "ivf ms", "ivf = flat top-1"],
                [[n, m[f"retrieval_ms.flat.{n}"], m[f"retrieval_ms.ivf.{n}"], m[f"retrieval.ivf_agree.{n}"]]
                 for n in sizes],
                title="retrieval time per query vs database size (256-D)")
    print(f"\nNEES inside 95% bound: {m['rein.nees_in_bound']:.2f} of {len(nees_in)} OK poses "
          f"(median {m['rein.nees_median']:.2f}, chi2(3) median 2.37); load average {m['host.loadavg_1min']:.1f}")
    seconds = time.time() - t_start
    cmd = "geoloc bench bev" + (" --quick" if quick else "")
    write_result("bev", m, cmd, seconds, out_dir)
    return m


if __name__ == "__main__":
    run(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("bench_out"), quick="--quick" in sys.argv)
