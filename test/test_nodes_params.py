"""Parameters: config/geoloc.yaml, the parameters the nodes declare and the core defaults agree;
overrides from the command line reach the pipeline's config; a wrong type is a clear error."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2 wheels) not installed")

from geoloc_ros.config import ConfigError, GeolocConfig, describe, flatten, flatten_dict  # noqa: E402
from geoloc_ros.nodes.common import declare_config, declared_defaults  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def ctx_args():
    """A private rclpy context per test, with optional command-line arguments."""
    made = []

    def make(args=None):
        ctx = rclpy.Context()
        rclpy.init(args=args, context=ctx, domain_id=(os.getpid() % 150) + 50)
        made.append(ctx)
        return ctx
    yield make
    for c in made:
        rclpy.shutdown(context=c)


def _node(ctx, name="geoloc"):
    from rclpy.node import Node
    return Node(name, context=ctx)


def test_declared_parameters_match_core_defaults_with_descriptions(ctx_args):
    ctx = ctx_args()
    node = _node(ctx)
    cfg, ncfg = declare_config(node)
    core, docs = flatten(GeolocConfig()), describe(GeolocConfig())
    assert core, "GeolocConfig has no parameters"
    for name, default in core.items():
        p = node.get_parameter(name)
        v = p.value.tolist() if hasattr(p.value, "tolist") else p.value
        assert v == default, f"{name}: declared {v!r}, core default {default!r}"
        desc = node.describe_parameter(name).description
        doc, unit = docs[name]
        assert doc and doc in desc, f"{name}: description {desc!r} lacks the documented meaning"
        if unit:
            assert unit in desc, f"{name}: description {desc!r} lacks the unit {unit!r}"
    assert flatten(cfg) == core
    node.destroy_node()


def test_geoloc_yaml_agrees_with_declared_parameters():
    path = ROOT / "config" / "geoloc.yaml"
    assert path.is_file(), "config/geoloc.yaml is missing"
    doc = yaml.safe_load(path.read_text())
    block = next(v["ros__parameters"] for v in doc.values() if isinstance(v, dict) and "ros__parameters" in v)
    flat = flatten_dict(block)
    declared = declared_defaults()
    core = flatten(GeolocConfig())
    unknown = sorted(set(flat) - set(declared))
    assert not unknown, f"config/geoloc.yaml has parameters no node declares: {unknown}"
    missing = sorted(set(core) - set(flat))
    assert not missing, (f"config/geoloc.yaml lacks parameters: {missing} "
                         "(regenerate: python -m geoloc_ros.config > config/geoloc.yaml)")
    for k, v in flat.items():
        d = declared[k][0]
        if isinstance(d, float) and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        assert v == d, (f"{k}: config/geoloc.yaml says {v!r}, the declared default is {d!r} "
                        "(regenerate: python -m geoloc_ros.config > config/geoloc.yaml)")
    text = path.read_text()
    for k in core:  # every parameter is commented with its meaning
        doc = describe(GeolocConfig())[k][0]
        assert doc.split(" (")[0][:40] in text, f"config/geoloc.yaml has no comment for {k}"


@pytest.mark.parametrize("name", ["m3dgr", "oxford_spires"])
def test_dataset_params_files_only_set_declared_parameters(name):
    path = ROOT / "config" / f"{name}.yaml"
    assert path.is_file(), f"config/{name}.yaml is missing (launch/{name}.launch.py uses it)"
    doc = yaml.safe_load(path.read_text())
    block = next(v["ros__parameters"] for v in doc.values() if isinstance(v, dict) and "ros__parameters" in v)
    unknown = sorted(set(flatten_dict(block)) - set(declared_defaults()))
    assert not unknown, f"config/{name}.yaml sets undeclared parameters: {unknown}"
    from geoloc_ros.config import load_config
    assert load_config(path).profile == name


def test_command_line_overrides_reach_the_config(ctx_args):
    ctx = ctx_args(["prog", "--ros-args", "-p", "bev.crop_m:=30", "-p", "max_msg_age_s:=0.5",
                    "-p", "node.queue_size:=64", "-p", "map_frame:=world"])
    node = _node(ctx)
    cfg, ncfg = declare_config(node)
    assert cfg.bev.crop_m == 30.0 and isinstance(cfg.bev.crop_m, float)   # int accepted for a float
    assert cfg.max_msg_age_s == 0.5 and cfg.map_frame == "world"
    assert ncfg.queue_size == 64
    node.destroy_node()


def test_params_file_reaches_the_config(ctx_args, tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("/**:\n  ros__parameters:\n    bev:\n      top_k: 3\n    enable_objects: false\n")
    ctx = ctx_args(["prog", "--ros-args", "--params-file", str(f)])
    node = _node(ctx)
    cfg, _ = declare_config(node)
    assert cfg.bev.top_k == 3 and cfg.enable_objects is False
    node.destroy_node()


def test_wrong_type_is_a_clear_error_naming_the_parameter(ctx_args):
    ctx = ctx_args(["prog", "--ros-args", "-p", "bev.top_k:=many"])
    node = _node(ctx)
    with pytest.raises((ConfigError, ValueError), match="bev.top_k"):
        declare_config(node)
    node.destroy_node()


def test_unusable_map_dir_is_reported_not_fatal(ctx_args, tmp_path):
    """A corrupt map: the node starts without it (dead reckoning) and says why in diagnostics."""
    from diagnostic_msgs.msg import DiagnosticStatus

    from geoloc_ros.nodes.geoloc import GeolocNode
    bad = tmp_path / "map"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json")
    ctx = ctx_args()
    node = GeolocNode(context=ctx, overrides={"map_dir": str(bad), "publish_tf": False})
    try:
        assert node.mapdir is None and node.localizer.bev is None
        assert str(bad) in node.map_error
        node._update_engine_diag()
        st = node.diag["bev"]
        assert st.level == DiagnosticStatus.WARN and str(bad) in st.message
    finally:
        node.destroy_node()
