"""The demo's plan (geoloc_ros/demo.py), without running the demo: every replayed run is localized
in a map built from the mapping run with the same sensor setup, the demo scenario writes every bag
that plan needs, and build-map works on an Oxford Spires layout bag (LiDAR + IMU only: no camera,
no wheels, no GNSS, hence no datum)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from geoloc_ros.demo import DEMO_MAPS, DEMO_REPLAYS, demo_layouts, map_dir_of
from geoloc_ros.io.profiles import load_profile
from geoloc_ros.sim.scenario import LAYOUTS, get_scenario


def test_every_replay_uses_a_map_of_its_own_sensor_setup():
    for run, layout, profile, map_layout in DEMO_REPLAYS:
        assert map_layout in DEMO_MAPS, f"{run}: no map built for layout {map_layout}"
        map_profile = DEMO_MAPS[map_layout]
        lidar, map_lidar = load_profile(profile).roles["lidar"], load_profile(map_profile).roles["lidar"]
        # the same LiDAR topic and mounting: the BEV images of map and query come from one sensor
        assert lidar.topic == map_lidar.topic, f"{run}: replays {lidar.topic}, map from {map_lidar.topic}"
        assert (lidar.T_base_sensor == map_lidar.T_base_sensor).all(), f"{run}: LiDAR mounted differently"
    assert len({map_dir_of(Path("o"), lay) for lay in DEMO_MAPS}) == len(DEMO_MAPS)


def test_demo_scenario_writes_every_bag_the_plan_needs():
    need = demo_layouts()
    assert set(need["mapping"]) == set(DEMO_MAPS)
    sc = get_scenario("demo")
    for run, layouts in need.items():
        assert run in sc.durations_s
        have = sc.layouts.get(run, LAYOUTS) if sc.layouts else LAYOUTS
        assert set(layouts) <= set(have), f"demo scenario writes {have} for {run}, the demo needs {layouts}"


def test_a_plan_naming_an_unbuilt_map_is_refused(monkeypatch):
    import geoloc_ros.demo as demo
    monkeypatch.setattr(demo, "DEMO_REPLAYS", (("loc_lateral", "oxford_spires", "oxford_spires", "nowhere"),))
    with pytest.raises(ValueError, match="nowhere"):
        demo.demo_layouts()


def test_build_map_from_an_oxford_spires_bag(tmp_path):
    """A QT64 + IMU bag: BEV keyframes and objects from the LiDAR alone, no datum (no GNSS)."""
    from geoloc_ros.maps.build import build_map
    from geoloc_ros.maps.mapdir import MapDir
    from geoloc_ros.sim.scenario import simulate
    man = json.loads(Path(simulate("tiny", seed=0, out_dir=tmp_path / "sim", runs=["mapping"],
                                   layouts=("oxford_spires",), duration_s=20.0, progress=False)).read_text())
    run = man["runs"]["mapping"]
    rep = build_map(tmp_path / "sim" / run["bags"]["oxford_spires"], "oxford_spires", tmp_path / "sim" / run["gt"],
                    tmp_path / "map", progress=False)
    md = MapDir.open(tmp_path / "map")
    assert rep.gnss_fixes == 0 and rep.images == 0 and rep.datum_rms_m is None
    assert not md.has("datum.json"), "a map without GNSS fixes must not invent a datum"
    assert rep.scans >= 150 and rep.keyframes >= 5, str(rep)
    assert md.meta["keyframes"] == rep.keyframes


def test_report_names_the_map_of_each_run(tmp_path):
    import numpy as np

    from geoloc_ros.eval.report import RunResult, write_report
    t = np.arange(0.0, 10.0, 0.1)
    T = np.tile(np.eye(4), (len(t), 1, 1))
    T[:, 0, 3] = t
    runs = [RunResult(f"run{k}", t, T, t, T, map_name=f"map_{lay}") for k, lay in enumerate(("m3dgr", "oxford"))]
    text = Path(write_report(tmp_path, runs, plots=False)).read_text()
    header = next(line for line in text.splitlines() if line.startswith("| run |"))
    assert "| map |" in header
    assert "| run0 | map_m3dgr |" in text and "| run1 | map_oxford |" in text
