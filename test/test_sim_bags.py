"""What the bag reader gives back equals what the simulator wrote (both dataset layouts)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from geoloc_ros.events import GnssEvent, ImageEvent, ImuEvent, ScanEvent, WheelEvent
from geoloc_ros.sim.scenario import RUN_NAMES, Scenario, _extrinsics, prepare, run_events, simulate

pytest.importorskip("geoloc_ros.io.writer")
from geoloc_ros.io.bags import read_events  # noqa: E402
from geoloc_ros.io.tum import read_tum  # noqa: E402

SEED = 5
RUN = "loc_lateral"
SC = Scenario("roundtrip", 100.0, {r: 10.0 for r in RUN_NAMES}, camera_rate_hz=3.0)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    manifest = simulate(SC, SEED, out, runs=[RUN], progress=False)
    su = prepare(SC, SEED)
    truth = {}
    mem = list(run_events(su.world_of(RUN), su.runs[RUN], su.datum, su.faults[RUN], cfg=su.cfg, seed=SEED,
                          extrinsics=_extrinsics(su.cfg), truth=truth))
    return out, json.loads(manifest.read_text()), su, mem


def _by_type(events, cls, layout=None):
    return [e for lay, e in events if isinstance(e, cls) and (layout is None or lay in (layout, "both"))]


def test_manifest_and_ground_truth(written):
    out, man, su, _ = written
    run = man["runs"][RUN]
    assert man["datum"]["yaw_rad"] == pytest.approx(su.cfg.datum_yaw_rad)
    assert {f["kind"] for f in run["faults"]} >= {"denial_nofix", "multipath", "drift", "spoofing",
                                                  "denial_silent", "slip"}
    assert all(run["t_start"] <= f["t_start"] < f["t_end"] <= run["t_end"] for f in run["faults"])
    assert set(man["extrinsics"]) == {"m3dgr", "oxford_spires"} and man["world_changes"]
    t, T = read_tum(out / run["gt"])
    assert np.allclose(T, su.runs[RUN].poses(t), atol=1e-6)


def test_m3dgr_bag_gives_back_what_was_written(written):
    out, man, _, mem = written
    back = list(read_events(out / man["runs"][RUN]["bags"]["m3dgr"], "m3dgr"))
    # IMU (Livox: g units, tilted frame) -> base_link again
    imu_w, imu_r = _by_type(mem, ImuEvent), [e for e in back if isinstance(e, ImuEvent)]
    assert len(imu_r) == len(imu_w)
    assert np.allclose([e.t for e in imu_r], [e.t for e in imu_w], atol=1e-6)
    assert np.allclose([e.acc_mps2 for e in imu_r], [e.acc_mps2 for e in imu_w], atol=1e-6)
    assert np.allclose([e.gyr_rps for e in imu_r], [e.gyr_rps for e in imu_w], atol=1e-9)
    # wheel
    wh_w, wh_r = _by_type(mem, WheelEvent), [e for e in back if isinstance(e, WheelEvent)]
    assert np.allclose([e.v_mps for e in wh_r], [e.v_mps for e in wh_w], atol=1e-9)
    assert np.allclose([e.yaw_rate_rps for e in wh_r], [e.yaw_rate_rps for e in wh_w], atol=1e-9)
    # GNSS: leap seconds, u-blox status and the covariance from receiver_pvt undone by the reader
    gw, gr = _by_type(mem, GnssEvent), [e for e in back if isinstance(e, GnssEvent)]
    assert len(gr) == len(gw) > 0
    for a, b in zip(gw, gr):
        assert abs(a.t - b.t) < 1e-6 and a.status == b.status
        assert abs(a.lat_deg - b.lat_deg) < 1e-9 and abs(a.lon_deg - b.lon_deg) < 1e-9
        if a.cov_enu_m2 is not None:
            assert np.allclose(np.diag(a.cov_enu_m2), np.diag(b.cov_enu_m2), rtol=1e-3)
    # MID-360 CustomMsg: float32 xyz, ns offsets, line = ring
    sw, sr = _by_type(mem, ScanEvent, "m3dgr"), [e for e in back if isinstance(e, ScanEvent)]
    assert len(sr) == len(sw) > 50
    for a, b in zip(sw[::10], sr[::10]):
        assert abs(a.t - b.t) < 1e-6 and len(a.points) == len(b.points)
        assert np.allclose(a.points, b.points, atol=1e-5)
        assert np.allclose(a.point_time_s, b.point_time_s, atol=1e-8)
        assert np.array_equal(a.ring, b.ring)
        assert np.allclose(a.T_base_sensor, b.T_base_sensor)
    # D435i: JPEG colour (lossy), depth in mm, exact instance ids
    iw, ir = _by_type(mem, ImageEvent), [e for e in back if isinstance(e, ImageEvent)]
    assert len(ir) == len(iw) > 5
    for a, b in zip(iw, ir):
        assert abs(a.t - b.t) < 1e-6
        assert np.abs(a.rgb.astype(int) - b.rgb.astype(int)).mean() < 4.0
        assert np.allclose(a.depth_m, b.depth_m, atol=6e-4)
        assert np.array_equal(a.instance, b.instance)


def test_oxford_spires_bag_gives_back_what_was_written(written):
    out, man, _, mem = written
    back = list(read_events(out / man["runs"][RUN]["bags"]["oxford_spires"], "oxford_spires"))
    sw, sr = _by_type(mem, ScanEvent, "oxford_spires"), [e for e in back if isinstance(e, ScanEvent)]
    assert len(sr) == len(sw) > 50
    for a, b in zip(sw[::10], sr[::10]):
        assert abs(a.t - b.t) < 1e-6
        assert np.allclose(a.points, b.points, atol=1e-5)
        assert np.allclose(a.point_time_s, b.point_time_s, atol=1e-6)
        assert np.array_equal(a.ring, b.ring)
    imu_r = [e for e in back if isinstance(e, ImuEvent)]
    imu_w = _by_type(mem, ImuEvent)
    assert len(imu_r) == len(imu_w)
    assert np.allclose([e.gyr_rps for e in imu_r], [e.gyr_rps for e in imu_w], atol=1e-6)
