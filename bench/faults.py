"""Fault-injection benchmark (issue 8): every fault a robot meets, replayed through the pipeline
and, for a subset, through the node over real DDS.

1. Sensor/clock rows: a simulated run (tiny town, BEV map of its mapping run, IMU/wheel/GNSS/LiDAR
   in memory) with one fault each from :mod:`geoloc_ros.eval.inject`, through
   ``geoloc_ros.pipeline.Localizer``: injected, detected (alarms of the fault's kind in the
   estimate's counters / engine no-fix reasons, beyond the clean run's), crashes, ATE before,
   during and 10 s after the fault, time to recover to the pre-fault error level, fraction of
   epochs outside the published 3-sigma ellipse from the fault's start to 10 s after it.
2. Global rows: an initial pose 30 m off (``global_localize`` must find the right pose), the
   robot in a town that is not the mapped one (must never be 'localized').
3. File rows: truncated/corrupt/version-mismatched/escaping map directories and broken weights
   (clear error naming the file); an AST scan for anything that unpickles.
4. Node rows over real DDS (rclpy, private domain): NaN, wrong frame ids, empty clouds and a 10x
   IMU flood published to ``geoloc_node``: rejections counted in its diagnostics, the queue it
   holds, end-to-end latency (publish -> ``geoloc/pose``) p95 during the flood.

``python -m bench.faults [--quick]`` or ``geoloc bench faults``.
"""
from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.common import print_table, write_result

T_FAULT_S = 18.0
LIDAR_ROWS = {"nan_points", "empty_cloud", "tiny_cloud", "lidar_dropout", "nan_fields"}
# a load fault, not a sensor fault: the node's queue bounds it; the pipeline processes every sample.
# (wrong frame ids are a sensor fault since the pipeline rejects them: a blackout of every input)
NOT_SENSOR = {"imu_flood"}
DURATIONS = {"gnss_denial": 15.0, "gnss_drift": 15.0, "gnss_spoof": 15.0, "gnss_nofix_stale": 15.0}


# ---- 1. sensor and clock rows --------------------------------------------------------------------
def sensor_rows(scene, quick: bool) -> list[dict]:
    from geoloc_ros.eval.faultrun import run_case, score
    from geoloc_ros.eval.inject import STREAM_FAULTS, StreamFault

    def cfg_for(kind):
        cfg = scene.config()
        cfg.bev_period_s = 2.0 if quick else 1.0
        cfg.enable_bev = (kind in LIDAR_ROWS) or not quick
        return cfg

    cleans = {}
    rows = []
    for kind, (_, _, dur) in STREAM_FAULTS.items():
        key = cfg_for(kind).enable_bev
        if key not in cleans:
            cleans[key] = run_case(scene, [], "clean", cfg=cfg_for(kind))
        f = StreamFault(kind, scene.t_start + T_FAULT_S, DURATIONS.get(kind, dur))
        res = run_case(scene, [f], kind, cfg=cfg_for(kind))
        s = score(scene, res, cleans[key])
        s["bev"] = key
        s["sensor_fault"] = kind not in NOT_SENSOR
        s["time_left_s"] = float(scene.t_end - f.t1)
        rows.append(s)
        print(f"  {kind}: detected {s['detected']}, recovery {s['recovery_s']:.1f} s, "
              f"alarms {s['alarms']}", flush=True)
    return rows


# ---- 4. node over DDS ----------------------------------------------------------------------------
def node_rows(quick: bool) -> dict:
    """Bad messages and a 10x flood published to a live geoloc_node (no map, dead reckoning)."""
    try:
        import rclpy
        from geometry_msgs.msg import PoseWithCovarianceStamped
        from nav_msgs.msg import Odometry
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.node import Node
        from sensor_msgs.msg import Imu, NavSatFix, PointCloud2
    except ImportError as e:
        return {"skipped": f"rclpy not available ({e})"}
    from geoloc_ros.nodes.common import (OUTPUT_QOS, SENSOR_QOS, numpy_to_pointcloud2, pose_to_msg,
                                         s_to_stamp, stamp_to_s)
    from geoloc_ros.nodes.geoloc import GeolocNode

    ctx = rclpy.Context()
    ctx_domain = (os.getpid() % 100) + 120
    rclpy.init(context=ctx, domain_id=ctx_domain)
    node = GeolocNode(context=ctx, overrides={"publish_tf": False, "node.publish_period_s": 0.0})
    client = Node("faults_bench", context=ctx)
    ex = MultiThreadedExecutor(num_threads=3, context=ctx)
    ex.add_node(node)
    ex.add_node(client)
    th = threading.Thread(target=ex.spin, daemon=True)
    th.start()
    sent: dict = {}      # stamp (rounded, s) -> publish wall time
    lat_ms: dict = {"nominal": [], "flood": []}
    spans = {"nominal": [math.inf, -math.inf], "flood": [math.inf, -math.inf]}

    receipts: list = []  # (stamp rounded s, receive monotonic s) of every geoloc/pose

    def on_pose(m):
        t = round(stamp_to_s(m.header.stamp), 4)
        receipts.append((t, time.monotonic()))
        w = sent.get(t)
        for k, (a, b) in spans.items():
            if w is not None and a <= t <= b:
                lat_ms[k].append(1e3 * (time.monotonic() - w))

    client.create_subscription(PoseWithCovarianceStamped, "geoloc/pose", on_pose, OUTPUT_QOS)
    pub_imu = client.create_publisher(Imu, "imu", SENSOR_QOS)
    pub_wheel = client.create_publisher(Odometry, "wheel_odom", SENSOR_QOS)
    pub_init = client.create_publisher(PoseWithCovarianceStamped, "initialpose", OUTPUT_QOS)
    pub_pts = client.create_publisher(PointCloud2, "points", SENSOR_QOS)
    pub_gnss = client.create_publisher(NavSatFix, "gnss/fix", SENSOR_QOS)

    def wait(pred, timeout_s):
        t_end = time.monotonic() + timeout_s
        while time.monotonic() < t_end and not pred():
            time.sleep(0.02)
        return pred()

    def imu(t, frame="imu", acc=(0.0, 0.0, 9.80665)):
        m = Imu()
        m.header.stamp, m.header.frame_id = s_to_stamp(t), frame
        m.linear_acceleration.x, m.linear_acceleration.y, m.linear_acceleration.z = acc
        m.orientation_covariance[0] = -1.0
        return m

    def wheel(t, v, frame="odom"):
        m = Odometry()
        m.header.stamp, m.header.frame_id = s_to_stamp(t), frame
        m.child_frame_id = "base_link"
        m.twist.twist.linear.x = v
        m.twist.covariance[0], m.twist.covariance[35] = 0.01, 0.001
        return m

    out = {}
    try:
        wait(lambda: all(p.get_subscription_count() > 0 for p in (pub_imu, pub_wheel, pub_init, pub_pts)), 10.0)
        T0 = 2000.0
        for i in range(30):                                   # standstill, then an initial pose
            pub_imu.publish(imu(T0 + i * 0.01))
            time.sleep(0.003)
        init = PoseWithCovarianceStamped()
        init.header.stamp, init.header.frame_id = s_to_stamp(T0 + 0.3), "map"
        init.pose.pose = pose_to_msg(np.eye(4))
        init.pose.covariance = [float(v) for v in np.diag([0.04, 0.04, 0.04, 0.01, 0.01, 0.003]).reshape(-1)]
        pub_init.publish(init)
        wait(lambda: node.diag["initialpose"].accepted >= 1, 5.0)
        t = T0 + 0.3
        nominal_hz, n_nominal = 100.0, int(100 * (1.0 if quick else 3.0))
        spans["nominal"][0] = round(t + 0.5 / nominal_hz, 4)
        for i in range(n_nominal):                           # nominal: 100 Hz IMU, 20 Hz wheel
            t += 1.0 / nominal_hz
            tr = round(t, 4)
            sent[tr] = time.monotonic()
            pub_imu.publish(imu(tr))
            if i % 5 == 0:
                pub_wheel.publish(wheel(t, 0.0))
            time.sleep(1.0 / nominal_hz)
        spans["nominal"][1] = round(t, 4)
        wait(lambda: node.pending() == 0, 10.0)
        received0 = {k: node.diag[k].received for k in ("imu", "points", "wheel_odom", "gnss/fix")}
        before = {k: sum(node.diag[k].rejected.values()) for k in ("imu", "points", "wheel_odom", "gnss/fix")}
        injected = {"imu": 0, "points": 0, "wheel_odom": 0, "gnss/fix": 0}
        nan = float("nan")
        for i in range(20):                                  # bad messages
            tb = t + 0.001 * (i + 1)
            pub_imu.publish(imu(tb, acc=(nan, 0.0, 9.8)))
            pub_imu.publish(imu(tb, frame="wrong_frame"))
            pub_wheel.publish(wheel(tb, nan))
            pub_wheel.publish(wheel(tb, 0.0, frame="wrong_frame"))
            pub_pts.publish(numpy_to_pointcloud2(np.zeros((0, 3)), "lidar", tb))
            pub_pts.publish(numpy_to_pointcloud2(np.full((50, 3), nan), "lidar", tb))
            g = NavSatFix()
            g.header.stamp, g.header.frame_id = s_to_stamp(tb), "wrong_frame"
            g.latitude, g.longitude, g.altitude = 31.0, 121.0, 10.0
            pub_gnss.publish(g)
            injected["imu"] += 2
            injected["wheel_odom"] += 2
            injected["points"] += 2
            injected["gnss/fix"] += 1
            time.sleep(0.005)
        wait(lambda: node.pending() == 0, 10.0)
        time.sleep(0.3)
        detected = {k: sum(node.diag[k].rejected.values()) - before[k] for k in before}
        received = {k: node.diag[k].received - received0[k] for k in before}
        out["bad_messages.injected"] = sum(injected.values())
        out["bad_messages.received"] = sum(received.values())   # best-effort QoS may lose some
        out["bad_messages.detected"] = sum(min(detected[k], injected[k]) for k in injected)
        out["bad_messages.by_input"] = {k: {"published": injected[k], "received": received[k],
                                            "rejected": detected[k]} for k in injected}
        # flood: 10x nominal IMU rate for 2 s (paced), nothing else changes
        q = node.queue
        drops0 = q.dropped
        imu_st = node.diag["imu"]
        rx0, merged0, miss0 = imu_st.received, q.merged_by.get("imu", 0), imu_st.missing
        flood_hz = 10 * nominal_hz
        n_flood = int(flood_hz * (1.0 if quick else 2.0))
        # published by another process, as a sensor driver would: in this one the publishing
        # loop competes with the node for the interpreter and never reaches 10x
        t_wall0 = time.monotonic()
        flood_sent = _flood_from_subprocess(ctx_domain, t, flood_hz, n_flood)
        publish_wall = (max(flood_sent.values()) - min(flood_sent.values())) if flood_sent else float("nan")
        t += n_flood / flood_hz
        drained = wait(lambda: node.pending() == 0, 30.0)
        # DDS may still deliver a backlog after the node's queues ran empty: wait for quiet
        n_rx, t_quiet = -1, time.monotonic()
        while time.monotonic() - t_quiet < 0.5 and time.monotonic() - t_wall0 < 60.0:
            if imu_st.received != n_rx or node.pending():
                n_rx, t_quiet = imu_st.received, time.monotonic()
            time.sleep(0.02)
        lat_ms["flood"] = [1e3 * (w - flood_sent[ts]) for ts, w in receipts if ts in flood_sent]
        out["flood.messages"] = len(flood_sent)
        out["flood.publish_hz"] = len(flood_sent) / max(publish_wall, 1e-9)
        for k, v in lat_ms.items():
            out[f"{k}.latency_ms.p95"] = float(np.percentile(v, 95)) if v else float("nan")
            out[f"{k}.latency_ms.median"] = float(np.median(v)) if v else float("nan")
            out[f"{k}.poses"] = len(v)
        out["flood.node_latency_ms.p95"] = float(node.diag["imu"].latency_ms()[1])  # receive -> processed
        out["flood.queue_high_water"] = int(q.high_water)
        out["flood.queue_capacity"] = int(q.maxlen)
        out["flood.dropped"] = int(q.dropped - drops0)
        # what the node reports of the flood: received by its callback, merged to catch up (not
        # dropped), lost before the callback (stamp gaps), received but not counted anywhere
        out["flood.imu_received"] = int(imu_st.received - rx0)
        out["flood.imu_merged"] = int(q.merged_by.get("imu", 0) - merged0)
        out["flood.imu_missing"] = int(imu_st.missing - miss0)
        out["flood.unaccounted"] = int(node.unaccounted("imu"))
        out["flood.drained"] = bool(drained)
        out["node.alive"] = bool(th.is_alive() and node._worker.is_alive())
        out["node.pipeline_errors"] = int(sum(node.diag[k].rejected.get("pipeline_error", 0) for k in
                                              ("imu", "points", "wheel_odom", "gnss/fix")))
    finally:
        ex.remove_node(client)
        ex.remove_node(node)
        ex.shutdown()
        node.destroy_node()
        client.destroy_node()
        rclpy.shutdown(context=ctx)
    return out


_FLOOD_PUBLISHER = """
import json, sys, time
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import Imu
from geoloc_ros.nodes.common import SENSOR_QOS, s_to_stamp
t0, hz, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
rclpy.init()
node = Node("faults_flood")
pub = node.create_publisher(Imu, "imu", SENSOR_QOS)
t_end = time.monotonic() + 10.0
while pub.get_subscription_count() == 0 and time.monotonic() < t_end:
    time.sleep(0.02)
time.sleep(0.3)
sent = {}
w0 = time.monotonic()
for i in range(n):
    ts = round(t0 + (i + 1) / hz, 4)
    m = Imu()
    m.header.stamp, m.header.frame_id = s_to_stamp(ts), "imu"
    m.linear_acceleration.z = 9.80665
    m.orientation_covariance[0] = -1.0
    sent[ts] = time.monotonic()
    pub.publish(m)
    dt = w0 + (i + 1) / hz - time.monotonic()
    if dt > 0:
        time.sleep(dt)
print(json.dumps(sorted(sent.items())))
node.destroy_node()
rclpy.shutdown()
"""


def _flood_from_subprocess(domain: int, t0: float, hz: float, n: int) -> dict:
    """Publish ``n`` IMU messages at ``hz`` (stamps after ``t0``) from another process on the
    same domain; returns {stamp rounded s: publish monotonic s} (CLOCK_MONOTONIC is system-wide)."""
    import json
    import subprocess
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain))
    repo = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.run([sys.executable, "-c", _FLOOD_PUBLISHER, repr(t0), repr(hz), str(n)], env=env,
                       capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError(f"flood publisher failed: {p.stderr[-500:]}")
    return {float(k): float(v) for k, v in json.loads(p.stdout.strip().splitlines()[-1])}


def _jsonable(v):
    """NaN/inf -> None, numpy scalars -> Python, recursively (for the JSON 'extra' section)."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


# ---- the table -----------------------------------------------------------------------------------
def run(out_dir: Path = Path("bench_out"), quick: bool = False) -> dict:
    import torch

    from geoloc_ros.config import GeolocConfig
    from geoloc_ros.eval.faultrun import AFTER_S, far_initial_pose, make_scene, outside_map
    from geoloc_ros.eval.filefaults import file_fault_rows, pickle_loads
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    repo = Path(__file__).resolve().parents[1]
    work = Path(tempfile.mkdtemp(prefix="geoloc_faults_"))
    dur = 50.0 if quick else 70.0
    print(f"scene: tiny town, {dur:.0f} s run, BEV map of the mapping run ({work})", flush=True)
    scene = make_scene(work / "scene", seed=0, duration_s=dur)

    rows = sensor_rows(scene, quick)
    print_table(["fault", "injected", "detected", "crashes", "ATE pre m", "ATE during m", "ATE +10s m",
                 "recovery s", "out 3sig", "bev", "alarms"],
                [[r["fault"], r["injected"], r["detected"], r["crashes"], r["ate_pre_m"], r["ate_during_m"],
                  r["ate_after_m"], r["recovery_s"], r["outside_3sigma"], "on" if r["bev"] else "off",
                  ", ".join(f"{k}={v}" for k, v in list(r["alarms"].items())[:2])] for r in rows],
                title="\nsensor and clock faults through the pipeline (times after the fault's end)")

    gcfg = scene.config()
    gcfg.bev_period_s = 2.0 if quick else 1.0
    far = far_initial_pose(scene, offset_m=30.0, cfg=gcfg)
    other = make_scene(work / "scene", seed=0, duration_s=dur, world_seed=7)
    outside = outside_map(other, cfg=gcfg)
    print_table(["row", "result"], [
        ["initial pose 30 m off: error before service (m)", far["error_before_m"]],
        ["  best global_localize candidate error (m)", far["candidate_error_m"]],
        ["  error after (RMS last 10 s, m)", far["error_after_m"]],
        ["outside the map: fraction of epochs 'localized'", outside["localized_fraction"]],
        ["  BEV fixes accepted / service candidates", f"{outside['bev_fixes_accepted']} / {outside['service_candidates']}"],
    ], title="\nglobal localization rows")

    fcfg = GeolocConfig()
    fcfg.enable_objects = False
    frows = file_fault_rows(scene.mapdir.root, work / "broken", fcfg)
    pick = pickle_loads(repo / "geoloc_ros") + pickle_loads(repo / "bench")
    print_table(["file fault", "clear error", "crash", "message"],
                [[r["fault"], r["ok"], r["crash"], (r["error"] or r["why"])[:90]] for r in frows],
                title="\nfile faults")
    print(f"pickle loads in geoloc_ros/ and bench/: {len(pick)}" + "".join(f"\n  {p}" for p in pick))

    node = node_rows(quick)
    if "skipped" in node:
        print(f"\nnode over DDS: skipped ({node['skipped']})")
    else:
        print_table(["node row", "value"], [[k, v] for k, v in node.items()], title="\nnode over DDS")

    sensor = [r for r in rows if r["sensor_fault"]]
    rec = [r["recovery_s"] if np.isfinite(r["recovery_s"]) else r["time_left_s"] - 3.0 for r in sensor]
    not_rec = [r["fault"] for r in sensor if not (np.isfinite(r["recovery_s"]) and r["recovery_s"] <= AFTER_S)]
    # issue 8: "no published pose outside its own 3-sigma bound ... during faults": every row
    out3 = [r["outside_3sigma"] for r in rows if np.isfinite(r["outside_3sigma"])]
    crashes = (sum(r["crashes"] for r in rows) + sum(int(r["crash"]) for r in frows) + far["crashes"]
               + outside["crashes"] + (0 if "skipped" in node else int(not node["node.alive"])
                                       + node["node.pipeline_errors"]))
    n_inj = len(rows) + len(frows) + 2 + (0 if "skipped" in node else 2)
    n_det = (sum(r["detected"] > 0 for r in rows) + sum(r["ok"] for r in frows)
             + int(far["candidate_error_m"] < 2.0) + int(outside["localized_fraction"] == 0.0)
             + (0 if "skipped" in node else int(node["bad_messages.detected"] >= node["bad_messages.received"])
                + int(node["flood.dropped"] > 0 or node["flood.queue_high_water"] < node["flood.queue_capacity"])))
    metrics = {
        "crashes": crashes, "faults_injected": n_inj, "faults_detected": n_det,
        "recovery_s.max": float(max(rec)) if rec else float("nan"),
        "rows_not_recovered_10s": len(not_rec),
        "outside_3sigma_fraction": float(np.mean(out3)) if out3 else float("nan"),
        "far_init.candidate_error_m": far["candidate_error_m"], "far_init.error_after_m": far["error_after_m"],
        "outside_map.localized_fraction": outside["localized_fraction"],
        "file_faults.clear_errors": sum(r["ok"] for r in frows), "file_faults.rows": len(frows),
        "pickle_loads": len(pick),
    }
    for r in rows:
        for k in ("detected", "recovery_s", "ate_during_m", "ate_after_m", "outside_3sigma"):
            metrics[f"row.{r['fault']}.{k}"] = r[k]
    for k, v in node.items():
        if isinstance(v, (bool, int, float)):
            metrics[k if k.startswith(("flood.", "node.", "nominal.")) else f"node.{k}"] = float(v)
    metrics.setdefault("flood.latency_ms.p95", float("nan"))
    print(f"\nnot recovered within {AFTER_S:.0f} s: {', '.join(not_rec) or 'none'}")
    over = sorted(((r["outside_3sigma"], r["fault"]) for r in rows
                   if np.isfinite(r["outside_3sigma"]) and r["outside_3sigma"] > 0.05), reverse=True)
    print("rows over 5% of epochs outside 3-sigma: " + (", ".join(f"{k} {v:.2f}" for v, k in over) or "none"))
    print(f"crashes {crashes}, faults injected {n_inj}, detected {n_det}, "
          f"outside 3-sigma {metrics['outside_3sigma_fraction']:.3f}, flood p95 {metrics['flood.latency_ms.p95']:.1f} ms")
    cmd = "geoloc bench faults" + (" --quick" if quick else "")
    write_result("faults", metrics, cmd, time.perf_counter() - t_start, out_dir,
                 extra=_jsonable({"rows": rows, "file_rows": frows, "far_initial_pose": far, "outside_map": outside,
                        "node": node, "not_recovered": not_rec}))
    shutil.rmtree(work, ignore_errors=True)
    return metrics


if __name__ == "__main__":
    run(Path("bench_out"), quick="--quick" in sys.argv)
