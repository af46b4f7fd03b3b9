"""``bev_localizer``: BEV place recognition as its own process (split layout).

Subscribes ``points`` (PointCloud2; ``points_livox`` where the Livox type is importable), runs
:class:`geoloc_ros.bev.engine.BevLocalizer` at most every ``bev_period_s`` on the newest scan,
and publishes the best OK candidate on ``geoloc/bev_fix`` (PoseWithCovarianceStamped, ``map``)
and the ranked ones on ``geoloc/candidates``. Service ``geoloc/global_localize`` runs it on the
latest scan and answers with a one-line summary.
"""
from __future__ import annotations

import math
import sys

from sensor_msgs.msg import PointCloud2
from std_srvs.srv import Trigger

from geoloc_ros.nodes.common import SENSOR_QOS, guarded
from geoloc_ros.nodes.engine_node import EngineNode

__all__ = ["BevLocalizerNode", "main"]


class BevLocalizerNode(EngineNode):
    engine_name = "bev"
    fix_topic = "geoloc/bev_fix"

    def __init__(self, node_name: str = "bev_localizer", **kwargs):
        super().__init__(node_name, **kwargs)
        self._t_last_query = -math.inf
        self.last_scan = None
        self.subscribe("points", PointCloud2, "points", self.decoder.points, SENSOR_QOS)
        try:
            from livox_ros_driver2.msg import CustomMsg  # type: ignore
            self.subscribe("points", CustomMsg, "points_livox", self.decoder.livox, SENSOR_QOS)
        except ImportError:
            self.get_logger().info("livox_ros_driver2 not installed: only PointCloud2 on 'points'")
        self.create_service(Trigger, "geoloc/global_localize", guarded(self, None, self._srv_global))

    def build_engine(self, mapdir):
        from geoloc_ros.bev.database import BevDatabase
        from geoloc_ros.bev.engine import BevLocalizer
        return BevLocalizer(self.cfg.bev, BevDatabase.load(mapdir, self.cfg.bev))

    def fix_stamp(self, scan) -> float:
        """The BEV image shows the robot mid-sweep: candidates carry that stamp (ScanEvent.t_middle)."""
        return scan.t_middle

    def run(self, name, scan):
        self.last_scan = scan
        if scan.t - self._t_last_query < self.cfg.bev_period_s:
            return None
        self._t_last_query = scan.t
        return self.engine.localize(scan)

    def _srv_global(self, request, response):
        from geoloc_ros.nodes.runtime import summarize_candidates
        if self.engine is None or self.last_scan is None:
            response.success = False
            response.message = self.map_error if self.engine is None else "no scan received yet"
            return response
        with self.lock:
            cands = [c for c in self.engine.localize(self.last_scan) if c.T_map_base is not None]
        self.publish_candidates(cands, self.fix_stamp(self.last_scan))
        response.success = bool(cands)
        response.message = summarize_candidates(cands)
        return response


def main(argv=None) -> int:
    """Console script ``bev_localizer``."""
    from geoloc_ros.nodes.runtime import spin_node
    return spin_node(BevLocalizerNode, argv)


if __name__ == "__main__":
    sys.exit(main())
