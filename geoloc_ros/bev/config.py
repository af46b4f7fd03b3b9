"""Parameters of the BEV place-recognition engine (owned by geoloc_ros.bev)."""
from dataclasses import dataclass

from geoloc_ros.config import param


@dataclass
class BevConfig:
    # --- BEV image (a map built with other values of these is refused) --------------------------
    crop_m: float = param(40.0, "points with |x| or |y| beyond this are dropped before the BEV image", "m")
    voxel_m: float = param(0.4, "voxel size of the downsampling before the BEV image", "m")
    resolution_m: float = param(0.4, "BEV pixel size; image side = 2*round(crop_m/resolution_m)+1 px", "m/px")
    max_points_per_cell: int = param(10, "occupied voxels per BEV cell are capped at this before scaling to 0..255")
    z_min_m: float = param(-5.0, "points below this height in the levelled base frame are dropped", "m")
    z_max_m: float = param(10.0, "points above this height in the levelled base frame are dropped", "m")
    min_points: int = param(100, "scans with fewer finite points in the crop give no fix")
    # --- network -------------------------------------------------------------------------------
    weights: str = param("", "REIN weights file (state_dict, .pt); empty: the weights shipped in geoloc_ros/data/rein.pt")
    num_rotations: int = param(8, "rotations of the rotation-equivariant module (360/num_rotations deg steps)")
    torch_threads: int = param(1, "CPU threads torch may use for inference")
    query_threads: int = param(2, "threads one query runs on: 2 puts the FAST keypoints, 3 of the 8 rotations and "
                               "the local descriptors on a worker thread beside the network (same results; "
                               "network + keypoints 7.5 -> 5.1 ms on two cores); 1: all on the calling thread")
    bf16: bool = param(True, "run the REIN encoder's convolutions in bfloat16, channels-last with the ReLU fused, where "
                       "the CPU does it natively (AVX512-BF16/AMX: encode 14.5 -> 9 ms on the KITTI scans; global "
                       "descriptors within 0.6 % cosine of float32, same benchmark recall); float32 elsewhere or when false")
    # --- keypoints and local descriptors -------------------------------------------------------
    fast_threshold: float = param(45.0, "FAST-9 intensity threshold on the 0..255 BEV image")
    max_keypoints: int = param(400, "strongest keypoints kept per BEV image (after 3x3 non-max suppression)")
    # --- retrieval -----------------------------------------------------------------------------
    index_type: str = param("flat", "FAISS index: flat (exact), ivf, hnsw; GPU is used when faiss-gpu and a GPU exist")
    ivf_nlist: int = param(4096, "IVF inverted lists (large maps); capped at keyframes/39")
    ivf_nprobe: int = param(16, "IVF lists probed per query")
    hnsw_m: int = param(32, "HNSW neighbours per node")
    top_k: int = param(5, "keyframes retrieved and re-ranked by pose inliers")
    retrieval_smooth_m: float = param(1.0, "the index holds each keyframe's global descriptor averaged with those of "
                                      "the keyframes within 3 sigma of it (Gaussian weights of their map-frame "
                                      "distance, sigma this; a query offset from the mapped path then still meets "
                                      "its place: lateral recall@1 0.917 -> 0.967 in geoloc bench bev); 0: off", "m")
    keyframe_spacing_m: float = param(1.0, "build_database keeps a scan when the robot moved this far (or turned 30 deg)", "m")
    # --- pose ----------------------------------------------------------------------------------
    match_top_k: int = param(3, "a query keypoint supports a pose when one of its k most similar keyframe keypoints fits")
    ransac_iterations: int = param(256, "2-point RANSAC hypotheses per keyframe")
    ransac_preselect_keypoints: int = param(96, "query keypoints all hypotheses are first scored on (0: score all "
                                            "hypotheses on all keypoints)")
    ransac_preselect_hypotheses: int = param(32, "best hypotheses of that first scoring kept for the full scoring")
    inlier_threshold_m: float = param(0.5, "RANSAC inlier distance", "m")
    min_inliers: int = param(12, "fewer pose inliers than this is no fix")
    min_inlier_ratio: float = param(0.08, "fewer inliers per mutual match than this is no fix")
    distinct_ratio: float = param(2.5, "a pose is a fix only when it has at least this many times the inliers of "
                                  "the best pose another retrieved keyframe gives that differs from it (by more than "
                                  "distinct_dist_m or distinct_yaw_rad): outside the map every retrieved keyframe "
                                  "scores a different pose about alike; 0: off")
    distinct_dist_m: float = param(2.0, "poses of two retrieved keyframes this far apart are different answers", "m")
    distinct_yaw_rad: float = param(0.35, "poses of two retrieved keyframes this far apart in heading are different "
                                    "answers", "rad")
    impostor_quantile: float = param(0.99, "quantile of the inlier counts of the wrong poses a map gives its own "
                                     "keyframes (calibrated when it is built) that a fix must beat")
    impostor_margin: float = param(1.0, "a fix needs more inliers than impostor_margin times that quantile (and at "
                                   "least min_inliers); 0: min_inliers only")
    impostor_min_samples: int = param(20, "a map with fewer wrong-pose samples than this uses min_inliers only")
    cov_inflation: float = param(6.0, "inflation of the least-squares covariance for correlated keypoint errors")
    seed: int = param(0, "seed of the RANSAC sampler (reproducible answers)")
