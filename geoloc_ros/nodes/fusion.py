"""``fusion_node``: the fusion filter of the split layout (node name ``fusion_node``).

The all-in-one node with its engines off: it consumes ``imu``, ``wheel_odom``, ``gnss/fix``,
``initialpose`` and the engines' fixes ``geoloc/bev_fix`` / ``geoloc/object_fix``
(PoseWithCovarianceStamped in ``map``, from ``bev_localizer`` and ``object_localizer``), and
publishes the same outputs as ``geoloc_node`` (``geoloc/pose``, ``geoloc/odometry``,
``geoloc/path``, ``geoloc/local_odometry`` for the object engine, ``/diagnostics``, TF).
"""
from __future__ import annotations

import sys

from geoloc_ros.nodes.geoloc import GeolocNode
from geoloc_ros.nodes.runtime import spin_node

__all__ = ["FusionNode", "main"]


class FusionNode(GeolocNode):
    def __init__(self, node_name: str = "fusion_node", **kwargs):
        super().__init__(node_name, fusion_only=True, **kwargs)


def main(argv=None) -> int:
    """Console script ``fusion_node``."""
    return spin_node(FusionNode, argv)


if __name__ == "__main__":
    sys.exit(main())
