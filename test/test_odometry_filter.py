"""The filter's body-velocity update (LiDAR odometry): it carries the estimate where the IMU alone
cannot, moves sideways (no non-holonomic assumption), is applied late at its own stamp, and
refuses bad input with a counted reason."""
from __future__ import annotations

import numpy as np

from geoloc_ros.events import ImuEvent, PoseFixEvent, VelocityEvent
from geoloc_ros.fusion.config import FusionConfig
from geoloc_ros.fusion.eskf import ErrorStateKF
from geoloc_ros.fusion.filter import FusionFilter
from geoloc_ros.geometry import rot_z, se3

G = 9.80665
YAW = 0.7                          # heading of the body in the map (rad)
V_BODY = np.array([0.3, 1.2, 0.0])  # m/s, mostly sideways (a handheld rig)


def _filter(t0=0.0):
    f = FusionFilter(FusionConfig(init_from_gnss=False))
    for k in range(20):
        f.process(ImuEvent(t0 + k * 0.005, np.array([0.0, 0.0, G]), np.zeros(3)))
    f.process(PoseFixEvent(t0 + 0.1, se3(rot_z(YAW), [0, 0, 0]), np.diag([0.01, 0.01, 0.01, 1e-4, 1e-4, 1e-4]),
                           source="initialpose"))
    return f


def _run(f, seconds, velocity_every=20, late_s=0.0, v_std=0.05, rng=None):
    """Body moves at V_BODY (constant, no rotation); IMU at 200 Hz with an accelerometer bias;
    a VelocityEvent every ``velocity_every`` IMU samples, ``late_s`` late."""
    rng = rng or np.random.default_rng(0)
    acc = np.array([0.03, -0.04, G])   # bias the filter does not know
    pending = []
    t = 0.1
    for k in range(int(seconds * 200)):
        t = 0.1 + (k + 1) * 0.005
        f.process(ImuEvent(t, acc + rng.normal(0, 0.02, 3), rng.normal(0, 0.002, 3)))
        if velocity_every and (k + 1) % velocity_every == 0:
            pending.append(VelocityEvent(t, V_BODY + rng.normal(0, v_std, 3), np.zeros(3),
                                         cov_v=np.eye(3) * v_std ** 2, cov_w=np.eye(3) * 1e-4))
        while pending and pending[0].t <= t - late_s:
            f.process(pending.pop(0))
    truth = rot_z(YAW) @ (V_BODY * (t - 0.1))
    return f.estimate(), truth


def test_body_velocity_carries_the_estimate_where_the_imu_alone_drifts():
    est, truth = _run(_filter(), 20.0)
    err = np.linalg.norm(est.T_map_base[:2, 3] - truth[:2])
    est0, _ = _run(_filter(), 20.0, velocity_every=0)
    err0 = np.linalg.norm(est0.T_map_base[:2, 3] - truth[:2])
    assert err < 1.0, f"with body velocity: {err:.2f} m after {np.linalg.norm(truth):.0f} m"
    assert err0 > 10.0 * err, f"IMU alone {err0:.2f} m vs {err:.2f} m"
    # sideways motion is measured, not constrained away
    v_body = est.twist[:3]
    assert np.allclose(v_body, V_BODY, atol=0.1), v_body
    # the covariance covers the error (3 sigma, horizontal)
    P = est.cov6[:2, :2]
    d = est.T_map_base[:2, 3] - truth[:2]
    assert d @ np.linalg.solve(P, d) < 11.8


def test_late_velocities_are_applied_at_their_stamp():
    est, truth = _run(_filter(), 10.0, late_s=0.3)
    err = np.linalg.norm(est.T_map_base[:2, 3] - truth[:2])
    assert err < 1.0, err
    assert est.counters.get("late_measurements", 0) > 20


def test_bad_velocities_are_counted_and_the_filter_keeps_going():
    f = _filter()
    _run(f, 2.0)
    n = f.counters["velocity.accepted"]
    bad = [VelocityEvent(2.2, np.array([np.nan, 0, 0]), np.zeros(3)),
           VelocityEvent(2.2, np.zeros(3), np.zeros(3), cov_v=np.zeros((3, 3))),
           VelocityEvent(2.2, np.zeros(2), np.zeros(3)),
           VelocityEvent(np.inf, np.zeros(3), np.zeros(3))]
    for ev in bad:
        assert f.process(ev) is None
    assert f.counters["velocity.rejected"] == 4
    assert f.counters["velocity.rejected.NaN/inf in body velocity"] == 1
    assert f.counters["velocity.rejected.zero or negative covariance"] == 1
    # a wildly wrong velocity is gated, the next good ones are used
    f.process(ImuEvent(2.2, np.array([0.0, 0.0, G]), np.zeros(3)))
    assert f.process(VelocityEvent(2.2, np.array([40.0, 0, 0]), np.zeros(3), cov_v=np.eye(3) * 1e-3)) is not None
    assert f.counters["velocity.gated"] == 1
    assert f.counters["velocity.accepted"] >= n
