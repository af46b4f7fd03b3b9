"""Parameters of the object-map alignment engine (owned by geoloc_ros.objects)."""
from dataclasses import dataclass

from geoloc_ros.config import param


@dataclass
class ObjectsConfig:
    # --- submaps -------------------------------------------------------------------------------
    submap_spacing_m: float = param(10.0, "travel between new submaps", "m")
    submap_radius_m: float = param(15.0, "radius of a submap", "m")
    submap_max_objects: int = param(40, "at most this many objects (nearest the centre) per submap")
    min_submap_objects: int = param(4, "a query submap with fewer objects gives no fix")
    # --- association (ROMAN gravity-aware CLIPPER) ---------------------------------------------
    sigma_m: float = param(0.4, "pairwise consistency kernel width (horizontal distance and signed height difference)", "m")
    epsilon_m: float = param(0.6, "pairwise consistency bound: a larger difference is inconsistent", "m")
    mindist_m: float = param(0.4, "pairs of objects closer than this in one view are not used", "m")
    ratio_floor: float = param(0.05, "shape/volume values are floored at this before min/max ratios")
    ratio_eps: float = param(0.2, "a shape/volume min/max ratio under this rules a candidate out")
    cos_min: float = param(0.75, "appearance cosine mapped to 0 (and below: candidate ruled out)")
    cos_max: float = param(0.97, "appearance cosine mapped to 1")
    max_candidates: int = param(1600, "at most this many candidate associations (best single scores kept)")
    solver_seed: int = param(0, "seed of the solver's random start vector")
    # --- registration / acceptance -------------------------------------------------------------
    min_associations: int = param(5, "associations needed to accept a fix (4 determine a 4-DoF pose; chance 4-cliques between unrelated places are common, 5-cliques were not seen)")
    min_distinct_ratio: float = param(1.5, "the selected cluster must be this many times the best disjoint runner-up cluster (0: off)")
    min_spread_m: float = param(0.5, "smaller horizontal spread (std) of associated objects; below: collinear, rejected", "m")
    min_sigma_m: float = param(0.15, "floor of the per-axis centroid residual sigma in the fix covariance (calibrated: NEES ~ 4 on the bench pairs)", "m")
    max_rms_m: float = param(1.0, "largest RMS centroid residual of an accepted fix", "m")
    min_margin: float = param(2.0, "the best map submap must have this many times the associations of any cluster (any map submap, accepted or not) that puts the query elsewhere")
    disagree_m: float = param(3.0, "two fixes further apart than this disagree", "m")
    # --- which frames are segmented ------------------------------------------------------------
    frame_min_travel_m: float = param(1.0, "a scan/RGB-D frame is segmented only after this much travel since the last one", "m")
    frame_min_yaw_rad: float = param(0.3, "... or this much rotation", "rad")
    # --- segmentation (LiDAR) ------------------------------------------------------------------
    voxel_m: float = param(0.05, "voxel size of the down-sampled cloud", "m")
    max_range_m: float = param(30.0, "LiDAR points further than this are ignored", "m")
    ground_dist_m: float = param(0.2, "points within this of the fitted ground plane are ground", "m")
    ground_cell_m: float = param(2.0, "cell size of the local ground height grid", "m")
    cluster_voxel_m: float = param(0.15, "DBSCAN runs on a copy of the cloud at this voxel size (labels go back to the fine points)", "m")
    cluster_eps_m: float = param(0.5, "DBSCAN neighbourhood radius", "m")
    cluster_min_points: int = param(10, "DBSCAN core-point neighbours (on the coarse copy) / smallest segment (fine points)")
    sor_neighbors: int = param(16, "statistical outlier removal: neighbours")
    sor_std_ratio: float = param(2.0, "statistical outlier removal: std ratio")
    min_extent_m: float = param(0.25, "objects whose largest extent is under this are dropped", "m")
    max_extent_m: float = param(12.0, "objects whose largest extent is over this are dropped (walls, ground)", "m")
    min_height_m: float = param(0.3, "segments lower than this are ground patches, kerbs or markings", "m")
    max_flat_planarity: float = param(0.7, "objects this planar AND larger than flat_extent_m are dropped (walls)")
    flat_extent_m: float = param(4.0, "size from which a planar object counts as a wall", "m")
    # --- segmentation (RGB-D) ------------------------------------------------------------------
    max_depth_m: float = param(7.5, "RGB-D depths beyond this are ignored", "m")
    erode_px: int = param(2, "instance masks are eroded by this many pixels", "px")
    min_mask_px: int = param(150, "smallest instance mask", "px")
    region_depth_jump_m: float = param(0.08, "depth region growing: largest neighbour depth step (relative per metre)", "m")
    region_colour_jump: float = param(40.0, "depth+colour region growing: largest neighbour colour step (0-255 RGB norm)")
    # --- tracking ------------------------------------------------------------------------------
    track_voxel_m: float = param(0.2, "voxel size of the IoU test between segments", "m")
    track_iou: float = param(0.25, "voxel IoU at which a segment joins a track", "")
    min_sightings: int = param(2, "sightings before a track becomes an object")
    track_max_points: int = param(4000, "points kept per track (random subset)")
    merge_iou: float = param(0.5, "two tracks overlapping this much are merged", "")
    # --- appearance ----------------------------------------------------------------------------
    appearance_bins: int = param(4, "colour histogram bins per channel (joint RGB)")
    clip_weights: str = param("", "local open_clip weights file for open-vocabulary appearance (empty: colour histogram)")
