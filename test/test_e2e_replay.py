"""End to end, as a user runs it: simulate -> build-map -> replay -> eval, through the `geoloc` CLI.

A tiny simulated town (30 s mapping run, 20 s reversed localization run, M3DGR layout with its
real GNSS quirks) is mapped and replayed; the estimate must match ground truth in the map frame
without alignment, with covariances that are valid, and bad maps must be clear errors.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from geoloc_ros.cli import main as geoloc


@pytest.fixture(scope="module")
def town(tmp_path_factory):
    from geoloc_ros.sim.scenario import simulate
    root = tmp_path_factory.mktemp("e2e")
    man = simulate("tiny", seed=0, out_dir=root / "sim", runs=["mapping", "loc_reverse"],
                   layouts=("m3dgr",), progress=False)
    sim = json.loads(Path(man).read_text())
    rc = geoloc(["build-map", str(root / "sim" / sim["runs"]["mapping"]["bags"]["m3dgr"]),
                 "--profile", "m3dgr", "--trajectory", str(root / "sim" / "gt_mapping.tum"),
                 "--out", str(root / "map"), "--quiet"])
    assert rc == 0
    return root, sim


def test_map_is_complete_and_its_datum_matches_the_truth(town):
    from geoloc_ros.fusion.gnss import Datum
    from geoloc_ros.maps.mapdir import MapDir
    root, sim = town
    md = MapDir.open(root / "map")
    for part in ("bev_meta.json", "objects.npz", "datum.json", "manifest.json"):
        assert md.has(part) or part == "manifest.json", f"map lacks {part}"
    assert md.meta["keyframes"] >= 10
    assert md.meta["datum_rms_m"] < 1.5
    fitted, true = Datum.load(md), Datum(**sim["datum"])
    # the fitted datum puts the map origin within a metre of the true one
    p = true.to_map(*fitted.from_map(np.zeros(3)))
    assert np.hypot(p[0], p[1]) < 1.0, f"fitted datum off by {p}"


def test_replay_matches_ground_truth_in_the_map_frame(town, capsys):
    root, sim = town
    bag = root / "sim" / sim["runs"]["loc_reverse"]["bags"]["m3dgr"]
    est = root / "est.tum"
    rc = geoloc(["replay", str(bag), "--profile", "m3dgr", "--map", str(root / "map"), "--out", str(est),
                 "--gt", str(root / "sim" / "gt_loc_reverse.tum"), "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "ate_rmse_m" in out
    from geoloc_ros.eval import metrics as M
    from geoloc_ros.io.tum import read_tum
    z = np.load(est.with_suffix(".npz"), allow_pickle=False)
    gt = read_tum(root / "sim" / "gt_loc_reverse.tum")
    r = M.ate((z["t"], z["T"], z["cov6"]), gt)
    assert r.n > 100
    assert r.rmse < 1.5 and r.max < 4.0, f"ATE rmse {r.rmse:.2f} m, max {r.max:.2f} m"
    eig = np.linalg.eigvalsh(0.5 * (z["cov6"] + np.swapaxes(z["cov6"], 1, 2)))
    assert np.all(eig > 0), "a published covariance is not positive definite"
    rc = geoloc(["eval", str(est), str(root / "sim" / "gt_loc_reverse.tum")])
    assert rc == 0


def test_corrupt_map_is_a_clear_error_naming_the_file(town, tmp_path, capsys):
    root, sim = town
    bad = tmp_path / "map"
    shutil.copytree(root / "map", bad)
    p = bad / "objects.npz"
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    bag = root / "sim" / sim["runs"]["loc_reverse"]["bags"]["m3dgr"]
    rc = geoloc(["replay", str(bag), "--profile", "m3dgr", "--map", str(bad), "--out", str(tmp_path / "e.tum"),
                 "--quiet"])
    assert rc == 2
    assert "objects.npz" in capsys.readouterr().err


def test_missing_bag_and_unknown_profile_are_clear_errors(tmp_path, capsys):
    assert geoloc(["replay", str(tmp_path / "none.bag"), "--profile", "m3dgr", "--out", str(tmp_path / "e.tum")]) == 2
    assert "none.bag" in capsys.readouterr().err
    (tmp_path / "x.bag").write_bytes(b"not a bag")
    assert geoloc(["replay", str(tmp_path / "x.bag"), "--profile", "no_such_profile",
                   "--out", str(tmp_path / "e.tum")]) == 2
    assert "no_such_profile" in capsys.readouterr().err
