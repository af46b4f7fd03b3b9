"""geometry: SE(2)/SE(3), quaternions, interpolation, covariance helpers."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from geoloc_ros.geometry import (PoseInterpolator, interpolate_poses, is_valid_covariance,
                                 matrix_to_quat, matrix_to_rpy, nees, pose_to_xyzquat, quat_to_matrix,
                                 rot_z, rpy_to_matrix, se2, se2_from_matrix, se3, se3_inverse,
                                 transform_points, wrap_angle, xyzquat_to_pose, yaw_of, yaw_only)


def random_pose(rng):
    return se3(Rotation.random(random_state=rng).as_matrix(), rng.normal(size=3) * 10)


def test_inverse_and_transform_points():
    rng = np.random.default_rng(0)
    T = random_pose(rng)
    p = rng.normal(size=(50, 3))
    np.testing.assert_allclose(transform_points(se3_inverse(T), transform_points(T, p)), p, atol=1e-12)
    np.testing.assert_allclose(T @ se3_inverse(T), np.eye(4), atol=1e-12)


def test_quaternion_roundtrip_ros_order_and_sign():
    rng = np.random.default_rng(1)
    for _ in range(20):
        T = random_pose(rng)
        q = matrix_to_quat(T[:3, :3])
        assert q[3] >= 0 and np.isclose(np.linalg.norm(q), 1)
        np.testing.assert_allclose(quat_to_matrix(q), T[:3, :3], atol=1e-12)
        np.testing.assert_allclose(xyzquat_to_pose(pose_to_xyzquat(T)), T, atol=1e-12)
    # 90 deg about z in ROS (x, y, z, w) order
    np.testing.assert_allclose(matrix_to_quat(rot_z(np.pi / 2)), [0, 0, np.sqrt(0.5), np.sqrt(0.5)], atol=1e-12)


def test_rpy_matches_ros_convention():
    R = rpy_to_matrix(0.1, -0.2, 0.3)
    # ROS: R = Rz(yaw) Ry(pitch) Rx(roll)
    Rx = Rotation.from_rotvec([0.1, 0, 0]).as_matrix()
    Ry = Rotation.from_rotvec([0, -0.2, 0]).as_matrix()
    np.testing.assert_allclose(R, rot_z(0.3) @ Ry @ Rx, atol=1e-12)
    np.testing.assert_allclose(matrix_to_rpy(R), [0.1, -0.2, 0.3], atol=1e-12)
    assert np.isclose(yaw_of(R), 0.3)
    np.testing.assert_allclose(yaw_only(se3(R, [1, 2, 3]))[:3, :3], rot_z(0.3), atol=1e-12)


def test_se2_and_wrap():
    x, y, yaw = se2_from_matrix(se2(1.0, -2.0, 3.0))
    assert (x, y) == (1.0, -2.0) and np.isclose(yaw, 3.0)
    assert np.isclose(wrap_angle(np.pi + 0.1), -np.pi + 0.1)
    assert np.isclose(wrap_angle(-7.0), -7.0 + 2 * np.pi)


def test_interpolation_linear_and_slerp_with_gaps():
    t = np.array([0.0, 1.0, 2.0, 10.0])
    T = np.stack([se3(rot_z(0.0), [0, 0, 0]), se3(rot_z(1.0), [2, 0, 0]),
                  se3(rot_z(1.0), [2, 2, 0]), se3(rot_z(1.0), [2, 10, 0])])
    Q, ok = interpolate_poses([0.5, 1.5, 5.0, 11.0, -1.0], t, T, max_gap_s=2.0)
    np.testing.assert_allclose(Q[0][:3, 3], [1, 0, 0])
    assert np.isclose(yaw_of(Q[0]), 0.5)
    np.testing.assert_allclose(Q[1][:3, 3], [2, 1, 0])
    assert ok.tolist() == [True, True, False, False, False]   # gap of 8 s, outside, before
    interp = PoseInterpolator(t, T)
    np.testing.assert_allclose(interp([0.5])[0][0], Q[0])


def test_covariance_checks_and_nees():
    assert is_valid_covariance(np.diag([1.0, 2.0, 3.0]))
    assert not is_valid_covariance(np.diag([1.0, 0.0, 3.0]))
    assert not is_valid_covariance(np.array([[1.0, 0.5], [0.0, 1.0]]))
    assert not is_valid_covariance(np.array([[np.nan, 0], [0, 1.0]]))
    assert nees(np.array([2.0, 0.0]), np.diag([4.0, 1.0])) == pytest.approx(1.0)
