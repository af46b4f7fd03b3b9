"""``geoloc demo`` (``make demo``): the main job, end to end, on a fresh machine.

1. simulate a town: a mapping run and localization runs (reversed; sideways offset in a
   changed world), in the M3DGR (ROS 1) and Oxford Spires (ROS 2) bag layouts, with ground truth;
2. build the map directory from the mapping run's M3DGR bag and its ground-truth trajectory;
3. replay the reversed run from its M3DGR bag (LiDAR, IMU, wheel, GNSS with injected faults,
   camera) and the offset run from its Oxford Spires bag (LiDAR + IMU only);
4. write ``OUT/report.md`` with the error against ground truth and its plots.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

log = logging.getLogger("geoloc_ros.demo")

# (run, layout, profile): which bag of which run the demo replays
DEMO_REPLAYS = (("loc_reverse", "m3dgr", "m3dgr"), ("loc_lateral", "oxford_spires", "oxford_spires"))


def _stage(msg: str) -> None:
    print(f"\n== {msg}", flush=True)


def run_demo(out: Path, seed: int = 1, scenario: str = "demo") -> int:
    from geoloc_ros.config import GeolocConfig
    from geoloc_ros.eval.report import (RunResult, background_from_mapdir, faults_from_manifest,
                                        write_report)
    from geoloc_ros.io.tum import read_tum
    from geoloc_ros.maps.build import build_map
    from geoloc_ros.maps.mapdir import MapDir
    from geoloc_ros.replay import engine_stats_dict, replay
    from geoloc_ros.sim.scenario import simulate

    t_start = time.perf_counter()
    out = Path(out)
    sim_dir, map_dir = out / "sim", out / "map"
    cfg = GeolocConfig()
    runs = ["mapping"] + [r for r, _, _ in DEMO_REPLAYS]

    _stage(f"1/4 simulate scenario '{scenario}' (seed {seed}) -> {sim_dir}")
    manifest_path = simulate(scenario, seed=seed, out_dir=sim_dir, runs=runs, progress=True)
    manifest = json.loads(Path(manifest_path).read_text())

    _stage(f"2/4 build the map from the mapping run -> {map_dir}")
    rep = build_map(sim_dir / manifest["runs"]["mapping"]["bags"]["m3dgr"], "m3dgr",
                    sim_dir / manifest["runs"]["mapping"]["gt"], map_dir, cfg=cfg)
    print(rep, flush=True)

    _stage("3/4 replay the localization runs through the pipeline")
    results, notes = [], [f"Scenario `{scenario}`, seed {seed}; map: {rep}."]
    for run, layout, profile in DEMO_REPLAYS:
        info = manifest["runs"][run]
        gt = sim_dir / info["gt"]
        res = replay(sim_dir / info["bags"][layout], profile, map_dir, cfg=cfg,
                     out_tum=out / f"est_{run}_{layout}.tum", gt_tum=gt, progress=True)
        print(res.summary(), flush=True)
        a = res.log.arrays()
        gt_t, gt_T = read_tum(gt)
        results.append(RunResult(
            name=f"{run} ({layout})", est_t=a["t"], est_T=a["T"], est_cov=a["cov6"], gt_t=gt_t,
            gt_T=gt_T, faults=faults_from_manifest(manifest, run), modes=a["mode"],
            engine_stats=engine_stats_dict(res.stats), engine_fixes=res.engine_fixes))
        notes.append(f"`{run}` replayed from the {layout} bag with profile `{profile}`: "
                     f"{res.bag_s:.0f} s of data in {res.wall_s:.0f} s.")
        if not len(a["t"]):   # say why a run has no estimate at all
            counts = "; ".join(f"{name}: {st.queries} queries, {st.fixes} fixes, {st.accepted} accepted"
                               for name, st in res.stats.items() if st.queries)
            notes.append(f"`{run}`: no estimate: the filter was never initialized (a global fix initializes "
                         f"it only once {cfg.confirm_fixes} agree through odometry over {cfg.confirm_travel_m:g} m); "
                         f"{counts}.")

    _stage(f"4/4 report -> {out / 'report.md'}")
    background = background_from_mapdir(MapDir.open(map_dir))
    path = write_report(out, results, background=background, title="geoloc_ros demo", notes=notes)
    print(f"report: {path}  (demo took {time.perf_counter() - t_start:.0f} s)", flush=True)
    return 0
