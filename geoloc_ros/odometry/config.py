"""Parameters of the LiDAR odometry (owned by geoloc_ros.odometry)."""
from dataclasses import dataclass

from geoloc_ros.config import param


@dataclass
class OdometryConfig:
    """Scan-to-local-map ICP odometry (:class:`geoloc_ros.odometry.lidar.LidarOdometry`)."""
    enable: str = param("auto", "run LiDAR odometry on every scan and feed its body velocity to the filter: "
                        "'auto' (on when the profile has a LiDAR and no wheel odometry, e.g. Oxford Spires), "
                        "'on', 'off'")
    # ---- points --------------------------------------------------------------------------------
    min_range_m: float = param(1.0, "points closer than this to the sensor are dropped (operator, platform)", "m")
    max_range_m: float = param(60.0, "points farther than this from the sensor are dropped; also the radius "
                               "of the local map around the current pose", "m")
    deskew: bool = param(True, "undo the motion during the sweep with the constant-velocity model "
                         "(needs per-point times)")
    frame_voxel_m: float = param(0.5, "voxel size of the scan points merged into the local map "
                                 "(one point per voxel)", "m")
    source_voxel_m: float = param(1.2, "voxel size of the scan points registered against the map "
                                  "(one point per voxel; the per-scan cost scales with their number)", "m")
    map_voxel_m: float = param(0.5, "voxel size of the local map (one point per voxel, first kept)", "m")
    min_points: int = param(100, "scans with fewer usable points after downsampling give no update")
    # ---- ICP ---------------------------------------------------------------------------------
    max_iterations: int = param(50, "Gauss-Newton iterations of the ICP at most; not converged by then is "
                                "a failed registration (a wrong local minimum wanders)")
    convergence_eps: float = param(1e-4, "ICP stops when the update is smaller than this (m and rad)")
    initial_threshold_m: float = param(2.0, "correspondence distance before the adaptive threshold has data", "m")
    min_motion_m: float = param(0.05, "prediction errors below this do not feed the adaptive threshold", "m")
    min_threshold_m: float = param(0.3, "the adaptive correspondence distance never goes below this", "m")
    min_correspondences: int = param(50, "fewer ICP correspondences than this is a failed registration")
    min_inlier_fraction: float = param(0.5, "fewer source points with a correspondence than this fraction is "
                                       "a failed registration", "")
    max_correction_m: float = param(2.0, "an ICP result this far from the constant-velocity prediction is "
                                    "refused (and the map restarted)", "m")
    max_gap_s: float = param(0.5, "scans further apart than this give no velocity (the map is kept)", "s")
    # ---- covariance --------------------------------------------------------------------------
    cov_inflation: float = param(3.0, "inflation of the point-to-plane least-squares pose covariance "
                                 "(correlated residuals of neighbouring points; checked against ground "
                                 "truth in bench/odometry.py: velocity NEES)", "")
    min_trans_std_m: float = param(0.005, "floor of the per-scan registration std per axis", "m")
    min_rot_std_rad: float = param(0.001, "floor of the per-scan registration rotation std per axis", "rad")
    degenerate_ratio: float = param(0.01, "a translation direction whose point-to-plane information is below this "
                                    "fraction of the best-constrained one is degenerate (corridor, open field)", "")
    degenerate_std_m: float = param(0.3, "std added per scan along a degenerate direction (the registration "
                                    "there only repeats the prediction)", "m")
    use_angular_rate: bool = param(True, "also feed the ICP angular rate to the filter (observes the gyro bias; "
                                   "the filter adds the held gyro sample's noise); off: linear velocity only")
