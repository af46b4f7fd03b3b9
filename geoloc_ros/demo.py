"""``geoloc demo`` (``make demo``): the main job, end to end, on a fresh machine.

1. simulate a town: a mapping run and localization runs (reversed; sideways offset in a
   changed world), with ground truth; the mapping run is recorded in both bag layouts, the
   M3DGR (ROS 1: Livox MID-360, IMU, wheels, GNSS, camera) and the Oxford Spires (ROS 2:
   Hesai QT64 + IMU) one, since both sensors drive it at once;
2. build one map directory per layout (side by side, one process each) from the mapping run's
   bag of that layout and its ground-truth trajectory: a dataset user maps with the sensor they localize with (a BEV
   image of the tilted MID-360 dome and one of the upside-down QT64 differ too much for
   place recognition across them);
3. replay the reversed run from its M3DGR bag (LiDAR, IMU, wheel, GNSS with injected faults,
   camera) against the M3DGR map and the offset run from its Oxford Spires bag (LiDAR + IMU
   only) against the Oxford Spires map;
4. write ``OUT/report.md`` with the error against ground truth, the map each run used, and the
   plots; every stage's wall and CPU time is printed and noted in the report.
"""
from __future__ import annotations

import json
import logging
import resource
import time
from pathlib import Path

log = logging.getLogger("geoloc_ros.demo")

# layout -> profile of the maps the demo builds from the mapping run (map dir OUT/map_<layout>)
DEMO_MAPS = {"m3dgr": "m3dgr", "oxford_spires": "oxford_spires"}
# (run, layout, profile, map layout): which bag of which run the demo replays, against which map
DEMO_REPLAYS = (("loc_reverse", "m3dgr", "m3dgr", "m3dgr"),
                ("loc_lateral", "oxford_spires", "oxford_spires", "oxford_spires"))


def demo_layouts() -> dict[str, tuple[str, ...]]:
    """``{run: bag layouts}`` the demo needs simulated: every map's layout for ``mapping``, the
    replayed layout for each localization run."""
    need: dict[str, list[str]] = {"mapping": list(DEMO_MAPS)}
    for run, layout, _, map_layout in DEMO_REPLAYS:
        if map_layout not in DEMO_MAPS:
            raise ValueError(f"demo replay of {run} names map {map_layout!r}; maps: {', '.join(DEMO_MAPS)}")
        need.setdefault(run, [])
        if layout not in need[run]:
            need[run].append(layout)
    return {r: tuple(v) for r, v in need.items()}


def map_dir_of(out: Path, layout: str) -> Path:
    return Path(out) / f"map_{layout}"


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process and its finished children (the simulation
    workers)."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


class _Timer:
    """Wall and CPU seconds per demo stage."""

    def __init__(self):
        self.rows: list[tuple[str, float, float]] = []
        self._t = self._c = None
        self._name = ""

    def start(self, name: str, msg: str) -> None:
        self.stop()
        print(f"\n== {msg}", flush=True)
        self._name, self._t, self._c = name, time.perf_counter(), _cpu_s()

    def stop(self) -> None:
        if self._t is None:
            return
        wall, cpu = time.perf_counter() - self._t, _cpu_s() - self._c
        self.rows.append((self._name, wall, cpu))
        print(f"   ({self._name}: {wall:.0f} s wall, {cpu:.0f} s CPU)", flush=True)
        self._t = None

    def summary(self) -> str:
        wall, cpu = sum(r[1] for r in self.rows), sum(r[2] for r in self.rows)
        parts = ", ".join(f"{n} {w:.0f} s / {c:.0f} s" for n, w, c in self.rows)
        return f"{wall:.0f} s wall, {cpu:.0f} s CPU ({parts}; wall / CPU per stage)"


def _build_map_job(bag, profile, trajectory, out, cfg) -> tuple[str, float | None]:
    """One map build (in a worker process): its report line and datum fit residual (m)."""
    import torch

    from geoloc_ros.maps.build import build_map
    torch.set_num_threads(1)
    rep = build_map(bag, profile, trajectory, out, cfg=cfg)
    return str(rep), rep.datum_rms_m


def _faults_in_bag(faults: list[tuple[float, float, str]], run_info: dict, layout: str) -> list:
    """The scripted faults of a run whose sensor is in its ``layout`` bag (the Oxford Spires bag
    has no GNSS and no wheels: their faults are not part of that replay)."""
    counts = run_info.get("message_counts", {})
    kinds = {k.split("@")[0].replace("Event", "").lower() for k in counts if k.endswith(f"@{layout}")}
    return [f for f in faults if f[2].split()[0] in kinds]


def _side_by_side(fn, jobs: list[tuple]) -> list:
    """``[fn(*job) for job in jobs]``, each job in its own spawned process (up to 2 at once, the
    demo's core budget); each worker's progress bar gets its own terminal line."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor
    results: list = [None] * len(jobs)
    ctx = multiprocessing.get_context("spawn")
    for lo in range(0, len(jobs), 2):
        pools, futs = [], []
        saved = os.environ.get("TQDM_POSITION")
        try:
            for k, job in enumerate(jobs[lo:lo + 2]):
                os.environ["TQDM_POSITION"] = str(k)   # read by tqdm when the worker imports it
                pool = ProcessPoolExecutor(1, mp_context=ctx)
                pools.append(pool)
                futs.append(pool.submit(fn, *job))     # spawns the worker now, with this environment
        finally:
            if saved is None:
                os.environ.pop("TQDM_POSITION", None)
            else:
                os.environ["TQDM_POSITION"] = saved
        try:
            for k, f in enumerate(futs):
                results[lo + k] = f.result()
        finally:
            for pool in pools:
                pool.shutdown()
    return results


def run_demo(out: Path, seed: int = 1, scenario: str = "demo") -> int:
    from geoloc_ros.config import GeolocConfig
    from geoloc_ros.eval.report import (RunResult, background_from_mapdir, faults_from_manifest,
                                        write_report)
    from geoloc_ros.io.tum import read_tum
    from geoloc_ros.maps.mapdir import MapDir
    from geoloc_ros.replay import engine_stats_dict, replay
    from geoloc_ros.sim.scenario import simulate

    timer = _Timer()
    out = Path(out)
    sim_dir = out / "sim"
    cfg = GeolocConfig()
    layouts = demo_layouts()

    timer.start("simulate", f"1/4 simulate scenario '{scenario}' (seed {seed}) -> {sim_dir}")
    manifest_path = simulate(scenario, seed=seed, out_dir=sim_dir, runs=list(layouts), layouts=layouts,
                             progress=True)
    manifest = json.loads(Path(manifest_path).read_text())
    mapping = manifest["runs"]["mapping"]

    notes = [f"Scenario `{scenario}`, seed {seed}. One map per sensor setup, each built from the mapping "
             f"run's bag of that layout ({mapping['length_m']:.0f} m, {mapping['duration_s']:.0f} s) and its "
             f"ground truth:"]
    timer.start("maps", f"2/4 build {len(DEMO_MAPS)} maps side by side from the mapping run's "
                f"{' and '.join(DEMO_MAPS)} bags -> {map_dir_of(out, '<layout>')}")
    jobs = [(sim_dir / mapping["bags"][layout], profile, sim_dir / mapping["gt"], map_dir_of(out, layout), cfg)
            for layout, profile in DEMO_MAPS.items()]
    backgrounds = {}
    for (layout, profile), (text, datum_rms_m) in zip(DEMO_MAPS.items(), _side_by_side(_build_map_job, jobs)):
        md = map_dir_of(out, layout)
        print(text, flush=True)
        notes.append(f"- map `{md.name}` (profile `{profile}`): {text}"
                     + ("" if datum_rms_m is not None else " (no GNSS in this layout: no datum)") + ".")
        backgrounds[layout] = background_from_mapdir(MapDir.open(md))
    notes.append("")

    results = []
    for i, (run, layout, profile, map_layout) in enumerate(DEMO_REPLAYS, 1):
        info = manifest["runs"][run]
        gt = sim_dir / info["gt"]
        md = map_dir_of(out, map_layout)
        timer.start(f"replay {run}", f"3/4 replay {i}/{len(DEMO_REPLAYS)}: {run} ({layout} bag) against {md.name}")
        res = replay(sim_dir / info["bags"][layout], profile, md, cfg=cfg,
                     out_tum=out / f"est_{run}_{layout}.tum", gt_tum=gt, progress=True)
        print(res.summary(), flush=True)
        a = res.log.arrays()
        gt_t, gt_T = read_tum(gt)
        results.append(RunResult(
            name=f"{run} ({layout})", est_t=a["t"], est_T=a["T"], est_cov=a["cov6"], gt_t=gt_t,
            gt_T=gt_T, faults=_faults_in_bag(faults_from_manifest(manifest, run), info, layout), modes=a["mode"],
            engine_stats=engine_stats_dict(res.stats), engine_fixes=res.engine_fixes,
            map_name=md.name, background=backgrounds.get(map_layout)))
        first = (f"; first estimate {a['t'][0] - info['t_start']:.1f} s after the run's start"
                 if len(a["t"]) else "")
        notes.append(f"`{run}` replayed from the {layout} bag with profile `{profile}` against map "
                     f"`{md.name}`: {res.bag_s:.0f} s of data in {res.wall_s:.0f} s{first}.")
        if not len(a["t"]):   # say why a run has no estimate at all
            counts = "; ".join(f"{name}: {st.queries} queries, {st.fixes} fixes, {st.accepted} accepted"
                               for name, st in res.stats.items() if st.queries)
            notes.append(f"`{run}`: no estimate: the filter was never initialized (a global fix initializes "
                         f"it only once {cfg.confirm_fixes} agree through odometry over {cfg.confirm_travel_m:g} m); "
                         f"{counts}.")

    timer.stop()
    notes.append(f"Demo time on this machine before the report: {timer.summary()}.")
    timer.start("report", f"4/4 report -> {out / 'report.md'}")
    # the trajectory plots draw each run over its own map; this one is the fallback
    path = write_report(out, results, background=backgrounds.get(DEMO_REPLAYS[0][3]),
                        title="geoloc_ros demo", notes=notes)
    timer.stop()
    print(f"report: {path}  (demo took {timer.summary()})", flush=True)
    return 0
