"""Re-anchoring after a jump/drift detection (fusion/anchor.py): which of replace / inflate / keep
it picks, and what each does to the pose and its covariance."""
from __future__ import annotations

import numpy as np

from geoloc_ros.fusion.anchor import Anchor, reanchor
from geoloc_ros.fusion.config import FusionConfig
from geoloc_ros.fusion.eskf import ErrorStateKF


def _setup(anchor_pos_var_m2: float, filter_offset_m: float):
    """Robot drove 30 m along +x since the anchor (odom = map); GNSS drifted 4 m along +y; the
    filter followed ``filter_offset_m`` of it."""
    cfg = FusionConfig()
    kf = ErrorStateKF(cfg)
    kf.initialize(20.0, np.array([30.0, filter_offset_m, 0.0]), np.eye(3), np.array([3.0, 0.0, 0.0]),
                  np.eye(15) * 1e-3)
    anchor = Anchor(10.0, np.zeros(3), 0.0, np.diag([anchor_pos_var_m2, anchor_pos_var_m2, 1e-4]),
                    np.zeros(3), 0.0, np.zeros(2))
    odom_now, dist_now = np.array([30.0, 0.0, 0.0]), 30.0
    z_now = np.array([30.0, 4.0])
    return cfg, kf, anchor, odom_now, dist_now, z_now


def test_confident_anchor_replaces_the_absorbed_pose():
    cfg, kf, anchor, odom, dist, z = _setup(1e-3, 3.0)
    action, m2 = reanchor(kf, anchor, odom, dist, z, cfg)
    assert action == "replaced" and m2 > 7.8
    assert np.allclose(kf.p[:2], [30.0, 0.0], atol=1e-9)      # back on dead reckoning
    assert kf.P[1, 1] > 1e-3                                  # with the dead reckoning's covariance


def test_uncertain_anchor_inflates_the_covariance_by_what_was_absorbed():
    cfg, kf, anchor, odom, dist, z = _setup(25.0, 3.0)        # anchor +-5 m: cannot replace
    P_before = kf.P.copy()
    action, _ = reanchor(kf, anchor, odom, dist, z, cfg)
    assert action == "inflated"
    assert np.allclose(kf.p[:2], [30.0, 3.0])                 # pose kept ...
    assert kf.P[1, 1] >= P_before[1, 1] + 9.0 - 1e-9          # ... its y variance grew by 3 m squared
    assert 3.0 / np.sqrt(kf.P[1, 1]) < 1.0                    # the 3 m error is now inside 1 sigma


def test_filter_that_did_not_follow_the_mismatch_is_left_alone():
    cfg, kf, anchor, odom, dist, z = _setup(1e-3, 0.0)        # a jump caught on its first epoch
    P_before = kf.P.copy()
    action, _ = reanchor(kf, anchor, odom, dist, z, cfg)
    assert action is None and np.array_equal(kf.P, P_before)
