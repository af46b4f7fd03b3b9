"""Parameters of the error-state fusion filter (owned by geoloc_ros.fusion).

Noise densities follow the usual continuous-time convention: a white-noise density ``s`` gives a
discrete variance ``s**2 * dt`` on the integrated quantity (velocity for the accelerometer,
angle for the gyro) and bias random walks ``s**2 * dt`` on the bias.
"""
from dataclasses import dataclass

from geoloc_ros.config import param


@dataclass
class FusionConfig:
    """Error-state Kalman filter, GNSS degradation monitor and wheel-slip detector."""
    # ---- IMU propagation ---------------------------------------------------------------------
    gravity_mps2: float = param(9.80665, "gravity magnitude", "m/s^2")
    acc_noise: float = param(0.08, "accelerometer white-noise density", "m/s^2/sqrt(Hz)")
    gyr_noise: float = param(0.005, "gyro white-noise density", "rad/s/sqrt(Hz)")
    acc_bias_walk: float = param(0.002, "accelerometer bias random-walk density", "m/s^3/sqrt(Hz)")
    gyr_bias_walk: float = param(5e-5, "gyro bias random-walk density", "rad/s^2/sqrt(Hz)")
    imu_max_dt_s: float = param(0.5, "IMU gap above which propagation is split/flagged", "s")
    imu_gap_acc_std_mps2: float = param(1.0, "unknown acceleration while an IMU gap over imu_max_dt_s "
                                        "is bridged on the last sample (process noise of the gap)", "m/s^2")
    imu_gap_gyr_std_rps: float = param(0.05, "unknown turn rate while an IMU gap is bridged", "rad/s")
    imu_acc_max_mps2: float = param(160.0, "accelerometer samples above this norm are rejected", "m/s^2")
    imu_gyr_max_rps: float = param(35.0, "gyro samples above this norm are rejected", "rad/s")
    # ---- initial uncertainty -----------------------------------------------------------------
    init_vel_std_mps: float = param(0.3, "initial velocity standard deviation", "m/s")
    init_tilt_std_rad: float = param(0.03, "initial roll/pitch standard deviation", "rad")
    init_acc_bias_std: float = param(0.1, "initial accelerometer bias standard deviation", "m/s^2")
    init_gyr_bias_std: float = param(0.002, "initial gyro bias standard deviation", "rad/s")
    init_min_gnss_span_m: float = param(6.0, "GNSS+motion heading: travelled span before init", "m")
    init_max_yaw_std_rad: float = param(0.12, "GNSS+motion heading accepted below this yaw std", "rad")
    init_from_gnss: bool = param(True, "initialize from GNSS plus motion heading")
    # ---- wheel odometry ----------------------------------------------------------------------
    wheel_scale: float = param(1.0, "multiplier applied to the reported wheel speed", "")
    init_wheel_scale_std: float = param(0.03, "initial std of the estimated wheel-speed scale (reported / true "
                                        "forward speed, starts at 1 after wheel_scale); 0 with wheel_scale_walk 0: "
                                        "no estimation", "")
    wheel_scale_walk: float = param(1e-4, "random-walk density of the estimated wheel-speed scale (tyre wear, "
                                    "load, pressure)", "1/sqrt(s)")
    wheel_lever_m: list = param([0.0, 0.0, 0.0], "position of the wheel-odometry frame in base_link", "m")
    wheel_yaw_rad: float = param(0.0, "yaw of the wheel-odometry frame in base_link", "rad")
    wheel_speed_std_mps: float = param(0.05, "wheel forward-speed standard deviation (floor)", "m/s")
    wheel_speed_rel_std: float = param(0.1, "wheel forward-speed std relative to speed (time-correlated "
                                       "error beyond the estimated scale: terrain, tyre deformation in turns)", "")
    nhc_std_mps: float = param(0.05, "non-holonomic constraint std (lateral and vertical speed)", "m/s")
    wheel_yaw_rate_std_rps: float = param(0.03, "wheel yaw-rate std (floor); 0 disables its use", "rad/s")
    use_wheel_yaw_rate: bool = param(False, "use the wheel yaw rate as a gyro-bias measurement")
    slip_gate_chi2: float = param(16.0, "wheel-speed NIS above this marks slip (skipped)", "")
    slip_abs_mps: float = param(0.2, "wheel minus filter speed above this + slip_rel*|v| (and over the gate) is slip", "m/s")
    slip_rel: float = param(0.05, "speed-proportional part of the slip threshold", "")
    slip_hold_max_s: float = param(10.0, "a slip, once detected, holds while the wheel stays off by the "
                                   "threshold (whatever the NIS), at most this long", "s")
    # ---- zero-velocity update ----------------------------------------------------------------
    zupt_speed_mps: float = param(0.02, "wheel speed below this (with low gyro) means stationary", "m/s")
    zupt_gyr_rps: float = param(0.02, "gyro norm below this (with low wheel speed) means stationary", "rad/s")
    zupt_std_mps: float = param(0.01, "zero-velocity pseudo-measurement std", "m/s")
    # ---- GNSS --------------------------------------------------------------------------------
    gnss_lever_m: list = param([0.0, 0.0, 0.0], "GNSS antenna position in base_link", "m")
    gnss_use_altitude: bool = param(True, "use GNSS altitude (else horizontal only)")
    gnss_alt_gate_chi2: float = param(6.63, "altitude NIS over this (chi2 1 dof 99%): horizontal only", "")
    gnss_cov_scale: float = param(9.0, "multiplier on the reported GNSS covariance: receivers report white noise, "
                                  "their error is time-correlated (1 = trust as reported)", "")
    gnss_reset_after_s: float = param(30.0, "GNSS rejected by the NIS gate alone (no jump/drift/offset) for this "
                                      "long: the filter is lost, its position covariance is reset", "s")
    gnss_min_std_m: float = param(0.05, "floor on the reported GNSS std", "m")
    gnss_timeout_s: float = param(2.0, "no GNSS message for this long: DENIED", "s")
    gnss_cov_degraded_m2: float = param(9.0, "reported horizontal variance over this: DEGRADED", "m^2")
    gnss_cov_reject_m2: float = param(400.0, "reported horizontal variance over this: REJECTED", "m^2")
    gnss_nis_degraded: float = param(9.21, "horizontal NIS over this (chi2 2 dof 99%): DEGRADED", "")
    gnss_nis_reject: float = param(18.4, "horizontal NIS over this (chi2 2 dof 99.99%): REJECTED", "")
    gnss_degraded_scale: float = param(4.0, "variance inflation applied to DEGRADED epochs", "")
    gnss_window_s: float = param(20.0, "window of the jump/drift check against dead reckoning", "s")
    gnss_jump_m: float = param(5.0, "short-window displacement mismatch vs dead reckoning over this: REJECTED", "m")
    gnss_window_max_age: float = param(2.5, "window checks skip when the last accepted reference is older "
                                       "than this many windows", "")
    gnss_window_odom_rel: float = param(0.02, "dead-reckoning distance error per metre in the window checks", "")
    gnss_window_yaw_std_rad: float = param(0.0175, "floor on the heading std of the dead-reckoned displacement", "rad")
    gnss_window_cov_scale: float = param(1.0, "multiplier on the reported GNSS variance in the window checks "
                                         "(>1 for receivers whose error wanders metres within a window)", "")
    gnss_fit_s: float = param(0.0, "accepted GNSS track fitted to the odom track over this long for the "
                              "map<-odom heading of the window checks (0: the filter heading at the reference epoch)", "s")
    gnss_drift_window_s: float = param(60.0, "long window of the drift check against dead reckoning", "s")
    gnss_drift_m: float = param(6.0, "long-window displacement mismatch vs dead reckoning over this: REJECTED", "m")
    gnss_jump_sigma: float = param(3.0, "... or over this many std of the window mismatch", "")
    gnss_track_m: float = param(0.0, "track check: the newest GNSS off the dead-reckoned track by over this (and "
                                "over gnss_jump_sigma times the fit's rms): REJECTED as a drift. The track is "
                                "the odom track rigidly fitted to the accepted GNSS of the last gnss_track_fit_s "
                                "up to gnss_track_exclude_s ago, so one epoch's wander does not set the reference "
                                "as in the window checks (for receivers whose error wanders metres; 0: off)", "m")
    gnss_track_fit_s: float = param(240.0, "span of accepted GNSS the track check fits the odom track to", "s")
    gnss_track_exclude_s: float = param(10.0, "the newest accepted GNSS this long is left out of the track check's "
                                        "fit (a drift under test must not bend its own reference)", "s")
    gnss_window_degrade_ratio: float = param(0.8, "a window mismatch over this share of its rejection threshold: "
                                             "DEGRADED, variance inflated by gnss_degraded_scale * share / this "
                                             "(a slow drift is followed less before it is rejected; 0: off)", "")
    gnss_recover_epochs: int = param(5, "consecutive consistent epochs to leave a jump/drift hold", "")
    gnss_outage_grace_s: float = param(20.0, "after an outage this long, GNSS re-converges (NIS gate relaxed) "
                                       "for half a window", "s")
    gnss_hold_max_s: float = param(60.0, "after this long in a jump/drift hold only the NIS gate decides", "s")
    gnss_offset_window: int = param(5, "global fixes averaged by the consistent-offset (spoof) check", "")
    gnss_offset_m: float = param(4.0, "mean GNSS-minus-fix offset over this: REJECTED (spoof/datum)", "m")
    gnss_offset_clear_fixes: int = param(2, "consecutive global fixes agreeing with GNSS (offset under half the "
                                         "threshold) that clear an offset verdict", "")
    gnss_offset_hold_s: float = param(30.0, "time an offset verdict holds without new global fixes", "s")
    gnss_reanchor: bool = param(True, "when a jump/drift hold opens and the filter disagrees with dead reckoning "
                                "from the window check's reference epoch, its pose is re-anchored there "
                                "(undoes what a slow drift dragged in before the check fired)")
    degradation_handling: bool = param(True, "run the degradation monitor (off: trust every fix)")
    # ---- pose fixes (BEV, objects, initial pose) --------------------------------------------
    fix_nis_gate: float = param(21.1, "pose-fix NIS over this (chi2 4 dof 99.97%) is rejected once localized", "")
    fix_frame: str = param("map", "frame_id pose fixes must carry")
    fix_init_max_std_m: float = param(5.0, "a fix initializes the filter only below this position std", "m")
    # ---- bookkeeping -------------------------------------------------------------------------
    history_s: float = param(1.5, "state history kept for late measurements", "s")
    reset_on_time_jump_s: float = param(5.0, "a stamp this far behind the newest resets the filter", "s")
    odom_gyro_bias: str = param("filter", "gyro bias of the odom frame's yaw rate (the GNSS checks' dead reckoning): "
                                "'filter' the filter's current estimate, 'lagged' the filter's of odom_bias_lag_s "
                                "ago, 'initial' the one at initialization (for a GNSS whose correlated errors "
                                "pull the filter's bias, as on the Husky bag)")
    odom_bias_lag_s: float = param(60.0, "age of the filter's gyro bias used with odom_gyro_bias 'lagged'", "s")
    track_odom: bool = param(True, "integrate a continuous odom frame and report map->odom")
    max_pos_std_m: float = param(50.0, "position std above which the estimate is 'not_localized'", "m")
    localized_pos_std_m: float = param(3.0, "position std under which mode is 'localized'", "m")
