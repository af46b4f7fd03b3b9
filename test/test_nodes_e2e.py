"""End to end over real DDS: simulate a small town (M3DGR layout), build its map, start the
all-in-one node on the map, publish the localization run with `geoloc play` (a separate process,
Livox CustomMsg converted, /clock) and compare ``geoloc/pose`` with the ground truth."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2 wheels) not installed")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import PoseArray, PoseWithCovarianceStamped  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from visualization_msgs.msg import MarkerArray  # noqa: E402

from geoloc_ros.geometry import interpolate_poses, se2_from_matrix, wrap_angle  # noqa: E402
from geoloc_ros.nodes.common import OUTPUT_QOS, msg_to_pose, stamp_to_s  # noqa: E402

LOC_S = 14.0
RATE = 0.5


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """A 100 m town: a 30 s mapping run and a 14 s localization run over the same roads."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from geoloc_ros.maps.build import build_map
    from geoloc_ros.sim.scenario import Scenario, simulate
    sc = Scenario("nodes_e2e", 100.0, {"mapping": 30.0, "loc_same": LOC_S, "loc_reverse": LOC_S,
                                         "loc_lateral": LOC_S}, camera_rate_hz=2.0,
                  layouts={"mapping": ("m3dgr",), "loc_same": ("m3dgr",)})
    out = tmp_path_factory.mktemp("nodes_e2e")
    simulate(sc, seed=0, out_dir=out, runs=["mapping", "loc_same"], progress=False)
    build_map(out / "m3dgr" / "mapping.bag", "m3dgr", out / "gt_mapping.tum", out / "map", progress=False)
    return out


def wait(pred, timeout_s):
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end and not pred():
        time.sleep(0.05)
    return pred()


def test_node_localizes_a_played_run_on_its_map(sim):
    from geoloc_ros.io.tum import read_tum
    from geoloc_ros.nodes.geoloc import GeolocNode
    domain = (os.getpid() % 150) + 50
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    node = GeolocNode(context=ctx, overrides={"profile": "m3dgr", "map_dir": str(sim / "map"),
                                              "publish_tf": False})
    client = Node("e2e_client", context=ctx)
    ex = MultiThreadedExecutor(num_threads=3, context=ctx)
    ex.add_node(node)
    ex.add_node(client)
    threading.Thread(target=ex.spin, daemon=True).start()
    poses, diags, cands = [], [], []
    client.create_subscription(PoseWithCovarianceStamped, "geoloc/pose", poses.append, OUTPUT_QOS)
    client.create_subscription(DiagnosticArray, "/diagnostics", diags.append, OUTPUT_QOS)
    client.create_subscription(PoseArray, "geoloc/candidates", cands.append, OUTPUT_QOS)
    markers = []
    client.create_subscription(MarkerArray, "geoloc/objects", markers.append, OUTPUT_QOS)
    answer = {}
    try:
        assert node.localizer.bev is not None, node.map_error
        env = dict(os.environ, ROS_DOMAIN_ID=str(domain))
        player = subprocess.Popen([sys.executable, "-m", "geoloc_ros.play", str(sim / "m3dgr" / "loc_same.bag"),
                                   "--profile", "m3dgr", "--rate", str(RATE)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

        def ask():  # the operator asks for a global localization half-way through
            time.sleep(0.6 * LOC_S / RATE)
            cli = client.create_client(Trigger, "geoloc/global_localize")
            cli.wait_for_service(timeout_sec=10.0)
            scan = node.localizer.last_scan
            answer["n_before"] = len(cands)
            fut = cli.call_async(Trigger.Request())
            wait(fut.done, 60.0)
            answer.update(resp=fut.result(), scan_t=None if scan is None else scan.t)
        asker = threading.Thread(target=ask, daemon=True)
        asker.start()
        out, _ = player.communicate(timeout=LOC_S / RATE + 120)
        assert player.returncode == 0, out
        assert wait(lambda: node.pending() == 0, 60.0), "node did not catch up"
        asker.join(timeout=60.0)
        time.sleep(1.0)

        t_gt, T_gt = read_tum(sim / "gt_loc_same.tum")
        assert len(poses) > 20, f"only {len(poses)} poses; diag: " + str(
            {k: dict(node.diag[k].rejected) for k in ("points", "imu", "wheel_odom", "gnss/fix")})
        errs, sig = [], []
        for m in poses:
            assert m.header.frame_id == "map"
            C = np.asarray(m.pose.covariance).reshape(6, 6)
            assert np.all(np.isfinite(C)) and C[0, 0] > 0 and C[1, 1] > 0
            Tq, ok = interpolate_poses([stamp_to_s(m.header.stamp)], t_gt, T_gt)
            if ok[0]:
                P = msg_to_pose(m.pose.pose)
                errs.append(float(np.linalg.norm(P[:2, 3] - Tq[0][:2, 3])))
                sig.append(math.sqrt(max(C[0, 0], C[1, 1])))
        errs, sig = np.array(errs), np.array(sig)
        assert len(errs) > 20
        # the second half of the run: the filter has converged on GNSS (and the map's fixes)
        half = errs[len(errs) // 2:]
        lat = node.diag["fusion"].latency_ms()
        print(f"\ne2e: {len(poses)} poses, error median {np.median(errs):.2f} m, second half median "
              f"{np.median(half):.2f} m / max {half.max():.2f} m, sigma median {np.median(sig):.2f} m, "
              f"latency mean/p95 {lat[0]:.0f}/{lat[1]:.0f} ms, service: {answer.get('resp')}")
        assert np.median(half) < 3.0, f"median error {np.median(half):.2f} m"
        inside = np.mean(half <= 3.0 * sig[len(errs) // 2:] + 0.5)
        assert inside >= 0.8, f"only {inside:.0%} of poses within their 3-sigma bound"
        # diagnostics: every engine and GNSS reported
        names = {s.name for s in diags[-1].status}
        assert {"geoloc: bev", "geoloc: objects", "geoloc: fusion", "geoloc: gnss"} <= names
        # the map's objects are on geoloc/objects (RViz), one cube per object of the map
        if node.localizer.objects is not None:
            n_obj = len(node.localizer.objects.map.objects.centroids)
            assert markers, "no geoloc/objects"
            cubes = [m for m in markers[-1].markers if m.ns == "map_objects"]
            assert len(cubes) == n_obj and all(m.header.frame_id == "map" for m in cubes)
        # the service answered; its candidates (when the BEV engine finds any) include the truth
        resp = answer.get("resp")
        assert resp is not None, "geoloc/global_localize did not answer"
        if resp.success:
            Tq, _ = interpolate_poses([answer["scan_t"]], t_gt, T_gt)
            xt, yt, yawt = se2_from_matrix(Tq[0])
            after = [p for pa in cands[answer["n_before"]:] for p in pa.poses]
            near = [p for p in after
                    if math.hypot(p.position.x - xt, p.position.y - yt) < 3.0
                    and abs(float(wrap_angle(se2_from_matrix(msg_to_pose(p))[2] - yawt))) < math.radians(10)]
            assert near, f"no candidate near the truth ({xt:.1f}, {yt:.1f}): {resp.message}"
        else:
            assert resp.message == "no candidate"
    finally:
        ex.remove_node(node)
        ex.remove_node(client)
        ex.shutdown()
        node.destroy_node()
        client.destroy_node()
        rclpy.shutdown(context=ctx)
