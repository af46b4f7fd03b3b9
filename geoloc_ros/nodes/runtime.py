"""Start-up helpers shared by the node executables: map and profile loading that never kills a
node, the one-line candidate summary of the services, and the spin loop of the console scripts."""
from __future__ import annotations

import math
import sys

import numpy as np
import rclpy

from geoloc_ros import events as ev
from geoloc_ros.geometry import se2_from_matrix

__all__ = ["load_map_and_profile", "summarize_candidates", "spin_node"]


def load_map_and_profile(node, cfg):
    """(mapdir or None, profile or None, error text or ''): failures are logged, never raised."""
    mapdir, profile, err = None, None, ""
    if cfg.map_dir:
        try:
            from geoloc_ros.maps.mapdir import MapDir
            mapdir = MapDir.open(cfg.map_dir)
        except Exception as e:  # noqa: BLE001 - a bad map must not kill the node
            err = f"map '{cfg.map_dir}' not usable: {e}"
            node.get_logger().error(err + " -- running without a prior map (dead reckoning)")
    try:
        from geoloc_ros.io.profiles import load_profile
        profile = load_profile(cfg.profile)
    except Exception as e:  # noqa: BLE001
        node.get_logger().warning(f"profile '{cfg.profile}' not loaded ({e}): identity extrinsics, "
                               "any frame_id accepted")
    return mapdir, profile, err


def summarize_candidates(cands: list[ev.Candidate], n: int = 3) -> str:
    """One line: how many candidates and the best ``n`` as (x, y, yaw) score [source]."""
    if not cands:
        return "no candidate"
    parts = []
    for i, c in enumerate(cands[:n]):
        x, y, yaw = se2_from_matrix(np.asarray(c.T_map_base, float))
        parts.append(f"#{i + 1} ({x:.2f}, {y:.2f}, {math.degrees(yaw):.1f} deg) "
                     f"score {c.score:.3f} [{c.source or '?'}]")
    return f"{len(cands)} candidate(s): " + "; ".join(parts)


def spin_node(factory, argv=None, threads: int = 3) -> int:
    """rclpy.init, build ``factory()``, spin it on a MultiThreadedExecutor until Ctrl-C/shutdown."""
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
    rclpy.init(args=sys.argv if argv is None else argv)
    node = None
    try:
        node = factory()
        ex = MultiThreadedExecutor(num_threads=threads)
        ex.add_node(node)
        ex.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0
