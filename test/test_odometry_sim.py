"""The Localizer on a simulated Oxford Spires run (Hesai QT64 + IMU, no wheels, no GNSS, no map):
from a known initial pose, LiDAR odometry keeps the dead-reckoned estimate within a fraction of
a metre of ground truth, where the IMU alone drifts by metres."""
from __future__ import annotations

import numpy as np
import pytest

from geoloc_ros.events import ScanEvent

RUN = "loc_lateral"


@pytest.fixture(scope="module")
def oxford_run():
    from geoloc_ros.sim.scenario import prepare, run_events
    su = prepare("tiny", seed=0)
    events = [ev for _, ev in run_events(su.world_of(RUN), su.runs[RUN], su.datum, su.faults[RUN], cfg=su.cfg,
                                         seed=0, camera=False, layouts=("oxford_spires",))]
    return su.runs[RUN], events


def _localize(traj, events, enable: str):
    from bench.odometry import localize_from_true_start
    loc, ts, Ts, covs = localize_from_true_start(traj, events, enable)
    d = Ts[:, :2, 3] - traj.poses(ts)[:, :2, 3]
    return loc, np.linalg.norm(d, axis=1), d, covs


def test_lidar_odometry_keeps_dead_reckoning_close_to_ground_truth(oxford_run):
    traj, events = oxford_run
    assert sum(isinstance(e, ScanEvent) for e in events) > 150
    loc, err, d, covs = _localize(traj, events, "auto")
    assert loc.lidar_odom is not None, "auto must enable LiDAR odometry on a profile without wheels"
    st = loc.stats["odometry"]
    assert st.fixes > 0.9 * st.queries and st.accepted > 0.9 * st.fixes, (st.queries, st.fixes, st.accepted,
                                                                          dict(st.no_fix_reasons))
    rmse = float(np.sqrt(np.mean(err ** 2)))
    travelled = traj.length_m
    assert rmse < 0.6 and err.max() < 1.2, f"with LiDAR odometry: ATE rmse {rmse:.2f} m, max {err.max():.2f} m " \
                                           f"over {travelled:.0f} m"
    # the horizontal covariance covers the error (95 % chi-square, 2 dof) most of the time
    nees = np.einsum("ni,nij,nj->n", d, np.linalg.inv(covs[:, :2, :2]), d)
    assert np.mean(nees < 5.99) > 0.8, f"NEES inside the bound for {np.mean(nees < 5.99):.0%} of epochs"

    loc0, err0, _, _ = _localize(traj, events, "off")
    assert loc0.lidar_odom is None
    rmse0 = float(np.sqrt(np.mean(err0 ** 2)))
    assert rmse0 > 4.0 * rmse, f"IMU alone: ATE rmse {rmse0:.2f} m vs {rmse:.2f} m with LiDAR odometry"
