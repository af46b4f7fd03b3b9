"""maps/mapdir: a map directory is self-describing and checked; nothing escapes it or unpickles."""
import json

import numpy as np
import pytest

from geoloc_ros.maps.mapdir import MAP_VERSION, MapDir, MapError


def make(tmp_path):
    md = MapDir.create(tmp_path / "map", meta={"note": "test"})
    md.write_arrays("kf", pos=np.arange(6.0).reshape(2, 3))
    md.write_json("datum", {"lat0_deg": 1.0})
    md.close()
    return tmp_path / "map"


def test_roundtrip(tmp_path):
    md = MapDir.open(make(tmp_path))
    np.testing.assert_array_equal(md.read_arrays("kf")["pos"], np.arange(6.0).reshape(2, 3))
    assert md.read_json("datum.json") == {"lat0_deg": 1.0} and md.meta["note"] == "test"


def test_corrupt_file_names_the_file(tmp_path):
    root = make(tmp_path)
    (root / "kf.npz").write_bytes((root / "kf.npz").read_bytes()[:-10])
    with pytest.raises(MapError, match="kf.npz"):
        MapDir.open(root)


def test_missing_file_and_manifest(tmp_path):
    root = make(tmp_path)
    (root / "datum.json").unlink()
    with pytest.raises(MapError, match="datum.json"):
        MapDir.open(root)
    (root / "manifest.json").unlink()
    with pytest.raises(MapError, match="manifest"):
        MapDir.open(root)
    with pytest.raises(MapError, match="not found"):
        MapDir.open(tmp_path / "nothing")


def test_version_mismatch_is_explained(tmp_path):
    root = make(tmp_path)
    m = json.loads((root / "manifest.json").read_text())
    m["version"] = MAP_VERSION + 1
    (root / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(MapError, match="version"):
        MapDir.open(root)
    (root / "manifest.json").write_text("{not json")
    with pytest.raises(MapError, match="corrupt manifest"):
        MapDir.open(root)


@pytest.mark.parametrize("name", ["../evil", "/etc/passwd", "a/b", "..", "manifest.json"])
def test_names_cannot_escape(tmp_path, name):
    md = MapDir.create(tmp_path / "m")
    with pytest.raises(MapError):
        md.write_json(name, {})


def test_manifest_listing_an_escaping_name_is_refused(tmp_path):
    root = make(tmp_path)
    m = json.loads((root / "manifest.json").read_text())
    m["files"]["../outside.json"] = "0" * 64
    (root / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(MapError, match="outside|escape|invalid"):
        MapDir.open(root)


def test_object_arrays_are_refused(tmp_path):
    md = MapDir.create(tmp_path / "m")
    with pytest.raises(MapError, match="pickle"):
        md.write_arrays("x", a=np.array([{"a": 1}], dtype=object))
