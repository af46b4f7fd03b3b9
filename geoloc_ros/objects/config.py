"""Parameters of the object-map alignment engine (owned by geoloc_ros.objects)."""
from dataclasses import dataclass

from geoloc_ros.config import param


@dataclass
class ObjectsConfig:
    submap_spacing_m: float = param(10.0, "travel between new submaps", "m")
    submap_radius_m: float = param(15.0, "radius of a submap", "m")
    min_associations: int = param(4, "associations needed to accept a fix")
