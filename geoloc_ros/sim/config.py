"""Parameters of the simulator (owned by geoloc_ros.sim): world, trajectories, sensor models.

Defaults follow the figures of the real sensors the dataset layouts carry (Livox MID-360,
Hesai QT64, RealSense D435i, the M3DGR IMU noise densities, a u-blox receiver).
"""
from __future__ import annotations

from dataclasses import dataclass

from geoloc_ros.config import param


@dataclass
class SimConfig:
    # ---- world ------------------------------------------------------------------------------
    size_m: float = param(200.0, "side of the square road network area (the ground extends 40 m beyond)", "m")
    road_block_m: float = param(80.0, "distance between parallel roads of the grid", "m")
    road_half_width_m: float = param(7.0, "half width of a road including the parking lane", "m")
    max_slope: float = param(0.04, "largest ground gradient of the heightfield (rise over run)", "")
    # ---- trajectory -------------------------------------------------------------------------
    speed_mps: float = param(3.0, "cruise speed of the robot along the roads", "m/s")
    hold_s: float = param(2.0, "standstill at the start of each run (IMU initialisation)", "s")
    ramp_s: float = param(3.0, "time to accelerate from standstill to cruise speed (and to brake)", "s")
    corner_radius_m: float = param(8.0, "radius of the rounded turns at intersections", "m")
    base_height_m: float = param(0.5, "height of base_link above the ground contact", "m")
    lateral_offset_m: float = param(3.0, "mean sideways offset of the loc_lateral run (varies +-1 m)", "m")
    gt_rate_hz: float = param(100.0, "rate of the ground-truth TUM poses", "Hz")
    # ---- LiDAR ------------------------------------------------------------------------------
    lidar_rate_hz: float = param(10.0, "sweep rate of both LiDARs", "Hz")
    mid360_points_per_s: float = param(200000.0, "MID-360 point rate", "1/s")
    mid360_max_range_m: float = param(70.0, "MID-360 maximum range", "m")
    qt64_columns: int = param(600, "QT64 azimuth steps per sweep (0.6 deg)", "")
    qt64_max_range_m: float = param(60.0, "QT64 maximum range", "m")
    lidar_min_range_m: float = param(0.3, "returns closer than this are dropped", "m")
    lidar_range_sigma_m: float = param(0.02, "1-sigma range noise", "m")
    lidar_dropout: float = param(0.02, "probability that a return is lost", "")
    # ---- camera -----------------------------------------------------------------------------
    camera_rate_hz: float = param(15.0, "RGB-D frame rate", "Hz")
    camera_max_depth_m: float = param(20.0, "depth beyond this reads 0 (unknown)", "m")
    depth_sigma_rel: float = param(0.002, "depth noise, 1-sigma per metre of depth squared (D435i-like)", "1/m")
    # ---- IMU --------------------------------------------------------------------------------
    imu_rate_hz: float = param(200.0, "IMU rate", "Hz")
    acc_n: float = param(1.2e-2, "accelerometer white-noise density", "m/s^2/sqrt(Hz)")
    gyr_n: float = param(3.0e-3, "gyroscope white-noise density", "rad/s/sqrt(Hz)")
    acc_w: float = param(1.9e-4, "accelerometer bias random-walk density", "m/s^3/sqrt(Hz)")
    gyr_w: float = param(5.5e-5, "gyroscope bias random-walk density", "rad/s^2/sqrt(Hz)")
    acc_bias0_sigma: float = param(0.05, "1-sigma of the initial accelerometer bias", "m/s^2")
    gyr_bias0_sigma: float = param(0.002, "1-sigma of the initial gyroscope bias", "rad/s")
    # ---- wheel ------------------------------------------------------------------------------
    wheel_rate_hz: float = param(20.0, "wheel odometry rate", "Hz")
    wheel_scale_err_max: float = param(0.02, "largest |scale error| of the wheel speed (drawn in 1..2 %)", "")
    wheel_v_sigma_mps: float = param(0.02, "white noise of the wheel speed", "m/s")
    wheel_yaw_rate_sigma_rps: float = param(0.01, "white noise of the wheel yaw rate", "rad/s")
    # ---- GNSS -------------------------------------------------------------------------------
    gnss_rate_hz: float = param(10.0, "GNSS fix rate", "Hz")
    gnss_sigma_h_m: float = param(0.5, "healthy horizontal 1-sigma (per axis, reported honestly)", "m")
    gnss_sigma_v_m: float = param(1.0, "healthy vertical 1-sigma (reported honestly)", "m")
    lat0_deg: float = param(31.0252, "datum latitude (map origin)", "deg")
    lon0_deg: float = param(121.4336, "datum longitude (map origin)", "deg")
    alt0_m: float = param(12.0, "datum ellipsoidal height (map origin)", "m")
    datum_yaw_rad: float = param(0.3, "rotation of the map x axis from East, counter-clockwise", "rad")
    # ---- time -------------------------------------------------------------------------------
    t0_unix_s: float = param(1700000000.0, "start time of the mapping run (unix)", "s")
