"""geoloc_ros: where a ground robot is on a prior map.

The core (``geometry``, ``events``, ``config``, ``pipeline`` and the ``bev``, ``objects``,
``fusion``, ``maps``, ``io``, ``sim`` and ``eval`` packages) is plain Python and imports no ROS;
``nodes`` and parts of ``cli`` are the doors into it.
"""

__version__ = "0.1.0"
