"""The report: PNGs and report.md with the metrics; `geoloc eval` on real files; bad input survives."""
import io
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from geoloc_ros.eval.cli_eval import run_eval
from geoloc_ros.eval.report import MapBackground, RunResult, evaluate_run, write_report
from geoloc_ros.geometry import rot_z, se3
from geoloc_ros.io.tum import write_tum

EVO = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "evo_trajectories"


def _run(name="loc_reverse", seed=0, bias_m=0.0):
    rng = np.random.default_rng(seed)
    gt_t = 1000.0 + np.arange(0, 60, 0.01)
    a = (gt_t - gt_t[0]) / 60 * 2 * np.pi
    gt_T = np.array([se3(rot_z(ai + np.pi / 2), [30 * np.cos(ai), 30 * np.sin(ai), 0]) for ai in a])
    idx = np.arange(0, len(gt_t), 5)
    est_T = gt_T[idx].copy()
    sig = np.where((gt_t[idx] > 1020) & (gt_t[idx] < 1030), 1.5, 0.3)
    est_T[:, :2, 3] += rng.normal(size=(len(idx), 2)) * sig[:, None] + bias_m
    cov = np.zeros((len(idx), 6, 6))
    cov[:, 0, 0] = cov[:, 1, 1] = sig ** 2
    cov[:, 2, 2], cov[:, 3, 3], cov[:, 4, 4], cov[:, 5, 5] = 0.1, 0.01, 0.01, 0.01
    fq = idx[::40]
    fixes = gt_T[fq].copy()
    fixes[::3] = np.nan                 # no fix
    fixes[1::3, 0, 3] += 20.0           # wrong place
    stats = {"bev": {"queries": len(fq), "fixes": int(np.isfinite(fixes[:, 0, 0]).sum()), "accepted": 4,
                     "no_fix_reasons": {"score below threshold": 5},
                     "latency_ms": {"bev_image": list(rng.gamma(4, 2, 50)), "pose": list(rng.gamma(5, 4, 50))}},
             "objects": {"queries": 6, "fixes": 3, "accepted": 2, "no_fix_reasons": {}, "latency_ms": {}}}
    return RunResult(name, gt_t[idx] + 0.003, est_T, gt_t, gt_T, est_cov=cov,
                     faults=[(1020.0, 1030.0, "multipath")], engine_stats=stats,
                     engine_fixes={"bev": (gt_t[fq], fixes)}, latency_ms={"fusion": list(rng.gamma(2, 0.05, 300))})


def test_report_writes_pngs_and_metrics(tmp_path):
    runs = [_run(), _run("loc_lateral", 1, bias_m=3.0)]
    bg = MapBackground(points_xy=np.random.default_rng(0).uniform(-40, 40, (5000, 3)),
                       keyframes_xy=runs[0].gt_T[::500, :3, 3], objects_xy=[[0, 0], [10, 5]],
                       object_labels=["tree", "car"])
    path = write_report(tmp_path, runs, background=bg)
    text = path.read_text()
    pngs = sorted(tmp_path.glob("*.png"))
    names = {p.name for p in pngs}
    assert {"fig_traj_loc_reverse.png", "fig_error_loc_lateral.png", "fig_success.png", "fig_latency.png"} <= names
    for p in pngs:
        img = mpimg.imread(p)
        assert img.shape[0] > 200 and img.shape[1] > 300
        assert img[..., :3].std() > 0.05          # not a blank canvas
        assert f"]({p.name})" in text              # every figure is linked
    for words in ("ATE rmse", "without alignment", "SE(3)-aligned", "NEES", "multipath", "bev", "Latency"):
        assert words in text
    # the numbers in the table are the run's own: the biased run is worse by about the bias
    ev0, ev1 = evaluate_run(runs[0]), evaluate_run(runs[1])
    assert ev1["ate_xy_rmse_m"] > ev0["ate_xy_rmse_m"] + 3.0
    assert f"{ev0['ate_trans_rmse_m']:.3f}" in text and f"{ev1['ate_trans_rmse_m']:.3f}" in text
    # the engine's fixes are scored against ground truth: 1/3 missing, 1/3 wrong, 1/3 right
    n_q = len(runs[0].engine_fixes["bev"][0])
    assert ev0["engines"]["bev"]["scored"] == n_q
    assert ev0["engines"]["bev"]["correct"] == n_q - len(range(0, n_q, 3)) - len(range(1, n_q, 3))
    # the fault interval is reported with its larger error
    iv = {r["kind"]: r for r in ev0["intervals"]}
    assert iv["multipath"]["rmse"] > 2 * iv["outside"]["rmse"]
    # consistent covariances: NEES inside the bound ~95%
    assert 0.85 < ev0["nees_frac_inside"] <= 1.0


def test_report_survives_bad_runs(tmp_path):
    good = _run()
    empty = RunResult("empty", np.zeros(0), np.zeros((0, 4, 4)), good.gt_t, good.gt_T)
    disjoint = RunResult("late", good.est_t + 1e4, good.est_T, good.gt_t, good.gt_T)
    broken = RunResult("broken", good.est_t, good.est_T[:-3], good.gt_t, good.gt_T)
    shapeless = RunResult("shapeless", good.est_t, np.zeros((len(good.est_t), 3, 3)), good.gt_t, good.gt_T)
    nan_T = good.est_T.copy()
    nan_T[::7] = np.nan
    holes = RunResult("holes", good.est_t, nan_T, good.gt_t, good.gt_T)
    path = write_report(tmp_path, [good, empty, disjoint, broken, shapeless, holes])
    text = path.read_text()
    assert "## Problems" in text and "no estimate within 10 ms" in text and "stamps but" in text
    assert "shapeless: unusable trajectory" in text and "NaN/inf poses left out" in text
    assert (tmp_path / "fig_traj_loc_reverse.png").stat().st_size > 10_000


@pytest.mark.skipif(not EVO.is_dir(), reason=f"real trajectories not found at {EVO}")
def test_geoloc_eval_on_real_files(tmp_path):
    out = io.StringIO()
    rc = run_eval(EVO / "freiburg1_xyz-rgbdslam.txt", EVO / "freiburg1_xyz-groundtruth.txt",
                  report_dir=tmp_path / "rep", align="se3", out=out)
    s = out.getvalue()
    assert rc == 0 and "785 matched" in s
    row = next(ln for ln in s.splitlines() if ln.startswith("ATE trans, no alignment"))
    assert float(row.split()[-5]) == pytest.approx(0.0201, abs=1e-4)   # evo: 0.020079 m
    assert "se3-aligned" in s and "RPE" in s
    assert (tmp_path / "rep" / "report.md").is_file()


def test_geoloc_eval_bad_input_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.tum"
    bad.write_text("0 0 0 0 0 0 0 1\n1 0 0\n")
    good = tmp_path / "good.tum"
    write_tum(good, [0.0, 1.0], np.stack([np.eye(4)] * 2))
    assert run_eval(bad, good) == 2
    assert "bad.tum:2" in capsys.readouterr().err
    assert run_eval(tmp_path / "missing.tum", good) == 2
    far = tmp_path / "far.tum"
    write_tum(far, [50.0, 51.0], np.stack([np.eye(4)] * 2))
    assert run_eval(far, good) == 2
    assert "no estimate within 10 ms" in capsys.readouterr().err


def test_eval_reads_covariances_beside_the_estimate(tmp_path):
    r = _run()
    write_tum(tmp_path / "est.tum", r.est_t, r.est_T)
    np.savez(tmp_path / "est.npz", t=r.est_t, cov6=r.est_cov)
    write_tum(tmp_path / "gt.tum", r.gt_t, r.gt_T)
    out = io.StringIO()
    assert run_eval(tmp_path / "est.tum", tmp_path / "gt.tum", out=out) == 0
    assert "NEES (dof 3)" in out.getvalue()


def test_background_from_a_map_directory(tmp_path):
    from geoloc_ros.eval.report import background_from_mapdir
    from geoloc_ros.maps.mapdir import MapDir
    m = MapDir.create(tmp_path / "map")
    poses = np.stack([se3(rot_z(np.pi / 2), [10.0 * i, 0, 0]) for i in range(3)])
    m.write_arrays("bev_keyframes", poses=poses, kp_xy_m=np.array([[1.0, 0], [1.0, 0], [0, 2.0]]),
                   kp_offsets=np.array([0, 1, 2, 3]))
    bg = background_from_mapdir(m)            # no object map: left out, not an error
    assert np.allclose(bg.keyframes_xy, [[0, 0], [10, 0], [20, 0]])
    assert np.allclose(bg.points_xy, [[0, 1], [10, 1], [18, 0]])   # keypoints rotated into the map frame
    assert bg.objects_xy is None


def test_faults_from_the_simulator_manifest(tmp_path):
    import json

    from geoloc_ros.eval.report import faults_from_manifest, normalize_faults
    man = {"runs": {"loc_reverse": {"faults": [
        {"sensor": "gnss", "kind": "multipath", "t_start": 1020.0, "t_end": 1030.0, "params": {}, "run": "loc_reverse"},
        {"sensor": "wheel", "kind": "slip", "t_start": 1040.0, "t_end": float("nan")}]}}}
    (tmp_path / "manifest.json").write_text(json.dumps(man))
    assert faults_from_manifest(tmp_path / "manifest.json", "loc_reverse") == [(1020.0, 1030.0, "gnss multipath")]
    assert faults_from_manifest(man, "other") == []
    assert normalize_faults([(1, 2), ("x", 2, "bad"), (5, 4, "backwards")]) == [(1.0, 2.0, "fault")]
    r = _run()
    r.faults = man["runs"]["loc_reverse"]["faults"]
    r.modes = np.where(r.est_t < 1010.0, "not_localized", "localized")
    text = write_report(tmp_path / "rep", [r], plots=False).read_text()
    assert "gnss multipath" in text and "20.0–30.0" in text
    assert "not_localized 17%" in text and "localized 83%" in text
