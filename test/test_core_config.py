"""config: typed defaults, YAML params files, dotted overrides and clear errors."""
from pathlib import Path

import pytest

from geoloc_ros.config import (ConfigError, GeolocConfig, config_from_flat, default_yaml, describe,
                               flatten, load_config)

ROOT = Path(__file__).resolve().parents[1]


def test_every_parameter_is_documented():
    docs = describe(GeolocConfig())
    assert len(docs) > 30
    undocumented = [k for k, (doc, _) in docs.items() if not doc.strip()]
    assert not undocumented, f"parameters without a description: {undocumented}"


def test_shipped_geoloc_yaml_is_the_generated_one():
    from geoloc_ros.nodes.config import NodeConfig
    assert (ROOT / "config" / "geoloc.yaml").read_text() == default_yaml(extra={"node": NodeConfig()}), \
        "config/geoloc.yaml is stale: regenerate with `python -m geoloc_ros.config > config/geoloc.yaml`"


def test_yaml_roundtrip_and_overrides(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("/**:\n  ros__parameters:\n    bev:\n      crop_m: 30\n    fusion.gravity_mps2: 9.81\n"
                 "    node:\n      queue_size: 5\n")
    cfg = load_config(p, overrides={"map_frame": "world"})
    assert cfg.bev.crop_m == 30.0 and isinstance(cfg.bev.crop_m, float)
    assert cfg.fusion.gravity_mps2 == 9.81 and cfg.map_frame == "world"
    assert flatten(config_from_flat({"bev.crop_m": 20.0})) ["bev.crop_m"] == 20.0


@pytest.mark.parametrize("text, needle", [
    ("/**:\n  ros__parameters:\n    bev:\n      no_such: 1\n", "bev.no_such"),
    ("/**:\n  ros__parameters:\n    bev:\n      crop_m: fast\n", "bev.crop_m"),
    ("/**:\n  ros__parameters:\n    enable_bev: 1\n", "enable_bev"),
    ("/**:\n  ros__parameters: [1, 2\n", "not valid YAML"),
])
def test_bad_files_name_the_parameter(tmp_path, text, needle):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_config(p)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
