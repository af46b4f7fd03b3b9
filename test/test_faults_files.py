"""File fault rows of issue 8: truncated, corrupt, version-mismatched and path-escaping map
directories and broken weights files give a clear error naming the file; nothing loads pickles."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from geoloc_ros.eval.filefaults import file_fault_rows, open_map_like_the_pipeline, pickle_loads

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def good_map(tmp_path_factory):
    """A small real map directory: BEV database of a few simulated sweeps + datum."""
    import torch

    from geoloc_ros.bev import simdata
    from geoloc_ros.bev.config import BevConfig
    from geoloc_ros.bev.database import build_database
    from geoloc_ros.bev.rein import default_weights_path, load_rein
    from geoloc_ros.fusion.gnss import Datum
    from geoloc_ros.maps.mapdir import MapDir
    from geoloc_ros.sim.world import make_world
    if not default_weights_path().is_file():
        pytest.skip("shipped REIN weights geoloc_ros/data/rein.pt missing")
    torch.set_num_threads(1)
    world = make_world(3, size_m=100.0)
    poses = simdata.road_poses(world, 6.0)[:5]
    rng = np.random.default_rng(0)
    scans = [(simdata.scan_event(simdata.cast_scan(world, T, rng), t=float(i)), T) for i, T in enumerate(poses)]
    cfg = BevConfig()
    db = build_database(scans, cfg, load_rein(cfg), spacing_m=1.0)
    root = tmp_path_factory.mktemp("good_map") / "map"
    md = MapDir.create(root)
    db.save(md)
    Datum(31.0, 121.0, 10.0, 0.2).save(md)
    md.close()
    return root


def _cfg():
    from geoloc_ros.config import GeolocConfig
    cfg = GeolocConfig()
    cfg.enable_objects = False
    return cfg


@pytest.fixture(scope="module")
def rows(good_map, tmp_path_factory):
    return {r["fault"]: r for r in file_fault_rows(good_map, tmp_path_factory.mktemp("broken"), _cfg())}


def test_good_map_opens(good_map):
    loc = open_map_like_the_pipeline(good_map, _cfg())
    assert loc.bev is not None and loc.datum is not None


ROWS = ["map.truncated_npz", "map.corrupt_npz", "map.corrupt_manifest", "map.version_mismatch",
        "map.missing_file", "map.escape_dotdot", "map.escape_absolute", "map.escape_nested",
        "map.escape_symlink", "map.not_a_map_dir", "weights.corrupt", "weights.truncated",
        "weights.wrong_shape", "weights.pickle_payload", "weights.missing",
        # without the checksum check (MapDir.open(verify=False)) the reader itself must say so
        "map.truncated_npz_unverified", "map.corrupt_npz_unverified"]


@pytest.mark.parametrize("fault", ROWS)
def test_file_fault_is_a_clear_error_naming_the_file(rows, fault):
    r = rows[fault]
    assert not r["crash"], r["error"]
    assert r["ok"], f"{fault}: {r['why']} ({r['error']})"


def test_version_error_says_what_to_do(rows):
    assert "version 99" in rows["map.version_mismatch"]["error"]
    assert "rebuild" in rows["map.version_mismatch"]["error"]


def test_pickle_payload_never_runs(good_map, tmp_path, capfd):
    """A weights file whose unpickling would run code is refused before anything runs."""
    from geoloc_ros.bev.rein import WeightsError, load_rein
    from geoloc_ros.eval.inject import write_pickle_weights
    p = write_pickle_weights(tmp_path / "evil.pt")
    with pytest.raises(WeightsError, match="evil.pt"):
        load_rein(path=p)
    assert "must never run code" not in capfd.readouterr().out


def test_nothing_in_the_package_loads_pickles():
    found = pickle_loads(REPO / "geoloc_ros") + pickle_loads(REPO / "bench")
    assert found == [], "\n".join(found)


def test_the_pickle_scan_finds_what_it_must(tmp_path):
    (tmp_path / "bad.py").write_text(
        "import numpy as np, torch, pickle\n"
        "np.load('a.npy')\nnp.load('b.npy', allow_pickle=True)\ntorch.load('c.pt')\n"
        "pickle.load(open('d', 'rb'))\nnp.load('ok.npy', allow_pickle=False)\n"
        "torch.load('ok.pt', weights_only=True)\n# torch.load('comment.pt')\n")
    found = pickle_loads(tmp_path)
    assert len(found) == 4 and all("bad.py" in f for f in found), found


def test_map_names_cannot_escape(tmp_path):
    from geoloc_ros.maps.mapdir import MapDir, MapError
    md = MapDir.create(tmp_path / "m")
    for name in ("../x", "/tmp/x", "a/../../x", "..", "manifest.json", "sub/x"):
        with pytest.raises(MapError, match="invalid map file name|escapes"):
            md.write_json(name, {})
    assert not (tmp_path / "x.json").exists()
