"""Benchmark of the LiDAR odometry (geoloc_ros.odometry): per-scan latency on one core, accuracy
on real scans and on a simulated Oxford Spires run, and what it does for the Localizer there.

1. Six real KITTI HDL-64E scans (../shared/realdata/kitti_velodyne_patchwork): each step against
   open3d point-to-plane ICP (0.2 m voxels); latency per scan.
2. The real fast_gicp pair (../shared/realdata/fast_gicp_scans): error against relative.txt.
3. The ``tiny`` scenario's loc_lateral run in the Oxford Spires layout (Hesai QT64, 10 Hz):
   latency per scan, per-scan motion error against ground truth, velocity NEES, and the
   Localizer's ATE (no map, from the true initial pose) with and without LiDAR odometry.

``python -m bench.odometry [--quick]`` or ``geoloc bench odometry``. Latencies are wall time and
process CPU time per ``LidarOdometry.step`` (one thread; a loaded machine inflates the wall time).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from bench.common import print_table, write_result
from geoloc_ros.events import ImuEvent, PoseFixEvent, ScanEvent
from geoloc_ros.odometry.config import OdometryConfig
from geoloc_ros.odometry.lidar import LidarOdometry

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"


def _pct(x, q):
    x = np.asarray([v for v in x if np.isfinite(v)], float)
    return float(np.percentile(x, q)) if len(x) else float("nan")


def _rot_deg(R) -> float:
    from scipy.spatial.transform import Rotation
    return float(np.degrees(np.linalg.norm(Rotation.from_matrix(R).as_rotvec())))


def reference_cloud(p: np.ndarray):
    """(N, 3) scan -> open3d cloud for the reference ICP: 1-80 m, 0.2 m voxels, normals."""
    import open3d as o3d
    p = np.asarray(p, float)
    r = np.linalg.norm(p, axis=1)
    c = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(p[(r > 1.0) & (r < 80.0)])).voxel_down_sample(0.2)
    c.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=1.0, max_nn=30))
    return c


def kitti(m: dict) -> list:
    import open3d as o3d
    reg = o3d.pipelines.registration
    files = sorted((REAL / "kitti_velodyne_patchwork").glob("*.bin"))
    scans = [np.fromfile(f, np.float32).reshape(-1, 4)[:, :3] for f in files]
    odo = LidarOdometry(OdometryConfig(max_range_m=80.0))
    res = [odo.step(ScanEvent(0.1 * i, p)) for i, p in enumerate(scans)]

    clouds = [reference_cloud(p) for p in scans]
    rows, et, er = [], [], []
    for i in range(len(scans) - 1):
        ref = reg.registration_icp(clouds[i + 1], clouds[i], 1.0, np.eye(4),
                                   reg.TransformationEstimationPointToPlane(reg.TukeyLoss(k=0.3)),
                                   reg.ICPConvergenceCriteria(max_iteration=60)).transformation
        ours = np.linalg.inv(res[i].T_odom_base) @ res[i + 1].T_odom_base
        E = np.linalg.inv(ref) @ ours
        et.append(float(np.linalg.norm(E[:3, 3])))
        er.append(_rot_deg(E[:3, :3]))
        rows.append([f"{i}->{i + 1}", ours[0, 3], ref[0, 3], et[-1], er[-1], res[i + 1].info["latency_ms"],
                     res[i + 1].info.get("cpu_ms", float("nan"))])
    print_table(["step", "ours x [m]", "open3d x [m]", "|dt| [m]", "drot [deg]", "wall [ms]", "cpu [ms]"], rows,
                "KITTI HDL-64E (124k points per scan): LidarOdometry vs open3d point-to-plane ICP")
    m["odometry.kitti.step_err_vs_open3d_m_max"] = max(et)
    m["odometry.kitti.step_rot_err_vs_open3d_deg_max"] = max(er)
    m["odometry.kitti.latency_ms_p50"] = _pct([r.info["latency_ms"] for r in res[1:]], 50)
    m["odometry.kitti.cpu_ms_p50"] = _pct([r.info.get("cpu_ms", np.nan) for r in res[1:]], 50)
    return rows


def fast_gicp(m: dict) -> None:
    import open3d as o3d
    d = REAL / "fast_gicp_scans"
    tgt = np.asarray(o3d.io.read_point_cloud(str(d / "251370668.pcd")).points)
    src = np.asarray(o3d.io.read_point_cloud(str(d / "251371071.pcd")).points)
    ref = np.loadtxt(d / "relative.txt")
    odo = LidarOdometry()
    odo.step(ScanEvent(0.0, tgt))
    r = odo.step(ScanEvent(0.1, src))
    E = np.linalg.inv(ref) @ r.T_odom_base
    m["odometry.fast_gicp.trans_err_m"] = float(np.linalg.norm(E[:3, 3]))
    m["odometry.fast_gicp.rot_err_deg"] = _rot_deg(E[:3, :3])
    print(f"fast_gicp pair: translation error {m['odometry.fast_gicp.trans_err_m']:.3f} m, rotation error "
          f"{m['odometry.fast_gicp.rot_err_deg']:.2f} deg against relative.txt")


def localize_from_true_start(traj, events, enable: str):
    """Run the Localizer (Oxford Spires config, odometry ``enable``) over ``events`` from the true
    pose 0.5 s in; returns (localizer, stamps (N,), T_map_base (N, 4, 4), cov6 (N, 6, 6)) of the
    estimates, one per 0.05 s."""
    from geoloc_ros.config import load_config
    from geoloc_ros.pipeline import Localizer
    cfg = load_config(Path(__file__).resolve().parents[1] / "config" / "oxford_spires.yaml")
    cfg.odometry.enable = enable
    loc = Localizer(cfg)
    t_init = events[0].t + 0.5
    T0 = traj.poses(np.array([t_init]))[0]
    ts, Ts, covs, inited = [], [], [], False
    for ev in events:
        if not inited and ev.t >= t_init:
            loc.process(PoseFixEvent(ev.t, T0, np.diag([1e-4] * 6), source="initialpose"))
            inited = True
        est = loc.process(ev)
        if est is not None and isinstance(ev, ImuEvent) and (not ts or est.t - ts[-1] >= 0.05):
            ts.append(est.t)
            Ts.append(est.T_map_base)
            covs.append(est.cov6)
    return loc, np.array(ts), np.array(Ts), np.array(covs)


def _localize(traj, events, enable: str) -> tuple[float, float]:
    """ATE RMSE and max (m) of :func:`localize_from_true_start` against the truth."""
    _, ts, Ts, _ = localize_from_true_start(traj, events, enable)
    err = np.linalg.norm(Ts[:, :2, 3] - traj.poses(ts)[:, :2, 3], axis=1)
    return float(np.sqrt(np.mean(err ** 2))), float(err.max())


def sim(m: dict, quick: bool) -> None:
    from geoloc_ros.sim.scenario import prepare, run_events
    su = prepare("tiny", seed=0)
    run = "loc_lateral"
    traj = su.runs[run]
    events = [ev for _, ev in run_events(su.world_of(run), traj, su.datum, su.faults[run], cfg=su.cfg, seed=0,
                                         camera=False, layouts=("oxford_spires",))]
    if quick:
        events = [e for e in events if e.t < events[0].t + 10.0]
    odo = LidarOdometry()
    lat, cpu, err, nees = [], [], [], []
    prev = None
    for ev in (e for e in events if isinstance(e, ScanEvent)):
        r = odo.step(ev)
        if r.ok and r.velocity is not None and prev is not None:
            lat.append(r.info["latency_ms"])
            cpu.append(r.info["cpu_ms"])
            # the pose refers to the middle of the sweep
            tp = ev.t + r.info.get("t_offset_s", 0.0)
            G0, G1 = traj.poses(np.array([prev[1], tp]))
            d_gt = np.linalg.inv(G0) @ G1
            d = np.linalg.inv(prev[0]) @ r.T_odom_base
            err.append(float(np.linalg.norm(d[:3, 3] - d_gt[:3, 3])))
            dt = tp - prev[1]
            ev_ = r.velocity.v_mps - d_gt[:3, 3] / dt
            nees.append(float(ev_ @ np.linalg.solve(r.velocity.cov_v, ev_)))
        prev = (r.T_odom_base, ev.t + r.info.get("t_offset_s", 0.0)) if r.ok else None
    m["odometry.latency_ms_p50"], m["odometry.latency_ms_p95"] = _pct(lat, 50), _pct(lat, 95)
    m["odometry.cpu_ms_p50"], m["odometry.cpu_ms_p95"] = _pct(cpu, 50), _pct(cpu, 95)
    m["odometry.sim.step_err_m_rms"] = float(np.sqrt(np.mean(np.square(err))))
    m["odometry.sim.velocity_nees_mean"] = float(np.mean(nees))
    m["odometry.sim.velocity_nees_in_bound"] = float(np.mean(np.array(nees) < 7.815))
    m["odometry.sim.ate_rmse_m.with"], m["odometry.sim.ate_max_m.with"] = _localize(traj, events, "on")
    m["odometry.sim.ate_rmse_m.without"], m["odometry.sim.ate_max_m.without"] = _localize(traj, events, "off")
    print_table(["metric", "value"], [[k, v] for k, v in m.items() if k.startswith("odometry.") and
                                      "kitti" not in k and "fast_gicp" not in k],
                f"simulated Oxford Spires run (tiny/{run}, QT64 10 Hz, {len(lat)} scans)")


def run(out_dir: Path = Path("bench_out"), quick: bool = False) -> dict:
    t0 = time.perf_counter()
    m: dict = {}
    kitti(m)
    fast_gicp(m)
    sim(m, quick)
    write_result("odometry", m, "geoloc bench odometry" + (" --quick" if quick else ""), time.perf_counter() - t0,
                 out_dir)
    return m


if __name__ == "__main__":
    run(quick="--quick" in sys.argv)
