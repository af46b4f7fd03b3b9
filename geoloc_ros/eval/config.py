"""Parameters of the evaluation and the report (thresholds that define 'success')."""
from __future__ import annotations

from dataclasses import dataclass

from geoloc_ros.config import param


@dataclass
class EvalConfig:
    """Thresholds and choices of ``geoloc eval`` / the demo report."""
    max_dt_s: float = param(0.01, "estimate/ground-truth stamps match within this", "s")
    success_max_m: float = param(2.0, "a pose (epoch or engine fix) is correct within this horizontal error", "m")
    success_max_yaw_deg: float = param(5.0, "... and within this yaw error", "deg")
    recall_radius_m: float = param(5.0, "a retrieved place is a true match within this distance", "m")
    rpe_delta_m: float = param(5.0, "path length between the two poses of an RPE pair", "m")
    nees_dims: list = param([0, 1, 5], "pose components of the NEES check (ROS order x,y,z,roll,pitch,yaw)")
    nees_prob: float = param(0.95, "probability mass of the chi-square consistency bounds")
    fix_max_gap_s: float = param(0.5, "ground-truth gap beyond which an engine fix is not scored", "s")
    map_cell_m: float = param(0.5, "cell of the map-density background of the trajectory plot", "m")
