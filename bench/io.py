"""Benchmark of bag I/O (and, through its hook, of the simulator).

``bags.read_msgs_per_s``: messages per second through :func:`geoloc_ros.io.bags.read_events`
(deserialize + decode + profile quirks + reordering), over the real Husky bag (IMU/wheel/GPS,
bz2 chunks) and an M3DGR-layout bag written here (20k-point MID-360 CustomMsg at 10 Hz, IMU
200 Hz, wheel 20 Hz, u-blox fix + PVT 10 Hz, 640x480 JPEG + compressedDepth 15 Hz).
``sim.*``: ``geoloc_ros.sim.scenario.sim_seconds_per_sim_second`` when the simulator is installed.

Run: ``geoloc bench io`` or ``python -m bench.io [--quick]``. Never asserts timings.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import print_table, write_result

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
HUSKY = REAL / "rl_husky_gps" / "husky_imu_odom_gps.bag"


def _m3dgr_events(seconds: float, seed: int = 0):
    """A synthetic M3DGR-rate sensor stream (random but realistic sizes), time-ordered."""
    from geoloc_ros.events import FixStatus, GnssEvent, ImageEvent, ImuEvent, ScanEvent, WheelEvent
    rng = np.random.default_rng(seed)
    t0 = 1_737_500_000.0
    evs = []
    for i in range(int(seconds * 200)):
        evs.append(ImuEvent(t0 + i / 200, rng.normal(size=3) + [0, 0, 9.81], rng.normal(size=3) * 0.05))
    for i in range(int(seconds * 20)):
        evs.append(WheelEvent(t0 + i / 20 + 0.003, 1.0, 0.05))
    for i in range(int(seconds * 10)):
        t = t0 + i / 10
        n = 20000
        evs.append(ScanEvent(t + 0.001, rng.normal(size=(n, 3)) * 20, rng.integers(0, 255, n).astype(np.float32),
                             np.sort(rng.uniform(0, 0.1, n)), rng.integers(0, 4, n)))
        evs.append(GnssEvent(t + 0.02, 31.0 + i * 1e-6, 121.4, 10.0, np.diag([1.0, 1.0, 4.0]), FixStatus.FIX))
    yy, xx = np.mgrid[0:480, 0:640]
    base = np.stack([xx % 256, yy % 256, (xx + yy) % 256], axis=2).astype(np.uint8)
    depth = (1.0 + (xx + yy) / 400.0).astype(np.float32)
    for i in range(int(seconds * 15)):
        evs.append(ImageEvent(t0 + i / 15 + 0.005, np.roll(base, i, axis=1), depth))
    return sorted(evs, key=lambda e: e.t)


def _time_read(path, profile) -> tuple[int, float, float]:
    """(messages, wall s, process CPU s) for reading every primary role of ``path``."""
    from geoloc_ros.io.assemble import AssemblerStats
    from geoloc_ros.io.bags import read_events
    st = AssemblerStats()
    t, c = time.perf_counter(), time.process_time()
    for _ in read_events(path, profile, stats=st):
        pass
    return sum(st.decoded.values()) + sum(st.skipped.values()), time.perf_counter() - t, time.process_time() - c


def run(out_dir: Path = Path("bench_out"), quick: bool = False) -> dict:
    from geoloc_ros.io.bags import bag_info
    from geoloc_ros.io.writer import BagWriter
    t_all = time.perf_counter()
    metrics: dict[str, float] = {}
    rows = []
    total_n, total_s, total_cpu = 0, 0.0, 0.0
    if HUSKY.is_file():
        n, dt, cpu = _time_read(HUSKY, "husky")
        metrics["bags.husky.read_msgs_per_s"] = n / dt
        metrics["bags.husky.read_msgs_per_cpu_s"] = n / cpu
        rows.append(["husky (real, ROS 1 bz2)", "read_events", n, dt, n / dt])
        total_n, total_s, total_cpu = total_n + n, total_s + dt, total_cpu + cpu
    else:
        print(f"(Husky bag not found at {HUSKY}: skipped)")
    seconds = 3.0 if quick else 10.0
    evs = _m3dgr_events(seconds)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m3dgr_bench.bag"
        t = time.perf_counter()
        with BagWriter(path, "m3dgr") as w:
            for e in evs:
                w.write(e)
        dtw = time.perf_counter() - t
        nw = sum(w.counts.values())
        metrics["bags.m3dgr.write_msgs_per_s"] = nw / dtw
        metrics["bags.m3dgr.write_seconds_per_bag_second"] = dtw / seconds
        rows.append([f"m3dgr layout, {seconds:.0f} s", "BagWriter.write", nw, dtw, nw / dtw])
        n, dt, cpu = _time_read(path, "m3dgr")
        info = bag_info(path)
        metrics["bags.m3dgr.read_msgs_per_s"] = n / dt
        metrics["bags.m3dgr.read_msgs_per_cpu_s"] = n / cpu
        metrics["bags.m3dgr.read_seconds_per_bag_second"] = dt / seconds
        metrics["bags.m3dgr.bag_mb_per_s"] = path.stat().st_size / 1e6 / seconds
        rows.append([f"m3dgr layout, {seconds:.0f} s ({info.message_count} msgs)", "read_events", n, dt, n / dt])
        total_n, total_s, total_cpu = total_n + n, total_s + dt, total_cpu + cpu
    metrics["bags.read_msgs_per_s"] = total_n / total_s
    metrics["bags.read_msgs_per_cpu_s"] = total_n / total_cpu  # less sensitive to a busy machine
    rows.append(["all of the above", "read_events", total_n, total_s, total_n / total_s])
    rows.append(["all of the above", "read_events per CPU s", total_n, total_cpu, total_n / total_cpu])
    try:  # the simulator's own timing (sim helper), when present
        from geoloc_ros.sim.scenario import sim_seconds_per_sim_second
    except ImportError:
        sim_seconds_per_sim_second = None
    if sim_seconds_per_sim_second is not None:
        try:
            sim = sim_seconds_per_sim_second(sim_s=3.0 if quick else 10.0)
            metrics.update(sim)
            for k, v in sim.items():
                rows.append(["simulator", k, "", "", v])
        except Exception as e:  # noqa: BLE001 - report, do not fail the benchmark
            print(f"(simulator timing failed: {type(e).__name__}: {e})")
    print_table(["data", "what", "messages", "seconds", "msgs/s or value"], rows, title="bench io")
    seconds_all = time.perf_counter() - t_all
    cmd = "geoloc bench io" + (" --quick" if quick else "")
    write_result("io", metrics, cmd, seconds_all, out_dir)
    return metrics


if __name__ == "__main__":
    run(quick="--quick" in sys.argv)
