"""4-DoF registration: accuracy, a covariance that matches the errors, degenerate rejection."""
import numpy as np
import pytest

from geoloc_ros.geometry import rot_z, se3, wrap_angle, yaw_of
from geoloc_ros.objects.register import cov4_to_cov6, register_4dof


def _problem(rng, n=8, noise=0.05):
    src = np.column_stack([rng.uniform(-12, 12, (n, 2)), rng.uniform(0, 3, n)])
    yaw = rng.uniform(-np.pi, np.pi)
    t = rng.uniform(-20, 20, 3)
    T = se3(rot_z(yaw), t)
    dst = src @ T[:3, :3].T + T[:3, 3] + rng.normal(0, noise, (n, 3))
    return src, dst, T


def test_recovers_yaw_and_translation():
    rng = np.random.default_rng(0)
    for _ in range(20):
        src, dst, T = _problem(rng)
        r = register_4dof(src, dst)
        assert r.ok, r.reason
        assert np.linalg.norm(r.T[:3, 3] - T[:3, 3]) < 0.15
        assert abs(np.degrees(wrap_angle(yaw_of(r.T) - yaw_of(T)))) < 1.0
        assert np.allclose(r.T[2, :3], [0, 0, 1])  # no roll/pitch


def test_covariance_is_consistent():
    rng = np.random.default_rng(1)
    nees = []
    for _ in range(300):
        src, dst, T = _problem(rng, n=6, noise=0.1)
        r = register_4dof(src, dst, min_sigma_m=0.0)
        e = np.array([*(r.T[:3, 3] - T[:3, 3]), wrap_angle(yaw_of(r.T) - yaw_of(T))])
        nees.append(e @ np.linalg.solve(r.cov4, e))
    # 4 dof: mean NEES ~ 4 when the covariance tells the truth
    assert 2.5 < np.mean(nees) < 6.0
    c6 = cov4_to_cov6(r.cov4)
    assert c6.shape == (6, 6) and np.allclose(c6, c6.T) and np.all(np.linalg.eigvalsh(c6) > 0)


def test_rejects_collinear_and_too_few():
    rng = np.random.default_rng(2)
    x = np.linspace(-10, 10, 8)
    src = np.column_stack([x, 0.05 * rng.normal(size=8), np.zeros(8)])
    T = se3(rot_z(0.7), [3, 4, 0])
    dst = src @ T[:3, :3].T + T[:3, 3]
    r = register_4dof(src, dst)
    assert not r.ok and "collinear" in r.reason and r.T is None
    r = register_4dof(src[:3] + [[0, 0, 0], [0, 5, 0], [5, 0, 0]], dst[:3])
    assert not r.ok and "< 4" in r.reason


def test_rejects_nan_and_bad_residuals():
    rng = np.random.default_rng(3)
    src, dst, _ = _problem(rng, n=5)
    src[0] = np.nan
    src[1] = np.nan
    r = register_4dof(src, dst)
    assert not r.ok and "3 associations" in r.reason  # NaN rows dropped, 3 left
    src, dst, _ = _problem(rng, n=6)
    dst = rng.permutation(dst)  # wrong associations
    r = register_4dof(src, dst)
    assert not r.ok and "RMS" in r.reason
    r = register_4dof(src, dst[:4])
    assert not r.ok
