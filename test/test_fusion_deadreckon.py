"""The filter's dead-reckoning track (the reference of the GNSS checks): integration accuracy,
late lookups, and which gyro bias it uses."""
from __future__ import annotations

import numpy as np
import pytest

from geoloc_ros.fusion.config import FusionConfig
from geoloc_ros.fusion.deadreckon import OdomTrack


def test_circle_closes_and_late_lookup_returns_the_past():
    tr = OdomTrack()
    v, w, dt = 2.0, 2.0 / 20.0, 0.01       # 20 m radius
    n = int(round(2 * np.pi / w / dt))
    for k in range(n + 1):
        tr.step(k * dt, v, 0.0, w)
    assert np.linalg.norm(tr.xyyaw[:2]) < 0.05            # back at the start after one lap
    assert tr.dist_m == pytest.approx(2 * np.pi * 20.0, rel=1e-3)
    t_end = n * dt
    past, d = tr.at(t_end - 2.0)
    assert d == pytest.approx(tr.dist_m - 2.0 * v, abs=0.05)
    # 2 s before the end the robot was 40 m of arc back: 2 s * 0.1 rad/s behind in heading
    assert np.isclose(np.angle(np.exp(1j * (tr.xyyaw[2] - past[2]))), 0.2, atol=0.01)


def test_steps_of_a_second_or_backwards_do_not_move_it():
    tr = OdomTrack()
    tr.step(0.0, 1.0, 0.0, 0.0)
    tr.step(0.5, 1.0, 0.0, 0.0)
    x = tr.xyyaw.copy()
    tr.step(2.0, 1.0, 0.0, 0.0)    # 1.5 s gap: unknown motion, only the stamp moves
    tr.step(1.0, 1.0, 0.0, 0.0)    # backwards
    assert np.allclose(tr.xyyaw, x)


def test_bias_modes():
    cur = [np.array([0.0, 0.0, 1e-3 * k]) for k in range(200)]    # a bias drifting 1 mrad/s per s
    got = {}
    for mode in ("filter", "lagged", "initial"):
        tr = OdomTrack.from_config(FusionConfig(odom_gyro_bias=mode, odom_bias_lag_s=60.0))
        got[mode] = [tr.lagged_bias(float(k), cur[k])[2] for k in range(200)]
    assert got["filter"][150] == pytest.approx(0.150)
    assert got["lagged"][150] == pytest.approx(0.090)      # the bias of 60 s before
    assert got["lagged"][30] == pytest.approx(0.0)         # younger than the lag: the first one
    assert got["initial"][199] == pytest.approx(0.0)
    tr = OdomTrack.from_config(FusionConfig(odom_gyro_bias="initial"))
    tr.lagged_bias(0.0, cur[5])
    tr.forget_bias()                                       # re-initialized: the new bias counts
    assert tr.lagged_bias(1.0, cur[7])[2] == pytest.approx(7e-3)
    with pytest.raises(ValueError, match="odom_gyro_bias"):
        OdomTrack.from_config(FusionConfig(odom_gyro_bias="newest"))
