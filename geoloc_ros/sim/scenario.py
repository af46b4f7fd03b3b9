"""Scenarios: the runs of a simulated day and the files they become.

``make_runs(world, seed)`` gives the trajectories (``mapping``, ``loc_same``, ``loc_reverse``,
``loc_lateral``); ``make_faults`` scripts the sensor faults of a run; ``simulate`` writes, for
every run, bags in the ``m3dgr`` (ROS 1) and ``oxford_spires`` (ROS 2) layouts through
:class:`geoloc_ros.io.writer.BagWriter`, ``gt_<run>.tum`` (T_map_base, unix s) and one
``manifest.json`` (datum, extrinsics, rates, every fault interval, world seed).

Output layout::

    OUT/manifest.json  OUT/world.json  OUT/world_changed.json  OUT/gt_<run>.tum
    OUT/m3dgr/<run>.bag          (ROS 1: MID-360 CustomMsg, IMU, /odom, D435i, u-blox)
    OUT/oxford_spires/<run>/     (ROS 2: Hesai QT64 PointCloud2, IMU)

The ground-truth world frame IS the map frame; the datum ties it to WGS-84.
"""
from __future__ import annotations

import copy
import heapq
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from geoloc_ros.config import flatten
from geoloc_ros.events import WheelEvent
from geoloc_ros.geometry import rot_z, se3
from geoloc_ros.sim import sensors
from geoloc_ros.sim.config import SimConfig
from geoloc_ros.sim.sensors import Fault
from geoloc_ros.sim.trajectory import Trajectory, offset_polyline, route_polyline
from geoloc_ros.sim.world import World, make_world

__all__ = ["Scenario", "SCENARIOS", "SimSetup", "prepare", "get_scenario", "make_runs", "make_faults", "make_datum", "run_events",
           "simulate", "sim_seconds_per_sim_second", "Trajectory", "RUN_NAMES"]

RUN_NAMES = ("mapping", "loc_same", "loc_reverse", "loc_lateral")
_RUN_T_OFFSET_S = {"mapping": 0.0, "loc_same": 3600.0, "loc_reverse": 7200.0, "loc_lateral": 10800.0}
LAYOUTS = ("m3dgr", "oxford_spires")


@dataclass
class Scenario:
    """A named set of runs: world size and each run's duration (s)."""
    name: str
    size_m: float
    durations_s: dict
    change_fraction: float = 0.25     # of movable objects changed for loc_lateral
    camera_rate_hz: float | None = None  # RGB-D rate (None: SimConfig's 15 Hz; 0: no camera)
    layouts: dict | None = None       # run -> bag layouts to write (None: both for every run)


SCENARIOS = {
    # the full town: mapping covers every road (~1.3 km), localization runs ~150 s each
    "town": Scenario("town", 200.0, {"mapping": 440.0, "loc_same": 150.0, "loc_reverse": 150.0,
                                     "loc_lateral": 150.0}),
    # what `make demo` uses: same town, the mapping run drives the outer ring and part of the
    # cross (~ 550 m), localization runs 60 s; camera at 5 Hz to keep the demo short
    # and only the bags the demo uses (geoloc_ros/demo.py demo_layouts(): the mapping run in
    # both layouts, one map per sensor setup; each localization run in the layout it replays)
    "demo": Scenario("demo", 200.0, {"mapping": 190.0, "loc_same": 60.0, "loc_reverse": 60.0,
                                     "loc_lateral": 60.0}, camera_rate_hz=5.0,
                     layouts={"mapping": ("m3dgr", "oxford_spires"), "loc_reverse": ("m3dgr",),
                              "loc_lateral": ("oxford_spires",)}),
    # very short runs for tests (one 240 m loop), camera at 5 Hz
    "tiny": Scenario("tiny", 100.0, {"mapping": 30.0, "loc_same": 20.0, "loc_reverse": 20.0,
                                     "loc_lateral": 20.0}, camera_rate_hz=5.0),
}


def get_scenario(name: str | Scenario) -> Scenario:
    if isinstance(name, Scenario):
        return name
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    return SCENARIOS[name]


def make_datum(cfg: SimConfig):
    """The map datum of the simulated world (fusion's :class:`~geoloc_ros.fusion.gnss.Datum`)."""
    from geoloc_ros.fusion.gnss import Datum
    return Datum(cfg.lat0_deg, cfg.lon0_deg, cfg.alt0_m, cfg.datum_yaw_rad)


# ---- routes ------------------------------------------------------------------------------
def _route_nodes(coords: np.ndarray) -> np.ndarray:
    """Closed node sequence (K, 2) driving every road of the grid (outer ring + middle cross)."""
    lo, hi = coords[0], coords[-1]
    if len(coords) < 3:
        return np.array([[lo, lo], [hi, lo], [hi, hi], [lo, hi], [lo, lo]])
    mid = coords[len(coords) // 2]
    A, B, C, D = (lo, lo), (mid, lo), (hi, lo), (hi, mid)
    E, F, G, H, O = (hi, hi), (mid, hi), (lo, hi), (lo, mid), (mid, mid)
    return np.array([A, B, C, D, E, F, G, H, A, B, O, F, E, D, O, H, A], float)


def _roll_loop(nodes: np.ndarray, k: int) -> np.ndarray:
    """Start a closed node loop at its k-th node."""
    body = nodes[:-1]
    k %= len(body)
    r = np.concatenate([body[k:], body[:k]])
    return np.concatenate([r, r[:1]])


def _loop_polyline(nodes: np.ndarray, cfg: SimConfig, need_m: float) -> np.ndarray:
    reps = 1
    while True:
        seq = np.concatenate([nodes] + [nodes[1:]] * (reps - 1))
        # continue a little past the end so the natural-spline end sits beyond the run
        seq = np.concatenate([seq, nodes[1:2]])
        poly = route_polyline(seq, cfg.corner_radius_m)
        if np.linalg.norm(np.diff(poly, axis=0), axis=1).sum() > need_m + 30.0:
            return poly
        reps += 1


def make_runs(world: World, seed: int = 0, scenario: str | Scenario = "town",
              cfg: SimConfig | None = None, duration_s: float | None = None) -> dict[str, Trajectory]:
    """Trajectories of the scenario's runs (``duration_s`` caps every run's length).

    ``mapping`` drives every road once; ``loc_same`` the same loop in the same direction,
    starting elsewhere, an hour later; ``loc_reverse`` the loop in the opposite direction;
    ``loc_lateral`` the loop offset 2-4 m to the left (meant for the changed world).
    """
    sc = get_scenario(scenario)
    cfg = cfg or world.cfg
    rng = np.random.default_rng([int(seed), 31])
    nodes = _route_nodes(world.road_coords_m)
    n = len(nodes) - 1
    starts = {"mapping": 0, "loc_same": int(rng.integers(1, n)), "loc_reverse": int(rng.integers(1, n)),
              "loc_lateral": int(rng.integers(1, n))}
    runs = {}
    for name in RUN_NAMES:
        dur = float(sc.durations_s[name]) if duration_s is None else min(float(duration_s), sc.durations_s[name])
        need = cfg.speed_mps * dur
        loop = nodes[::-1] if name == "loc_reverse" else nodes
        poly = _loop_polyline(_roll_loop(loop, starts[name]), cfg, need)
        if name == "loc_lateral":
            s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(poly, axis=0), axis=1))])
            poly = offset_polyline(poly, cfg.lateral_offset_m + np.sin(2 * np.pi * s / 60.0))
        runs[name] = Trajectory(poly, world.ground, cfg.t0_unix_s + _RUN_T_OFFSET_S[name], dur,
                                speed_mps=cfg.speed_mps, hold_s=cfg.hold_s, ramp_s=cfg.ramp_s,
                                base_height_m=cfg.base_height_m, name=name, gt_rate_hz=cfg.gt_rate_hz)
    return runs


def make_faults(traj: Trajectory, seed: int = 0, run: str = "") -> list[Fault]:
    """Scripted faults of a localization run at fixed fractions of its moving time, with
    randomly drawn sizes: GNSS denial (no fix), multipath, drift, spoofing, silence; two wheel
    slips. The mapping run gets none."""
    if run == "mapping":
        return []
    rng = np.random.default_rng([int(seed), sum(map(ord, run)), 5])
    t0 = traj.t0 + traj.hold_s
    D = traj.t1 - t0

    def iv(a, b):
        return t0 + a * D, t0 + b * D

    ang = rng.uniform(-np.pi, np.pi)
    spoof = rng.uniform(25.0, 60.0) * np.array([np.cos(ang), np.sin(ang), 0.0])
    dd = rng.uniform(-np.pi, np.pi)
    return [
        Fault("gnss", "denial_nofix", *iv(0.12, 0.20)),
        Fault("gnss", "multipath", *iv(0.28, 0.36), {"jump_m": [5.0, 30.0], "hold_s": 1.5}),
        Fault("gnss", "drift", *iv(0.44, 0.58), {"rate_mps": float(rng.uniform(0.2, 0.5)),
                                                  "dir_enu": [float(np.cos(dd)), float(np.sin(dd)), 0.0]}),
        Fault("gnss", "spoofing", *iv(0.66, 0.76), {"offset_enu_m": spoof.round(3).tolist(), "cov_scale": 0.25}),
        Fault("gnss", "denial_silent", *iv(0.84, 0.92)),
        Fault("wheel", "slip", *iv(0.22, 0.27), {"slip_ratio": float(rng.uniform(0.2, 0.5)),
                                                 "yaw_rate_bias_rps": float(rng.normal(0, 0.05))}),
        Fault("wheel", "slip", *iv(0.60, 0.63), {"slip_ratio": float(rng.uniform(0.2, 0.5)),
                                                 "yaw_rate_bias_rps": float(rng.normal(0, 0.05))}),
    ]


# ---- the whole sensor suite as one time-ordered stream -----------------------------------
def _extrinsics(cfg: SimConfig) -> dict[str, dict[str, np.ndarray]]:
    """T_base_sensor per layout and role, from the io profiles (defaults where one is missing)."""
    out = {"m3dgr": {}, "oxford_spires": {}}
    try:
        from geoloc_ros.io.profiles import load_profile
        for lay in LAYOUTS:
            prof = load_profile(lay)
            out[lay] = {r: np.asarray(s.T_base_sensor, float) for r, s in prof.roles.items()}
    except Exception:  # noqa: BLE001 - profiles are optional for in-memory use
        pass
    out["m3dgr"].setdefault("lidar", sensors.DEFAULT_EXTRINSICS["mid360"])
    out["m3dgr"].setdefault("camera_rgb", sensors.DEFAULT_EXTRINSICS["camera"])
    out["m3dgr"].setdefault("gnss", sensors.DEFAULT_EXTRINSICS["gnss"])
    out["oxford_spires"].setdefault("lidar", sensors.DEFAULT_EXTRINSICS["qt64"])
    return out


def run_events(world: World, traj: Trajectory, datum, faults=(), cfg: SimConfig | None = None, seed: int = 0,
               camera: bool = True, extrinsics: dict | None = None, truth: dict | None = None,
               layouts: tuple[str, ...] = LAYOUTS) -> Iterator[tuple[str, object]]:
    """Every sensor of a run merged in time order as ``(layout, event)`` pairs; ``layout`` is
    ``"m3dgr"``, ``"oxford_spires"`` or ``"both"`` (the IMU feeds both layouts). Sensors of a
    layout not in ``layouts`` are not simulated."""
    cfg = cfg or world.cfg
    ex = extrinsics or _extrinsics(cfg)
    m3, ox = ex["m3dgr"], ex["oxford_spires"]
    bad = set(layouts) - set(LAYOUTS)
    if bad:
        raise ValueError(f"unknown layout(s) {sorted(bad)}; known: {', '.join(LAYOUTS)}")
    gens = [(("both", e) for e in sensors.imu(traj, cfg=cfg, seed=seed, truth=truth))]
    if "m3dgr" in layouts:
        gens += [
            (("m3dgr", e) for e in sensors.lidar_scans(world, traj, "mid360", T_base_sensor=m3["lidar"], cfg=cfg,
                                                       seed=seed, frame_id="livox_frame")),
            (("m3dgr", e) for e in sensors.wheel(traj, faults, cfg=cfg, seed=seed, truth=truth)),
            (("m3dgr", e) for e in sensors.gnss(traj, datum, faults, T_base_antenna=m3["gnss"], cfg=cfg,
                                                seed=seed)),
        ]
        if camera:
            gens.append((("m3dgr", e) for e in sensors.rgbd(world, traj, T_base_sensor=m3["camera_rgb"], cfg=cfg,
                                                            seed=seed)))
    if "oxford_spires" in layouts:
        gens.append((("oxford_spires", e) for e in sensors.lidar_scans(
            world, traj, "qt64", T_base_sensor=ox["lidar"], cfg=cfg, seed=seed, frame_id="pandar")))
    yield from heapq.merge(*gens, key=lambda le: le[1].t)


# ---- files -------------------------------------------------------------------------------
class _WheelOdometry:
    """Planar dead reckoning of the wheel readings: the pose an /odom message carries."""

    def __init__(self):
        self.t, self.x, self.y, self.yaw = None, 0.0, 0.0, 0.0

    def step(self, ev: WheelEvent) -> np.ndarray:
        if self.t is not None:
            dt = ev.t - self.t
            mid = self.yaw + 0.5 * ev.yaw_rate_rps * dt
            self.x += ev.v_mps * dt * np.cos(mid)
            self.y += ev.v_mps * dt * np.sin(mid)
            self.yaw += ev.yaw_rate_rps * dt
        self.t = ev.t
        return se3(rot_z(self.yaw), [self.x, self.y, 0.0])


def _bag_paths(out: Path, run: str, layouts) -> dict[str, Path]:
    p = {"m3dgr": out / "m3dgr" / f"{run}.bag", "oxford_spires": out / "oxford_spires" / run}
    return {k: v for k, v in p.items() if k in layouts}


def _writers(out: Path, run: str, layouts):
    from geoloc_ros.io.writer import BagWriter
    return {lay: BagWriter(path, lay, overwrite=True) for lay, path in _bag_paths(out, run, layouts).items()}


def _write_gt(path: Path, traj: Trajectory):
    t, T = traj.gt()
    try:
        from geoloc_ros.io.tum import write_tum
        write_tum(path, t, T)
    except ImportError:  # pragma: no cover - eval helper's writer missing
        from geoloc_ros.geometry import pose_to_xyzquat
        rows = [np.concatenate([[ti], pose_to_xyzquat(Ti)]) for ti, Ti in zip(t, T)]
        np.savetxt(path, np.array(rows), fmt="%.9f", header="timestamp tx ty tz qx qy qz qw")


@dataclass
class SimSetup:
    """Everything a scenario's runs are made of (what ``simulate`` writes, for in-memory use)::

        su = prepare("tiny", seed=0)
        for layout, ev in run_events(su.world_of("loc_same"), su.runs["loc_same"], su.datum,
                                     su.faults["loc_same"], cfg=su.cfg, seed=0): ...
    """
    scenario: Scenario
    cfg: SimConfig
    world: World            # the mapping world
    changed: World          # objects moved/added/removed (loc_lateral)
    runs: dict              # name -> Trajectory
    faults: dict            # name -> list[Fault]
    datum: object           # geoloc_ros.fusion.gnss.Datum

    def world_of(self, run: str) -> World:
        return self.changed if run == "loc_lateral" else self.world


def prepare(scenario: str | Scenario = "town", seed: int = 0, cfg: SimConfig | None = None,
            duration_s: float | None = None) -> SimSetup:
    """World, changed world, trajectories, faults and datum of a scenario (deterministic)."""
    sc = get_scenario(scenario)
    cfg = copy.deepcopy(cfg) if cfg is not None else SimConfig()
    cfg.size_m = sc.size_m
    if sc.camera_rate_hz is not None:
        cfg.camera_rate_hz = float(sc.camera_rate_hz)
    world = make_world(seed, cfg=cfg)
    changed = world.move_objects(sc.change_fraction, seed)
    trajs = make_runs(world, seed, sc, cfg=cfg, duration_s=duration_s)
    faults = {name: make_faults(tr, seed, name) for name, tr in trajs.items()}
    return SimSetup(sc, cfg, world, changed, trajs, faults, make_datum(cfg))


def _simulate_run(su: SimSetup, name: str, out: Path, seed: int, layouts, write_bags: bool, progress: bool,
                  position: int = 0) -> dict:
    """Simulate one run into ``out``; returns its manifest entry."""
    from tqdm import tqdm
    traj, cfg = su.runs[name], su.cfg
    w = su.world_of(name)
    w.scene  # noqa: B018 - build the ray-casting scene before the timing
    faults = su.faults[name]
    ex = _extrinsics(cfg)
    truth: dict = {}
    t_wall = time.time()
    _write_gt(out / f"gt_{name}.tum", traj)
    writers = _writers(out, name, layouts) if write_bags else {}
    bar = tqdm(total=round(traj.duration_s, 1), desc=f"simulate {name}", unit="sim s", disable=not progress,
               position=position, bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} sim s [{elapsed}<{remaining}]")
    counts: dict[str, int] = {}
    try:
        for wr in writers.values():
            wr.__enter__()
        last = traj.t0
        odo = _WheelOdometry()
        for layout, ev in run_events(w, traj, su.datum, faults, cfg=cfg, seed=seed, camera=cfg.camera_rate_hz > 0,
                                     extrinsics=ex, truth=truth, layouts=layouts):
            key = type(ev).__name__.replace("Sim", "") + ("" if layout == "both" else f"@{layout}")
            counts[key] = counts.get(key, 0) + 1
            extra = {"T_odom_base": odo.step(ev)} if isinstance(ev, WheelEvent) else {}
            for lay in (LAYOUTS if layout == "both" else (layout,)):
                if lay in writers:
                    writers[lay].write(ev, **extra)
            if ev.t - last >= 0.5:
                bar.update(round(ev.t - last, 1))
                last = ev.t
        bar.update(max(0.0, round(traj.t1 - last, 1)))
    finally:
        bar.close()
        for wr in writers.values():
            wr.__exit__(None, None, None)
    run_faults = [dict(f.to_dict(), run=name) for f in faults]
    return {
        "t_start": traj.t0, "t_end": traj.t1, "duration_s": traj.duration_s, "length_m": traj.length_m,
        "world": "world_changed.json" if name == "loc_lateral" else "world.json",
        "gt": f"gt_{name}.tum",
        "bags": ({k: str(v.relative_to(out)) for k, v in _bag_paths(out, name, layouts).items()}
                 if write_bags else {}),
        "layouts": list(layouts) if write_bags else [],
        "faults": run_faults, "message_counts": counts,
        "truth": {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in truth.items()},
        "wall_s": round(time.time() - t_wall, 2),
    }


def _run_worker(args) -> tuple[str, dict]:
    scenario, seed, cfg, duration_s, name, out, layouts, write_bags, progress, position = args
    su = prepare(scenario, seed, cfg, duration_s)
    return name, _simulate_run(su, name, Path(out), seed, layouts, write_bags, progress, position)


def simulate(scenario: str | Scenario = "town", seed: int = 0, out_dir: str | Path = "sim_out",
             duration_s: float | None = None, progress: bool = True, runs: list[str] | None = None,
             cfg: SimConfig | None = None, write_bags: bool = True,
             layouts: tuple[str, ...] | dict | None = None, workers: int | None = None) -> Path:
    """Simulate the scenario's runs and write bags, ground truth and the manifest; returns the
    manifest path.

    ``duration_s`` caps each run; ``runs`` selects a subset of run names; ``layouts`` the bag
    layouts (``m3dgr``, ``oxford_spires``) to write, for all runs or as ``{run: layouts}``
    (default: the scenario's choice, else both); ``workers`` processes simulate runs side by
    side (default: up to 2, the output is the same for any number).
    """
    import os
    su = prepare(scenario, seed, cfg, duration_s)
    sc, cfg = su.scenario, su.cfg
    unknown = set(runs or []) - set(RUN_NAMES)
    if unknown:
        raise ValueError(f"unknown run(s) {sorted(unknown)}; known: {', '.join(RUN_NAMES)}")
    names = [r for r in RUN_NAMES if runs is None or r in runs]
    layouts = layouts if layouts is not None else (sc.layouts or LAYOUTS)
    per_run = {n: tuple(layouts.get(n, LAYOUTS)) if isinstance(layouts, dict) else tuple(layouts) for n in names}
    for lay in per_run.values():
        bad = set(lay) - set(LAYOUTS)
        if bad:
            raise ValueError(f"unknown layout(s) {sorted(bad)}; known: {', '.join(LAYOUTS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ex = _extrinsics(cfg)
    (out / "world.json").write_text(json.dumps(su.world.to_dict()))
    (out / "world_changed.json").write_text(json.dumps(su.changed.to_dict()))
    manifest = {
        "format": "geoloc_sim", "version": 1, "scenario": sc.name, "seed": int(seed), "world_seed": int(seed),
        "frames": {"world": "map", "body": "base_link", "note": "ground-truth world frame IS the map frame"},
        "datum": su.datum.to_dict(),
        "datum_convention": "p_enu = Rz(yaw_rad) @ p_map; origin at (lat0_deg, lon0_deg, alt0_m) on WGS-84",
        "extrinsics": {lay: {r: T.tolist() for r, T in d.items()} for lay, d in ex.items()},
        "rates_hz": {"lidar": cfg.lidar_rate_hz, "imu": cfg.imu_rate_hz, "wheel": cfg.wheel_rate_hz,
                     "gnss": cfg.gnss_rate_hz, "camera": cfg.camera_rate_hz,
                     "ground_truth": cfg.gt_rate_hz},
        "imu_noise": {"acc_n": cfg.acc_n, "gyr_n": cfg.gyr_n, "acc_w": cfg.acc_w, "gyr_w": cfg.gyr_w,
                      "gravity_mps2": sensors.GRAVITY_MPS2},
        "sim_config": flatten(cfg),
        "world_changes": su.changed.changes,
        "runs": {}, "faults": [],
    }
    n_workers = workers if workers is not None else min(2, os.cpu_count() or 1, len(names))
    t_wall = time.time()
    entries: dict[str, dict] = {}
    if n_workers <= 1 or len(names) <= 1:
        for name in names:
            entries[name] = _simulate_run(su, name, out, seed, per_run[name], write_bags, progress)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        order = sorted(names, key=lambda n: -su.runs[n].duration_s)  # longest first
        jobs = [(sc, seed, cfg, duration_s, n, str(out), per_run[n], write_bags, progress, i)
                for i, n in enumerate(order)]
        with ProcessPoolExecutor(n_workers, mp_context=multiprocessing.get_context("spawn")) as ex_pool:
            for name, entry in ex_pool.map(_run_worker, jobs):
                entries[name] = entry
    for name in names:
        manifest["runs"][name] = entries[name]
        manifest["faults"] += entries[name]["faults"]
    manifest["wall_s"] = round(time.time() - t_wall, 2)
    path = out / "manifest.json"
    path.write_text(json.dumps(manifest, indent=1))
    return path


def sim_seconds_per_sim_second(sim_s: float = 10.0, seed: int = 0, write_bags: bool = True,
                               out_dir: str | Path | None = None) -> dict[str, float]:
    """Seconds to simulate one second of the full sensor suite (MID-360 + QT64 LiDARs, IMU,
    wheel, GNSS, 15 Hz RGB-D) of the ``town`` world, for io's benchmark.

    ``sim.seconds_per_sim_second``: wall time, generation plus encoding both bag layouts (with
    ``write_bags``); ``sim.generate_seconds_per_sim_second``: wall time, in memory only;
    ``sim.cpu_seconds_per_sim_second``: process CPU time (all threads) of the in-memory
    generation, which is what a shared, loaded machine distorts least.
    """
    import tempfile
    cfg = SimConfig()
    sc = Scenario("bench", cfg.size_m, {r: cfg.hold_s + 2 * cfg.ramp_s + float(sim_s) for r in RUN_NAMES})
    su = prepare(sc, seed, cfg)
    traj = su.runs["loc_same"]
    su.world.scene  # noqa: B018 - build the scene outside the timing
    ex = _extrinsics(su.cfg)
    t, c = time.perf_counter(), time.process_time()
    n = sum(1 for _ in run_events(su.world, traj, su.datum, su.faults["loc_same"], cfg=su.cfg, seed=seed,
                                  extrinsics=ex))
    gen, cpu = (time.perf_counter() - t) / traj.duration_s, (time.process_time() - c) / traj.duration_s
    res = {"sim.generate_seconds_per_sim_second": gen, "sim.cpu_seconds_per_sim_second": cpu,
           "sim.events_per_sim_second": n / traj.duration_s}
    if write_bags:
        with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
            man = json.loads(simulate(sc, seed, tmp, progress=False, runs=["loc_same"], cfg=cfg).read_text())
            res["sim.seconds_per_sim_second"] = man["runs"]["loc_same"]["wall_s"] / traj.duration_s
    else:
        res["sim.seconds_per_sim_second"] = gen
    return res
