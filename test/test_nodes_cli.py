"""The console scripts as a user runs them: ``geoloc_node --ros-args --params-file ... -p ...``
starts, reports on /diagnostics over DDS, and stops cleanly on Ctrl-C."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2 wheels) not installed")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _exe(name: str, module: str) -> list[str]:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", module]


@pytest.mark.parametrize("name,module,node_name", [
    ("geoloc_node", "geoloc_ros.nodes.geoloc", "geoloc"),
    ("fusion_node", "geoloc_ros.nodes.fusion", "fusion_node"),
])
def test_console_script_runs_with_a_params_file_and_stops_cleanly(name, module, node_name, tmp_path):
    domain = (os.getpid() % 150) + 50
    cmd = _exe(name, module) + ["--ros-args", "--params-file", str(ROOT / "config" / "m3dgr.yaml"),
                                "-p", f"map_dir:={tmp_path / 'no_map'}", "-p", "node.diagnostics_period_s:=0.5"]
    proc = subprocess.Popen(cmd, env=dict(os.environ, ROS_DOMAIN_ID=str(domain)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    node = Node("cli_probe", context=ctx)
    got = []
    node.create_subscription(DiagnosticArray, "/diagnostics", got.append, 10)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    threading.Thread(target=ex.spin, daemon=True).start()
    try:
        t_end = time.monotonic() + 60
        while time.monotonic() < t_end and proc.poll() is None and not any(
                s.name.startswith(f"{node_name}: ") for a in got for s in a.status):
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()[0]
        names = {s.name for a in got for s in a.status}
        assert f"{node_name}: fusion" in names and f"{node_name}: bev" in names, names
        bev = next(s for a in got for s in a.status if s.name == f"{node_name}: bev")
        if name == "geoloc_node":   # the missing map is reported, not fatal
            assert "no_map" in bev.message
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        ex.remove_node(node)
        ex.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)
    assert proc.returncode == 0, out[-2000:]
    assert "Traceback" not in out, out[-2000:]
