"""TUM / KITTI / EuRoC trajectory files: round trip, real files, and clear errors on bad rows."""
from pathlib import Path

import numpy as np
import pytest

from geoloc_ros.geometry import rpy_to_matrix, se3
from geoloc_ros.io.tum import (TrajectoryFileError, read_euroc_csv, read_kitti_poses, read_trajectory,
                               read_tum, write_tum)

EVO = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "evo_trajectories"
needs_evo_data = pytest.mark.skipif(not EVO.is_dir(), reason=f"real trajectories not found at {EVO}")


def _random_poses(n, seed=0):
    rng = np.random.default_rng(seed)
    return np.array([se3(rpy_to_matrix(*rng.uniform(-np.pi, np.pi, 3)), rng.normal(0, 50, 3)) for _ in range(n)])


def test_round_trip_keeps_stamps_and_poses(tmp_path):
    t = 1.7e9 + np.cumsum(np.full(50, 0.05))
    T = _random_poses(50)
    write_tum(tmp_path / "a" / "x.tum", t, T)
    t2, T2 = read_tum(tmp_path / "a" / "x.tum")
    assert np.allclose(t2, t, rtol=0, atol=1e-6)  # %.9f keeps float64 stamps to < 1 us
    assert np.allclose(T2, T, atol=1e-7)


def test_comments_blank_lines_and_commas(tmp_path):
    p = tmp_path / "c.tum"
    p.write_text("# header\n\n1.0 0 0 0 0 0 0 1\n   \n# mid\n2.0,1,2,3,0,0,0.7071068,0.7071068\n")
    t, T = read_tum(p)
    assert np.allclose(t, [1.0, 2.0])
    assert np.allclose(T[1][:3, 3], [1, 2, 3])
    assert np.allclose(T[1][:3, :3] @ [1, 0, 0], [0, 1, 0], atol=1e-6)  # 90 deg yaw


@pytest.mark.parametrize("row, words", [
    ("1.0 0 0 0 0 0 1", "expected 8"),
    ("1.0 0 0 abc 0 0 0 1", "not a number"),
    ("1.0 0 nan 0 0 0 0 1", "NaN"),
    ("1.0 0 0 0 0 0 0 0", "quaternion norm"),
])
def test_malformed_row_names_file_and_line(tmp_path, row, words):
    p = tmp_path / "bad.tum"
    p.write_text("# ok\n0.5 0 0 0 0 0 0 1\n" + row + "\n")
    with pytest.raises(TrajectoryFileError) as e:
        read_tum(p)
    assert f"{p}:3" in str(e.value) and words in str(e.value)


def test_stamps_back_in_time_rejected_unless_sorted(tmp_path):
    p = tmp_path / "o.tum"
    p.write_text("2.0 2 0 0 0 0 0 1\n1.0 1 0 0 0 0 0 1\n3.0 3 0 0 0 0 0 1\n")
    with pytest.raises(TrajectoryFileError, match=r"o.tum:2: .*back in time"):
        read_tum(p)
    t, T = read_tum(p, sort=True)
    assert np.allclose(t, [1, 2, 3]) and np.allclose(T[:, 0, 3], [1, 2, 3])


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(TrajectoryFileError, match="not found"):
        read_tum(tmp_path / "none.tum")
    (tmp_path / "e.tum").write_text("# nothing\n")
    t, T = read_tum(tmp_path / "e.tum")
    assert t.shape == (0,) and T.shape == (0, 4, 4)
    (tmp_path / "bin.tum").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(TrajectoryFileError):
        read_tum(tmp_path / "bin.tum")


def test_write_refuses_nan(tmp_path):
    T = _random_poses(3)
    T[1, 0, 3] = np.nan
    with pytest.raises(ValueError, match="row 1"):
        write_tum(tmp_path / "n.tum", [0, 1, 2], T)


@needs_evo_data
def test_real_files_read_like_evo():
    from evo.tools import file_interface as fi
    t, T = read_tum(EVO / "freiburg1_xyz-groundtruth.txt")
    ref = fi.read_tum_trajectory_file(str(EVO / "freiburg1_xyz-groundtruth.txt"))
    assert len(t) == ref.num_poses == 3000
    assert np.allclose(t, ref.timestamps) and np.allclose(T, np.array(ref.poses_se3), atol=1e-6)
    t, T = read_euroc_csv(EVO / "V102_groundtruth.csv")
    ref = fi.read_euroc_csv_trajectory(str(EVO / "V102_groundtruth.csv"))
    assert len(t) == ref.num_poses == 16702
    assert np.allclose(t, ref.timestamps) and np.allclose(T, np.array(ref.poses_se3), atol=1e-6)
    t, T = read_kitti_poses(EVO / "KITTI_00_gt.txt", EVO / "KITTI_00_gt_times.txt")
    ref = fi.read_kitti_poses_file(str(EVO / "KITTI_00_gt.txt"))
    assert len(t) == ref.num_poses == 4541 and np.all(np.diff(t) > 0)
    assert np.allclose(T, np.array(ref.poses_se3), atol=1e-6)


@needs_evo_data
def test_read_trajectory_recognises_the_format():
    assert len(read_trajectory(EVO / "V102_groundtruth.csv")[0]) == 16702       # EuRoC
    t, T = read_trajectory(EVO / "KITTI_00_ORB.txt")                            # KITTI at 10 Hz
    assert len(t) == 4541 and t[1] == pytest.approx(0.1)
    assert len(read_trajectory(EVO / "freiburg1_xyz-rgbdslam.txt")[0]) == 788   # TUM
