"""Sensor profiles: which topic plays which sensor role, its message type, frame, extrinsic, units.

A profile is data (YAML), not code. Bundled ones (``generic``, ``m3dgr``, ``oxford_spires``,
``husky``) live in ``config/profiles/``; every ``--profile`` option takes one of those names or
the path of a user's own YAML (copy a bundled one, edit topics and extrinsics). A missing or
malformed field is a :class:`ProfileError` naming the file and the field.

YAML layout::

    name: my_robot
    ros_version: 2                  # format BagWriter writes: 1 (.bag) or 2 (.db3/.mcap);
                                    # reading detects the format from the file either way
    description: free text
    leap_seconds: 18                # GPS - UTC, for GPS-time stamps / GPS week-tow
    roles:
      lidar:                        # role name: a known role, or "<known role>_<suffix>" for extras
        topic: /points
        msgtype: sensor_msgs/msg/PointCloud2
        frame_id: lidar             # used when the message's frame_id is empty
        extrinsic: {xyz: [0, 0, 0.3], rpy_deg: [0, 0, 0]}   # T_base_sensor; or quat_xyzw / matrix
        rate_hz: 10
        point_time_unit: auto       # auto | s | ms | us | ns  (per-point time field)
      imu: {topic: /imu, msgtype: sensor_msgs/msg/Imu, acc_unit: mps2}   # or g
      gnss: {topic: /fix, msgtype: sensor_msgs/msg/NavSatFix, status_encoding: navsatfix,
             stamp_offset_s: 0.0, covariance_from: ""}                   # or ublox / gnss_pvt

Frames follow REP-103/105: ``T_base_sensor`` maps sensor-frame points into ``base_link``.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from geoloc_ros.events import CameraIntrinsics
from geoloc_ros.geometry import rpy_to_matrix, se3, xyzquat_to_pose

__all__ = ["Profile", "TopicSpec", "ProfileError", "load_profile", "list_profiles", "profile_dirs",
           "ROLES", "MSGTYPES", "role_kind", "normalize_msgtype"]

# known roles -> the message types that can play them
ROLES: dict[str, tuple[str, ...]] = {
    "lidar": ("sensor_msgs/msg/PointCloud2", "livox_ros_driver/msg/CustomMsg", "livox_ros_driver2/msg/CustomMsg"),
    "imu": ("sensor_msgs/msg/Imu",),
    "wheel": ("nav_msgs/msg/Odometry",),
    "gnss": ("sensor_msgs/msg/NavSatFix",),
    "gnss_pvt": ("gnss_comm/msg/GnssPVTSolnMsg",),
    "camera_rgb": ("sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/Image"),
    "camera_depth": ("sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/Image"),
    "camera_info": ("sensor_msgs/msg/CameraInfo",),
    "camera_instance": ("sensor_msgs/msg/Image",),
    "initialpose": ("geometry_msgs/msg/PoseWithCovarianceStamped",),
}
MSGTYPES = sorted({m for v in ROLES.values() for m in v})
_TIME_UNITS = {"auto": None, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_ACC_UNITS = {"mps2": 1.0, "g": 9.80665}
_STATUS_ENCODINGS = ("navsatfix", "ublox")


class ProfileError(ValueError):
    """A profile that cannot be used; the message names the file and the field."""


@dataclass
class TopicSpec:
    """One sensor role of a profile (all quirk flags with their defaults)."""
    role: str
    topic: str
    msgtype: str
    frame_id: str = ""
    T_base_sensor: np.ndarray = field(default_factory=lambda: np.eye(4))   # (4, 4)
    rate_hz: float = 0.0
    acc_scale: float = 1.0               # imu: multiplies acceleration (9.80665 for "g")
    stamp_offset_s: float = 0.0          # added to header stamps (-leap_seconds for GPS time)
    status_encoding: str = "navsatfix"   # gnss: "navsatfix" (REP) or "ublox" (fix type/carrier)
    covariance_from: str = ""            # gnss: role giving h_acc/v_acc when the cov is empty
    point_time_scale_s: float | None = None  # lidar: seconds per unit of the per-point time field
    point_time_field: str = "t"          # lidar writer: field name for per-point time
    point_time_dtype: str = "f4"         # lidar writer: f4 (s) | u4 (ns) | f8_abs (absolute s)
    depth_scale_m: float = 0.001         # camera_depth: metres per integer unit
    image_format: str = "jpeg"           # camera writer: jpeg | png (CompressedImage)
    intrinsics: CameraIntrinsics | None = None
    notes: str = ""

    @property
    def kind(self) -> str:
        return role_kind(self.role)


@dataclass
class Profile:
    """A named topic layout: ``roles`` maps role name -> :class:`TopicSpec`."""
    name: str
    ros_version: int
    roles: dict[str, TopicSpec]
    description: str = ""
    leap_seconds: float = 18.0
    source: str = ""

    def role_of_topic(self, topic: str) -> str | None:
        for r, s in self.roles.items():
            if s.topic == topic:
                return r
        return None

    def primary_roles(self) -> list[str]:
        """Roles named exactly as a known role (extras like ``lidar_avia`` excluded)."""
        return [r for r in self.roles if r in ROLES]


def role_kind(role: str) -> str:
    """``lidar_avia`` -> ``lidar``; ``camera_rgb_cam1`` -> ``camera_rgb``; unknown -> ''."""
    best = ""
    for k in ROLES:
        if (role == k or role.startswith(k + "_")) and len(k) > len(best):
            best = k
    return best


def normalize_msgtype(t: str) -> str:
    """ROS 1 spelling ``sensor_msgs/Imu`` -> ``sensor_msgs/msg/Imu``."""
    parts = str(t).strip().split("/")
    if len(parts) == 2:
        return f"{parts[0]}/msg/{parts[1]}"
    return "/".join(parts)


def profile_dirs() -> list[Path]:
    """Where bundled profiles are searched: the source tree (editable installs), then
    ``sys.prefix/share/geoloc_ros/config/profiles`` and the ament index share directory."""
    here = Path(__file__).resolve().parents[2] / "config" / "profiles"
    dirs = [here, Path(sys.prefix) / "share" / "geoloc_ros" / "config" / "profiles"]
    try:  # installed in a colcon workspace
        from ament_index_python.packages import get_package_share_directory
        dirs.append(Path(get_package_share_directory("geoloc_ros")) / "config" / "profiles")
    except Exception:  # noqa: BLE001 - not in an ament environment
        pass
    return [d for i, d in enumerate(dirs) if d not in dirs[:i]]


def list_profiles() -> dict[str, Path]:
    """Bundled profile name -> path (first directory wins)."""
    out: dict[str, Path] = {}
    for d in profile_dirs():
        if d.is_dir():
            for p in sorted(d.glob("*.yaml")):
                out.setdefault(p.stem, p)
    return out


# ---- parsing ----------------------------------------------------------------------------------
def _num(src: str, key: str, v: Any, *, positive: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
        raise ProfileError(f"{src}: field '{key}' must be a number, got {v!r}")
    if positive and v <= 0:
        raise ProfileError(f"{src}: field '{key}' must be > 0, got {v!r}")
    return float(v)


def _vec(src: str, key: str, v: Any, n: int) -> np.ndarray:
    if not isinstance(v, (list, tuple)) or len(v) != n:
        raise ProfileError(f"{src}: field '{key}' must be a list of {n} numbers, got {v!r}")
    return np.array([_num(src, f"{key}[{i}]", x) for i, x in enumerate(v)])


def _extrinsic(src: str, key: str, v: Any) -> np.ndarray:
    """{xyz, rpy_deg | rpy_rad | quat_xyzw} or {matrix: 4x4 rows} -> (4, 4) T_base_sensor."""
    if v is None:
        return np.eye(4)
    if not isinstance(v, dict):
        raise ProfileError(f"{src}: field '{key}' must be a mapping (xyz + rpy_deg/quat_xyzw, or matrix)")
    allowed = {"xyz", "rpy_deg", "rpy_rad", "quat_xyzw", "matrix"}
    for k in v:
        if k not in allowed:
            raise ProfileError(f"{src}: unknown field '{key}.{k}' (allowed: {', '.join(sorted(allowed))})")
    if "matrix" in v:
        m = v["matrix"]
        if not isinstance(m, list) or len(m) != 4:
            raise ProfileError(f"{src}: field '{key}.matrix' must be 4 rows of 4 numbers")
        T = np.stack([_vec(src, f"{key}.matrix[{i}]", r, 4) for i, r in enumerate(m)])
        R = T[:3, :3]
        if not np.allclose(R @ R.T, np.eye(3), atol=1e-4) or not np.allclose(T[3], [0, 0, 0, 1]):
            raise ProfileError(f"{src}: field '{key}.matrix' is not a rigid transform")
        return T
    t = _vec(src, f"{key}.xyz", v.get("xyz", [0.0, 0.0, 0.0]), 3)
    rots = [k for k in ("rpy_deg", "rpy_rad", "quat_xyzw") if k in v]
    if len(rots) > 1:
        raise ProfileError(f"{src}: field '{key}' gives more than one rotation ({', '.join(rots)})")
    if not rots:
        return se3(None, t)
    if rots[0] == "quat_xyzw":
        q = _vec(src, f"{key}.quat_xyzw", v["quat_xyzw"], 4)
        if abs(np.linalg.norm(q) - 1.0) > 1e-3:
            raise ProfileError(f"{src}: field '{key}.quat_xyzw' is not a unit quaternion (norm {np.linalg.norm(q):.4f})")
        return xyzquat_to_pose(np.concatenate([t, q / np.linalg.norm(q)]))
    rpy = _vec(src, f"{key}.{rots[0]}", v[rots[0]], 3)
    if rots[0] == "rpy_deg":
        rpy = np.radians(rpy)
    return se3(rpy_to_matrix(*rpy), t)


def _intrinsics(src: str, key: str, v: Any) -> CameraIntrinsics:
    if not isinstance(v, dict):
        raise ProfileError(f"{src}: field '{key}' must be a mapping (width, height, fx, fy, cx, cy[, model, D])")
    for req in ("width", "height", "fx", "fy", "cx", "cy"):
        if req not in v:
            raise ProfileError(f"{src}: missing field '{key}.{req}'")
    model = str(v.get("model", "pinhole"))
    if model not in ("pinhole", "equidistant"):
        raise ProfileError(f"{src}: field '{key}.model' must be pinhole or equidistant, got {model!r}")
    D = np.array(v.get("D", [0.0, 0.0, 0.0, 0.0]), float)
    return CameraIntrinsics(width=int(_num(src, f"{key}.width", v["width"], positive=True)),
                            height=int(_num(src, f"{key}.height", v["height"], positive=True)),
                            fx=_num(src, f"{key}.fx", v["fx"], positive=True),
                            fy=_num(src, f"{key}.fy", v["fy"], positive=True),
                            cx=_num(src, f"{key}.cx", v["cx"]), cy=_num(src, f"{key}.cy", v["cy"]),
                            model=model, D=D)


_ROLE_KEYS = {"topic", "msgtype", "frame_id", "extrinsic", "rate_hz", "acc_unit", "stamp_offset_s",
              "status_encoding", "covariance_from", "point_time_unit", "point_time_field",
              "point_time_dtype", "depth_scale_m", "image_format", "intrinsics", "notes"}


def _role(src: str, role: str, d: Any) -> TopicSpec:
    key = f"roles.{role}"
    kind = role_kind(role)
    if not kind:
        raise ProfileError(f"{src}: unknown role '{role}' (known: {', '.join(ROLES)}, or '<role>_<suffix>')")
    if not isinstance(d, dict):
        raise ProfileError(f"{src}: field '{key}' must be a mapping with at least topic and msgtype")
    for k in d:
        if k not in _ROLE_KEYS:
            raise ProfileError(f"{src}: unknown field '{key}.{k}' (allowed: {', '.join(sorted(_ROLE_KEYS))})")
    for req in ("topic", "msgtype"):
        if req not in d or not isinstance(d[req], str) or not d[req].strip():
            raise ProfileError(f"{src}: missing or empty field '{key}.{req}'")
    topic = d["topic"].strip()
    if not topic.startswith("/"):
        topic = "/" + topic
    msgtype = normalize_msgtype(d["msgtype"])
    if msgtype not in ROLES[kind]:
        raise ProfileError(f"{src}: field '{key}.msgtype' is {msgtype}; role '{kind}' takes "
                           f"{' or '.join(ROLES[kind])}")
    spec = TopicSpec(role=role, topic=topic, msgtype=msgtype, frame_id=str(d.get("frame_id", "") or ""),
                     T_base_sensor=_extrinsic(src, f"{key}.extrinsic", d.get("extrinsic")),
                     notes=str(d.get("notes", "")))
    if "rate_hz" in d:
        spec.rate_hz = _num(src, f"{key}.rate_hz", d["rate_hz"], positive=True)
    if "stamp_offset_s" in d:
        spec.stamp_offset_s = _num(src, f"{key}.stamp_offset_s", d["stamp_offset_s"])
    if "acc_unit" in d:
        if d["acc_unit"] not in _ACC_UNITS:
            raise ProfileError(f"{src}: field '{key}.acc_unit' must be one of {list(_ACC_UNITS)}, got {d['acc_unit']!r}")
        spec.acc_scale = _ACC_UNITS[d["acc_unit"]]
    if "status_encoding" in d:
        if d["status_encoding"] not in _STATUS_ENCODINGS:
            raise ProfileError(f"{src}: field '{key}.status_encoding' must be one of {_STATUS_ENCODINGS}")
        spec.status_encoding = d["status_encoding"]
    if "covariance_from" in d:
        spec.covariance_from = str(d["covariance_from"] or "")
    if "point_time_unit" in d:
        if d["point_time_unit"] not in _TIME_UNITS:
            raise ProfileError(f"{src}: field '{key}.point_time_unit' must be one of {list(_TIME_UNITS)}")
        spec.point_time_scale_s = _TIME_UNITS[d["point_time_unit"]]
    if "point_time_field" in d:
        spec.point_time_field = str(d["point_time_field"])
    if "point_time_dtype" in d:
        if d["point_time_dtype"] not in ("f4", "f8", "u4", "f8_abs"):
            raise ProfileError(f"{src}: field '{key}.point_time_dtype' must be f4, f8, u4 or f8_abs")
        spec.point_time_dtype = d["point_time_dtype"]
    if "depth_scale_m" in d:
        spec.depth_scale_m = _num(src, f"{key}.depth_scale_m", d["depth_scale_m"], positive=True)
    if "image_format" in d:
        if d["image_format"] not in ("jpeg", "png"):
            raise ProfileError(f"{src}: field '{key}.image_format' must be jpeg or png")
        spec.image_format = d["image_format"]
    if "intrinsics" in d:
        spec.intrinsics = _intrinsics(src, f"{key}.intrinsics", d["intrinsics"])
    return spec


def profile_from_dict(doc: Any, src: str = "<profile>") -> Profile:
    """Validate a parsed YAML document into a :class:`Profile`."""
    if not isinstance(doc, dict):
        raise ProfileError(f"{src}: expected a mapping at the top level")
    allowed = {"name", "ros_version", "description", "leap_seconds", "roles"}
    for k in doc:
        if k not in allowed:
            raise ProfileError(f"{src}: unknown field '{k}' (allowed: {', '.join(sorted(allowed))})")
    for req in ("name", "ros_version", "roles"):
        if req not in doc:
            raise ProfileError(f"{src}: missing field '{req}'")
    if not isinstance(doc["name"], str) or not doc["name"]:
        raise ProfileError(f"{src}: field 'name' must be a non-empty string")
    if doc["ros_version"] not in (1, 2):
        raise ProfileError(f"{src}: field 'ros_version' must be 1 or 2, got {doc['ros_version']!r}")
    roles = doc["roles"]
    if not isinstance(roles, dict) or not roles:
        raise ProfileError(f"{src}: field 'roles' must be a non-empty mapping of role -> topic spec")
    specs = {str(r): _role(src, str(r), d) for r, d in roles.items()}
    topics = [s.topic for s in specs.values()]
    dup = sorted({t for t in topics if topics.count(t) > 1})
    if dup:
        raise ProfileError(f"{src}: topic(s) {', '.join(dup)} assigned to more than one role")
    for r, s in specs.items():
        if s.covariance_from and s.covariance_from not in specs:
            raise ProfileError(f"{src}: field 'roles.{r}.covariance_from' names role '{s.covariance_from}' "
                               f"which the profile does not define")
    prof = Profile(name=doc["name"], ros_version=int(doc["ros_version"]), roles=specs,
                   description=str(doc.get("description", "")), source=src)
    if "leap_seconds" in doc:
        prof.leap_seconds = _num(src, "leap_seconds", doc["leap_seconds"])
    return prof


def load_profile(name_or_path: str | Path | Profile) -> Profile:
    """A bundled profile by name (``m3dgr``) or a YAML file by path; :class:`ProfileError` if unusable."""
    if isinstance(name_or_path, Profile):
        return name_or_path
    s = str(name_or_path)
    p = Path(s).expanduser()
    if not (p.suffix in (".yaml", ".yml") or "/" in s or p.is_file()):
        bundled = list_profiles()
        if s not in bundled:
            raise ProfileError(f"unknown profile '{s}': bundled profiles are {', '.join(sorted(bundled)) or '(none found)'}"
                               f" (or give the path of a YAML file)")
        p = bundled[s]
    if not p.is_file():
        raise ProfileError(f"profile file not found: {p}")
    try:
        doc = yaml.safe_load(p.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ProfileError(f"{p}: not valid YAML ({e})") from None
    return profile_from_dict(doc, str(p))
