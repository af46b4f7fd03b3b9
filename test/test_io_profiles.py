"""Profiles are data: bundled ones load, a user's copy works, a bad field is an error naming it."""
from pathlib import Path

import numpy as np
import pytest
import yaml

from geoloc_ros.geometry import matrix_to_rpy
from geoloc_ros.io.profiles import ProfileError, list_profiles, load_profile


def test_bundled_profiles_load_with_their_roles():
    names = list_profiles()
    assert {"generic", "m3dgr", "oxford_spires", "husky"} <= set(names)
    m = load_profile("m3dgr")
    assert m.ros_version == 1
    assert m.roles["lidar"].topic == "/livox/mid360/lidar" and m.roles["lidar"].msgtype.endswith("CustomMsg")
    assert m.roles["imu"].acc_scale == pytest.approx(9.80665)           # Livox IMU in g
    assert m.roles["imu_camera"].acc_scale == 1.0
    assert m.roles["gnss"].status_encoding == "ublox" and m.roles["gnss"].stamp_offset_s == -18.0
    assert m.roles["gnss"].covariance_from == "gnss_pvt"
    # MID-360 tilted ~31 degrees about y
    assert np.degrees(matrix_to_rpy(m.roles["lidar"].T_base_sensor[:3, :3]))[1] == pytest.approx(31.0)
    assert m.roles["camera_rgb"].intrinsics.fx == pytest.approx(607.80)
    assert "lidar_avia" in m.roles and "lidar_avia" not in m.primary_roles()
    o = load_profile("oxford_spires")
    T = o.roles["lidar"].T_base_sensor
    assert np.allclose(T[:3, 3], [0, 0, 0.124]) and np.allclose(T[:3, :3], np.diag([-1, -1, 1]), atol=1e-9)
    assert "wheel" not in o.roles and "gnss" not in o.roles
    h = load_profile("husky")
    # base_link -> imu_link maps the IMU's +y (up on this robot) to base +z
    assert np.allclose(h.roles["imu"].T_base_sensor[:3, :3] @ [0, 1, 0], [0, 0, 1], atol=1e-9)


def _write(tmp_path: Path, doc) -> Path:
    p = tmp_path / "mine.yaml"
    p.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc)
    return p


def _base_doc():
    return yaml.safe_load(Path(list_profiles()["generic"]).read_text())


def test_user_profile_by_path(tmp_path):
    doc = _base_doc()
    doc["name"] = "my_robot"
    doc["roles"]["lidar"]["topic"] = "/my/points"
    doc["roles"]["lidar"]["extrinsic"] = {"xyz": [0.2, 0, 1.1], "quat_xyzw": [0, 0, 0.70710678, 0.70710678]}
    p = load_profile(_write(tmp_path, doc))
    assert p.name == "my_robot" and p.roles["lidar"].topic == "/my/points"
    T = p.roles["lidar"].T_base_sensor
    assert np.allclose(T[:3, 3], [0.2, 0, 1.1]) and np.allclose(T[:3, 0], [0, 1, 0], atol=1e-6)


@pytest.mark.parametrize("mutate,field", [
    (lambda d: d["roles"]["imu"].pop("topic"), "roles.imu.topic"),
    (lambda d: d["roles"]["imu"].update(msgtype="sensor_msgs/msg/PointCloud2"), "roles.imu.msgtype"),
    (lambda d: d["roles"]["lidar"].update(extrinsic={"xyz": [0, 0], "rpy_deg": [0, 0, 0]}), "roles.lidar.extrinsic.xyz"),
    (lambda d: d["roles"]["lidar"].update(extrinsic={"quat_xyzw": [0, 0, 0, 3]}), "roles.lidar.extrinsic.quat_xyzw"),
    (lambda d: d["roles"]["lidar"].update(extrinsic={"rpy_degs": [0, 0, 0]}), "roles.lidar.extrinsic.rpy_degs"),
    (lambda d: d["roles"]["imu"].update(acc_unit="furlongs"), "roles.imu.acc_unit"),
    (lambda d: d["roles"]["imu"].update(topik="/x"), "roles.imu.topik"),
    (lambda d: d["roles"].update(sonar={"topic": "/s", "msgtype": "sensor_msgs/msg/Range"}), "sonar"),
    (lambda d: d.pop("ros_version"), "ros_version"),
    (lambda d: d.update(ros_version=3), "ros_version"),
    (lambda d: d["roles"]["gnss"].update(covariance_from="gnss_pvt"), "roles.gnss.covariance_from"),
    (lambda d: d["roles"]["camera_rgb"].update(intrinsics={"width": 640, "fx": 500}), "roles.camera_rgb.intrinsics.height"),
    (lambda d: d["roles"]["imu"].update(topic="/points"), "/points"),
])
def test_bad_field_is_named(tmp_path, mutate, field):
    doc = _base_doc()
    mutate(doc)
    with pytest.raises(ProfileError) as e:
        load_profile(_write(tmp_path, doc))
    assert field in str(e.value) and "mine.yaml" in str(e.value)


def test_unknown_name_missing_file_bad_yaml(tmp_path):
    with pytest.raises(ProfileError, match="bundled profiles are .*m3dgr"):
        load_profile("no_such_profile")
    with pytest.raises(ProfileError, match="not found"):
        load_profile(tmp_path / "absent.yaml")
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_profile(_write(tmp_path, "name: [unclosed\n  roles: {"))
    with pytest.raises(ProfileError, match="top level"):
        load_profile(_write(tmp_path, "- just\n- a list\n"))
