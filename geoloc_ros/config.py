"""Typed parameter sets with documented defaults.

Every engine keeps its parameters in one dataclass in its own package (``bev.config.BevConfig``,
``objects.config.ObjectsConfig``, ``fusion.config.FusionConfig``, ``odometry.config.OdometryConfig``);
:class:`GeolocConfig` composes
them. Each field is declared with :func:`param`, which records its meaning and unit; the same
names, dotted (``bev.crop_m``), are the ROS parameters of the nodes and the keys of
``config/geoloc.yaml`` (a ROS 2 params file: ``/**: ros__parameters: {...}``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["param", "GeolocConfig", "ConfigError", "flatten", "unflatten", "load_config",
           "config_from_flat", "describe", "default_yaml"]


NODE_SECTION = "node"  # parameters of the ROS 2 doors only, ignored by the core


class ConfigError(ValueError):
    """A configuration file or parameter that cannot be used; the message names the key."""


def param(default: Any, doc: str, unit: str = "", *, factory=None):
    """A dataclass field with its meaning and unit (shown in YAML comments and ROS descriptors)."""
    md = {"doc": doc, "unit": unit}
    if factory is not None:
        return field(default_factory=factory, metadata=md)
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=md)
    return field(default=default, metadata=md)


def _sections():
    from geoloc_ros.bev.config import BevConfig
    from geoloc_ros.fusion.config import FusionConfig
    from geoloc_ros.objects.config import ObjectsConfig
    from geoloc_ros.odometry.config import OdometryConfig
    return BevConfig, ObjectsConfig, FusionConfig, OdometryConfig


def _section_field(name: str):
    def make():
        bev, obj, fus, odo = _sections()
        return {"bev": bev, "objects": obj, "fusion": fus, "odometry": odo}[name]()
    return field(default_factory=make, metadata={"doc": f"{name} engine parameters", "unit": ""})


@dataclass
class GeolocConfig:
    """Top-level parameters of the localizer (node, replay and demo alike)."""
    map_dir: str = param("", "map directory built by `geoloc build-map` (empty: no prior map)")
    profile: str = param("generic", "sensor profile: bundled name (generic, m3dgr, oxford_spires) or YAML path")
    map_frame: str = param("map", "fixed frame of the prior map (REP-105)")
    odom_frame: str = param("odom", "continuous odometry frame; empty disables map->odom")
    base_frame: str = param("base_link", "robot body frame")
    publish_tf: bool = param(True, "broadcast map->odom through tf2_ros where it is installed")
    enable_bev: bool = param(True, "run the BEV place-recognition engine on LiDAR scans")
    enable_objects: bool = param(True, "run the object-map alignment engine")
    bev_period_s: float = param(1.0, "minimum time between BEV global queries", "s")
    max_msg_age_s: float = param(2.0, "messages older than this behind the newest are dropped", "s")
    time_jump_reset_s: float = param(1.0, "a stamp this far behind the newest (a bag looping, a restarted "
                                     "recorder) resets the filter", "s")
    time_jump_forward_s: float = param(10.0, "a stamp this far ahead of the newest (a clock jump, a restarted "
                                       "recorder) resets the filter instead of integrating the gap", "s")
    scan_timeout_s: float = param(2.0, "once LiDAR has been seen, a silence this long is counted as a dropout "
                                  "('no scan for N s' in the estimate's counters)", "s")
    confirm_fixes: int = param(3, "global fixes that must agree through odometry before one initializes "
                               "an unlocalized filter (1: trust the first)")
    confirm_window_s: float = param(30.0, "how long an unconfirmed global fix waits for a second that agrees", "s")
    confirm_dist_m: float = param(2.0, "two fixes agree when their odometry-predicted positions differ by less "
                                  "than this (plus 5% of the travel between them)", "m")
    confirm_yaw_rad: float = param(0.17, "... and their odometry-predicted headings by less than this", "rad")
    confirm_max_speed_mps: float = param(4.0, "without wheel odometry: the fastest the robot moves, bounding how "
                                         "far apart two agreeing fixes may be", "m/s")
    confirm_travel_m: float = param(5.0, "agreeing fixes must span at least this much travel (a repetitive "
                                    "street gives consistent wrong answers over a short stretch)", "m")
    bev: Any = _section_field("bev")
    objects: Any = _section_field("objects")
    fusion: Any = _section_field("fusion")
    odometry: Any = _section_field("odometry")


def _is_dataclass_instance(x) -> bool:
    return dataclasses.is_dataclass(x) and not isinstance(x, type)


def _leaves(cfg, prefix: str = ""):
    """(dotted name, value, dataclass field) for every leaf field of a nested config dataclass."""
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        key = f"{prefix}{f.name}"
        if _is_dataclass_instance(v):
            yield from _leaves(v, key + ".")
        else:
            yield key, v, f


def flatten(cfg, prefix: str = "") -> dict[str, Any]:
    """Dotted name -> value for every leaf field of a (nested) config dataclass."""
    return {key: v for key, v, _ in _leaves(cfg, prefix)}


def describe(cfg, prefix: str = "") -> dict[str, tuple[str, str]]:
    """Dotted name -> (doc, unit) for every leaf field."""
    return {key: (f.metadata.get("doc", ""), f.metadata.get("unit", "")) for key, _, f in _leaves(cfg, prefix)}


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """{'a.b': 1} -> {'a': {'b': 1}}."""
    out: dict[str, Any] = {}
    for k, v in flat.items():
        node = out
        parts = k.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v
    return out


def _coerce(key: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"parameter '{key}' must be a bool, got {value!r}")
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"parameter '{key}' must be a number, got {value!r}")
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"parameter '{key}' must be an integer, got {value!r}")
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        raise ConfigError(f"parameter '{key}' must be a string, got {value!r}")
    if isinstance(default, (list, tuple)):
        if isinstance(value, (list, tuple)):
            return list(value)
        raise ConfigError(f"parameter '{key}' must be a list, got {value!r}")
    return value


def _apply(cfg, values: dict[str, Any], prefix: str = ""):
    names = {f.name: f for f in dataclasses.fields(cfg)}
    for k, v in values.items():
        key = f"{prefix}{k}"
        if k not in names:
            raise ConfigError(f"unknown parameter '{key}'")
        cur = getattr(cfg, k)
        if _is_dataclass_instance(cur):
            if not isinstance(v, dict):
                raise ConfigError(f"parameter '{key}' must be a mapping")
            _apply(cur, v, key + ".")
        else:
            setattr(cfg, k, _coerce(key, v, cur))
    return cfg


def config_from_flat(flat: dict[str, Any], base: GeolocConfig | None = None) -> GeolocConfig:
    """A config with dotted overrides applied (unknown names and wrong types raise ConfigError)."""
    cfg = base if base is not None else GeolocConfig()
    return _apply(cfg, unflatten(flat))


def _params_block(doc: Any, source: str) -> dict:
    """The parameters of a ROS 2 params file (any node name, usually ``/**``), or a plain mapping."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    merged: dict = {}
    found = False
    for v in doc.values():
        if isinstance(v, dict) and "ros__parameters" in v:
            found = True
            merged.update(v["ros__parameters"] or {})
    return merged if found else doc


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> GeolocConfig:
    """Defaults, then a YAML file (ROS params file or plain mapping), then dotted overrides."""
    cfg = GeolocConfig()
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            doc = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML ({e})") from None
        block = dict(_params_block(doc, str(p)))
        block.pop(NODE_SECTION, None)  # the ROS doors' own parameters (geoloc_ros.nodes.config)
        for k in [k for k in block if k.startswith(NODE_SECTION + ".")]:
            block.pop(k)
        # accept both nested mappings and dotted keys
        flat: dict[str, Any] = {}
        for k, v in block.items():
            if isinstance(v, dict):
                for kk, vv in flatten_dict(v, k + ".").items():
                    flat[kk] = vv
            else:
                flat[k] = v
        try:
            _apply(cfg, unflatten(flat))
        except ConfigError as e:
            raise ConfigError(f"{p}: {e}") from None
    if overrides:
        _apply(cfg, unflatten(overrides))
    return cfg


def flatten_dict(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested plain dict -> dotted keys."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten_dict(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def default_yaml(cfg: GeolocConfig | None = None, node: str = "/**", extra: dict | None = None) -> str:
    """A ROS 2 params file with every parameter, its meaning, unit and default as a comment.

    ``extra``: further sections {name: dataclass instance}, e.g. the nodes' own ``node`` section.
    """
    cfg = cfg or GeolocConfig()
    flat, docs = flatten(cfg), describe(cfg)
    for name, sec in (extra or {}).items():
        flat.update(flatten(sec, name + "."))
        docs.update(describe(sec, name + "."))
    lines = ["# geoloc_ros parameters: every parameter of the nodes, with its meaning, unit and default.",
             "# Generated from the typed defaults (python -m geoloc_ros.config > config/geoloc.yaml);",
             "# a test checks that this file, the nodes' declared parameters and the core defaults agree.",
             "# Use:  ros2 run geoloc_ros geoloc_node --ros-args --params-file config/geoloc.yaml",
             f"{node}:", "  ros__parameters:"]
    section = None
    for key, value in flat.items():
        parts = key.split(".")
        if len(parts) == 2 and parts[0] != section:
            section = parts[0]
            lines.append(f"    {section}:")
        elif len(parts) == 1:
            section = None
        indent = "    " if len(parts) == 1 else "      "
        doc, unit = docs[key]
        u = f" [{unit}]" if unit else ""
        lines.append(f"{indent}# {doc}{u} (default: {value!r})")
        lines.append(f"{indent}{parts[-1]}: {yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # regenerate config/geoloc.yaml
    from geoloc_ros.nodes.config import NodeConfig
    print(default_yaml(extra={"node": NodeConfig()}), end="")
