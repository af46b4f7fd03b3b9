"""Simulator: a procedural town, smooth road trajectories and the sensors of both dataset layouts.

* :mod:`geoloc_ros.sim.world`: ``make_world(seed, size_m)`` -> :class:`World` (open3d ray
  casting, objects with ids/classes/colours/poses, ``move_objects`` for a changed world).
* :mod:`geoloc_ros.sim.trajectory`: :class:`Trajectory` (``poses(t)``, ``state(t)`` with
  analytic velocity, acceleration and body rates).
* :mod:`geoloc_ros.sim.sensors`: generators of :mod:`geoloc_ros.events` (``lidar_scans``,
  ``rgbd``, ``imu``, ``wheel``, ``gnss``) and scripted :class:`Fault` intervals.
* :mod:`geoloc_ros.sim.scenario`: ``prepare``/``make_runs``/``run_events`` in memory and
  ``simulate`` writing bags (m3dgr ROS 1, oxford_spires ROS 2), ground truth and a manifest.
"""
