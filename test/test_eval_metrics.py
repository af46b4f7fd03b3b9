"""Metrics: cross-checked against evo on real trajectories, and known answers on synthetic ones."""
from pathlib import Path

import numpy as np
import pytest

from geoloc_ros.eval import metrics as M
from geoloc_ros.geometry import rot_z, rpy_to_matrix, se3
from geoloc_ros.io.tum import read_euroc_csv, read_kitti_poses, read_tum

EVO = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "evo_trajectories"
needs_evo_data = pytest.mark.skipif(not EVO.is_dir(), reason=f"real trajectories not found at {EVO}")


def _pairs():
    yield "fr1_xyz", read_tum(EVO / "freiburg1_xyz-rgbdslam.txt"), read_tum(EVO / "freiburg1_xyz-groundtruth.txt")
    yield "V102", read_tum(EVO / "V102.txt"), read_euroc_csv(EVO / "V102_groundtruth.csv")
    times = EVO / "KITTI_00_gt_times.txt"
    # every 3rd frame keeps the test fast while still covering the whole 3.7 km drive
    est, gt = read_kitti_poses(EVO / "KITTI_00_ORB.txt", times), read_kitti_poses(EVO / "KITTI_00_gt.txt", times)
    yield "KITTI_00", (est[0][::3], est[1][::3]), (gt[0][::3], gt[1][::3])


def _evo_traj(t, T):
    from evo.core.trajectory import PoseTrajectory3D
    return PoseTrajectory3D(poses_se3=list(T), timestamps=np.array(t))


@needs_evo_data
@pytest.mark.parametrize("name, est, ref", list(_pairs()) if EVO.is_dir() else [], ids=lambda x: x if isinstance(x, str) else "")
def test_ate_and_rpe_match_evo_on_real_files(name, est, ref):
    from evo.core import metrics as em
    from evo.core.sync import associate_trajectories

    for mode in (M.Alignment.NONE, M.Alignment.SE3):
        ours = M.ate(est, ref, align=mode)
        r, e = associate_trajectories(_evo_traj(*ref), _evo_traj(*est), max_diff=0.01)
        if mode is M.Alignment.SE3:
            e.align(r)
        ape_t = em.APE(em.PoseRelation.translation_part)
        ape_t.process_data((r, e))
        ape_r = em.APE(em.PoseRelation.rotation_angle_rad)
        ape_r.process_data((r, e))
        st = ape_t.get_all_statistics()
        assert ours.n == r.num_poses
        for k in ("rmse", "mean", "median", "max", "std"):
            assert getattr(ours.trans, k) == pytest.approx(st[k], rel=1e-9, abs=1e-12), (name, mode, k)
        assert ours.rot.rmse == pytest.approx(ape_r.get_statistic(em.StatisticsType.rmse), rel=1e-7)
    # a localizer's trajectory is judged in the truth frame: alignment can only hide error
    assert M.ate(est, ref).trans.rmse >= M.ate(est, ref, align=M.Alignment.SE3).trans.rmse

    for delta, unit, eunit in ((1, M.DeltaUnit.FRAMES, em.Unit.frames), (2.0, M.DeltaUnit.METERS, em.Unit.meters)):
        ours = M.rpe(est, ref, delta=delta, unit=unit)
        r, e = associate_trajectories(_evo_traj(*ref), _evo_traj(*est), max_diff=0.01)
        for rel, mine in ((em.PoseRelation.translation_part, ours.trans),
                          (em.PoseRelation.rotation_angle_rad, ours.rot)):
            rp = em.RPE(rel, delta=delta, delta_unit=eunit, pairs_from_reference=True)
            rp.process_data((r, e))
            assert mine.n == len(rp.error)
            assert mine.rmse == pytest.approx(rp.get_statistic(em.StatisticsType.rmse), rel=1e-7), (name, unit, rel)
            assert mine.max == pytest.approx(rp.get_statistic(em.StatisticsType.max), rel=1e-7)


def _loop(n=400, dt=0.1):
    t = 100.0 + np.arange(n) * dt
    a = np.linspace(0, 2 * np.pi, n)
    T = np.array([se3(rot_z(ai + np.pi / 2), [20 * np.cos(ai), 20 * np.sin(ai), 0.2 * np.sin(3 * ai)]) for ai in a])
    return t, T


def test_known_offset_gives_known_ate():
    t, T = _loop()
    est = T.copy()
    est[:, :3, 3] += [3.0, 4.0, 0.0]
    a = M.ate((t, est), (t, T))
    assert a.trans.rmse == pytest.approx(5.0) and a.trans.max == pytest.approx(5.0)
    assert a.xy.rmse == pytest.approx(5.0) and a.rot.max == pytest.approx(0.0, abs=1e-9)
    assert np.allclose(a.err6[:, :3], [3, 4, 0])
    # aligned ATE removes a rigid offset entirely (and says it was aligned)
    al = M.ate((t, est), (t, T), align=M.Alignment.SE3)
    assert al.trans.rmse < 1e-9 and np.allclose(al.T_align[:3, 3], [-3, -4, 0], atol=1e-9)


def test_known_rotation_and_yaw_error():
    t, T = _loop()
    d = np.radians(10.0)
    est = T.copy()
    est[:, :3, :3] = rot_z(d) @ T[:, :3, :3]   # heading wrong by 10 deg, position right
    a = M.ate((t, est), (t, T))
    assert a.trans.rmse == pytest.approx(0.0, abs=1e-9)
    assert np.allclose(a.yaw_err_rad, d) and a.rot.mean == pytest.approx(d)
    assert np.allclose(a.err6[:, 5], d) and np.allclose(a.err6[:, 3:5], 0, atol=1e-12)
    # a map rotated by 10 deg about the origin: every position is off by 2 r sin(d/2)
    est2 = np.einsum("ij,njk->nik", se3(rot_z(d)), T)
    a2 = M.ate((t, est2), (t, T))
    r = np.linalg.norm(T[:, :2, 3], axis=1)
    assert np.allclose(a2.xy_err_m, 2 * r * np.sin(d / 2))
    assert M.ate((t, est2), (t, T), align="se3").trans.rmse < 1e-9
    s = M.ate((t, est2), (t, T), align="sim3")
    assert s.scale == pytest.approx(1.0)


def test_sim3_recovers_scale():
    t, T = _loop()
    est = T.copy()
    est[:, :3, 3] *= 0.5
    a = M.ate((t, est), (t, T), align=M.Alignment.SIM3)
    assert a.scale == pytest.approx(2.0) and a.trans.rmse < 1e-9


def test_association_within_10ms_and_rejects_beyond():
    t_ref = np.arange(0, 10, 0.1)
    ie, ir = M.associate(t_ref + 0.009, t_ref)
    assert len(ie) == len(t_ref) and np.array_equal(ie, ir)
    ie, ir = M.associate(t_ref + 0.011, t_ref)
    assert len(ie) == 0
    # mixed: only the close ones match, to the right partner, whatever the input order
    t_est = np.array([5.004, 1.02, 3.0, 7.0101])
    ie, ir = M.associate(t_est, t_ref)
    assert sorted(zip(t_est[ie].round(3), t_ref[ir].round(3))) == [(3.0, 3.0), (5.004, 5.0)]
    t, T = _loop(50)
    with pytest.raises(M.MetricsError, match="no estimate within 10 ms"):
        M.ate((t + 0.05, T), (t, T))
    with pytest.raises(M.MetricsError, match="non-finite"):
        M.associate([0.0, np.nan], t_ref)


def test_dense_estimate_is_not_double_counted():
    # estimates at 200 Hz against ground truth at 10 Hz: each ground-truth pose is used once
    t_ref = np.arange(0, 5, 0.1)
    t_est = np.arange(0, 5, 0.005)
    ie, ir = M.associate(t_est, t_ref)
    assert len(ir) == len(t_ref) and len(np.unique(ir)) == len(ir)
    assert np.all(np.abs(t_est[ie] - t_ref[ir]) <= 0.01)


def test_rpe_known_drift():
    # estimate drifts 1 cm per frame along x: RPE over 1 frame is 1 cm, over 10 frames 10 cm
    t, T = _loop()
    est = T.copy()
    est[:, 0, 3] += 0.01 * np.arange(len(t))
    assert M.rpe((t, est), (t, T), 1).trans.median == pytest.approx(0.01, rel=1e-6)
    assert M.rpe((t, est), (t, T), 10).trans.median == pytest.approx(0.10, rel=1e-6)
    with pytest.raises(M.MetricsError):
        M.rpe((t, est), (t, T), 0.5, M.DeltaUnit.FRAMES)


def test_nees_consistent_gaussian_in_bound_and_overconfident_out():
    rng = np.random.default_rng(3)
    n = 4000
    A = rng.normal(size=(n, 3, 3)) * 0.3
    P = A @ np.swapaxes(A, 1, 2) + 0.01 * np.eye(3)
    e = np.einsum("nij,nj->ni", np.linalg.cholesky(P), rng.normal(size=(n, 3)))
    r = M.nees(e, P, prob=0.95)
    assert abs(r.frac_inside - 0.95) < 0.015 and r.consistent and abs(r.mean - 3) < 0.15
    over = M.nees(e, P / 4.0)  # filter claims half the real standard deviation
    assert over.frac_below_upper < 0.8 and not over.consistent
    under = M.nees(e, P * 4.0)
    assert under.mean < 1.0 and not under.consistent
    # unusable inputs are skipped and counted, never a crash
    P2 = P[:4].copy()
    P2[0] = -np.eye(3)
    P2[1, 0, 0] = np.nan
    e2 = e[:4].copy()
    e2[2] = np.nan
    r2 = M.nees(e2, P2)
    assert r2.n_invalid == 3 and len(r2.values) == 1


def test_recall_at_n():
    q = np.array([[0, 0], [10, 0], [20, 0], [30, 0]], float)
    ret = [np.array([[0.5, 0], [50, 0]]),          # hit at rank 1
           np.array([[50, 0], [40, 0], [9, 1]]),   # hit at rank 3
           None,                                    # engine gave nothing
           np.array([[100, 0]])]                    # wrong
    r = M.recall_at_n(ret, q, n_values=(1, 3), radius_m=2.0)
    assert r == {1: 0.25, 3: 0.5}
    # the 4th query has no database place within reach: left out
    r = M.recall_at_n(ret, q, n_values=(1, 3), radius_m=2.0, db_xy=[[0, 0], [10, 0], [20, 1]])
    assert r == {1: pytest.approx(1 / 3), 3: pytest.approx(2 / 3)}


def test_success_rate_counts_no_fix_as_failure():
    exy = np.array([0.5, 1.9, 2.1, np.nan, 0.1])
    eyaw = np.radians([1, 4.9, 0, 0, -170])
    assert M.success_rate(exy, eyaw, 2.0, np.radians(5)) == pytest.approx(2 / 5)
    assert np.isnan(M.success_rate([], [], 2.0, 0.1))


def test_interval_stats_and_fix_errors():
    t = np.arange(0, 100, 1.0)
    err = np.where((t >= 20) & (t <= 30), 10.0, 1.0)
    rows = M.interval_stats(t, err, [(20, 30, "multipath")])
    assert rows[0]["kind"] == "multipath" and rows[0]["rmse"] == 10.0 and rows[0]["n"] == 11
    assert rows[-1]["kind"] == "outside" and rows[-1]["max"] == 1.0
    tr, Tr = _loop()
    fix = Tr[[10, 20, 30]].copy()
    fix[1] = np.nan
    fix[2, 1, 3] += 3.0
    exy, eyaw = M.fix_errors(tr[[10, 20, 30]], fix, tr, Tr)
    assert np.isnan(exy[1]) and exy[2] == pytest.approx(3.0) and exy[0] < 1e-9
    # between two ground-truth stamps the reference is interpolated (linear + slerp)
    mid = Tr[10].copy()
    mid[:3, 3] = 0.5 * (Tr[10, :3, 3] + Tr[11, :3, 3])
    mid[:3, :3] = rot_z(0.5 * (np.arctan2(Tr[10, 1, 0], Tr[10, 0, 0]) + np.arctan2(Tr[11, 1, 0], Tr[11, 0, 0])))
    exy, eyaw = M.fix_errors([0.5 * (tr[10] + tr[11]), tr[-1] + 5.0], np.stack([mid, mid]), tr, Tr)
    assert exy[0] < 1e-9 and abs(eyaw[0]) < 1e-9
    assert np.isnan(exy[1])  # after the end of the reference: not scored


def test_nonfinite_poses_are_left_out_and_counted():
    t, T = _loop()
    est = T.copy()
    est[:, :3, 3] += [3.0, 4.0, 0.0]
    est[[5, 50]] = np.nan
    a = M.ate((t, est), (t, T), align="se3")
    assert a.n_nonfinite == 2 and a.n == len(t) - 2 and a.trans.rmse < 1e-9
    assert M.ate((t, est), (t, T)).trans.rmse == pytest.approx(5.0)
    assert np.isfinite(M.rpe((t, est), (t, T), 1).trans.rmse)
    with pytest.raises(M.MetricsError, match="not finite"):
        M.ate((t, np.full_like(T, np.nan)), (t, T))
