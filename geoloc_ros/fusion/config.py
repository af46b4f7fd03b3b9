"""Parameters of the error-state fusion filter (owned by geoloc_ros.fusion)."""
from dataclasses import dataclass

from geoloc_ros.config import param


@dataclass
class FusionConfig:
    gravity_mps2: float = param(9.80665, "gravity magnitude", "m/s^2")
    history_s: float = param(1.5, "state history kept for late measurements", "s")
