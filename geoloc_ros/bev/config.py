"""Parameters of the BEV place-recognition engine (owned by geoloc_ros.bev)."""
from dataclasses import dataclass

from geoloc_ros.config import param


@dataclass
class BevConfig:
    crop_m: float = param(40.0, "points with |x| or |y| beyond this are dropped before the BEV image", "m")
    voxel_m: float = param(0.4, "voxel size of the downsampling before the BEV image", "m")
    top_k: int = param(5, "keyframes retrieved and re-ranked by pose inliers")
