"""Fusion filter on the real Husky bag (IMU 30 Hz, wheel 10 Hz, GPS 2.5 Hz, 395 s):
the fused path stays inside the fixes' reported uncertainty, and a 20 m jump injected into the
real /fix messages moves it far less than it moves the naive filter."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from geoloc_ros.events import GnssEvent
from geoloc_ros.fusion.baselines import naive_filter
from geoloc_ros.fusion.config import FusionConfig
from geoloc_ros.fusion.filter import FusionFilter
from geoloc_ros.fusion.gnss import Datum
from geoloc_ros.fusion.replay import GnssFault, inject_gnss_faults, load_husky_events, run_events

BAG = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "rl_husky_gps" / "husky_imu_odom_gps.bag"
pytestmark = pytest.mark.skipif(not BAG.is_file(), reason=f"real Husky bag not found at {BAG}")


def _cfg():
    # its GPS altitude wanders by ~30 m (README) and its horizontal error by metres within 20 s
    # while the receiver reports ~0.9 m: horizontal only, window checks on 9x the reported variance
    # and on the map<-odom heading fitted over 120 s of accepted track (as bench.fusion.husky_cfg)
    return FusionConfig(gnss_use_altitude=False, gnss_window_cov_scale=9.0, gnss_fit_s=120.0)


@pytest.fixture(scope="module")
def husky():
    events = load_husky_events(BAG)
    g = [e for e in events if isinstance(e, GnssEvent)]
    return events, g, Datum(g[0].lat_deg, g[0].lon_deg, g[0].alt_m)


def _deviation(ref, res, a, b):
    m = (res.t >= a) & (res.t <= b)
    x = np.interp(res.t[m], ref.t, ref.T[:, 0, 3])
    y = np.interp(res.t[m], ref.t, ref.T[:, 1, 3])
    return float(np.hypot(res.T[m, 0, 3] - x, res.T[m, 1, 3] - y).max())


def test_fused_path_within_reported_gnss_uncertainty(husky):
    events, g, datum = husky
    res = run_events(FusionFilter(_cfg(), datum), events, sample_every=3)
    assert res.last.counters.get("initializations") == 1
    t = np.array([e.t for e in g])
    z = datum.to_map(np.array([e.lat_deg for e in g]), np.array([e.lon_deg for e in g]),
                     np.array([e.alt_m for e in g]))
    sig = np.sqrt(np.array([e.cov_enu_m2[0, 0] + e.cov_enu_m2[1, 1] for e in g]))   # 2-D std, m
    m = (t > res.t[0]) & (t < res.t[-1])
    d = np.hypot(np.interp(t[m], res.t, res.T[:, 0, 3]) - z[m, 0], np.interp(t[m], res.t, res.T[:, 1, 3]) - z[m, 1])
    assert np.mean(d < 3.0 * sig[m]) > 0.9
    assert np.median(d) < 1.5 * np.median(sig[m])
    # and the filter accepted the healthy real GNSS nearly always
    verdicts = [v for _, v, _ in res.verdicts if v != "DENIED"]
    assert np.mean([v in ("OK", "DEGRADED") for v in verdicts]) > 0.95


def test_injected_jump_barely_moves_ours_but_moves_naive(husky):
    events, g, datum = husky
    t0 = g[0].t
    jump = [GnssFault("jump", t0 + 150.0, t0 + 160.0, offset_m=(20.0, 0.0, 0.0))]
    faulty = inject_gnss_faults(events, jump, datum)
    dev = {}
    for name, make in (("ours", lambda: FusionFilter(_cfg(), datum)), ("naive", lambda: naive_filter(_cfg(), datum))):
        clean = run_events(make(), events, sample_every=3)
        res = run_events(make(), faulty, sample_every=3)
        dev[name] = _deviation(clean, res, t0 + 140.0, t0 + 260.0)
    assert dev["ours"] < 5.0, dev
    assert dev["naive"] > 2.0 * dev["ours"], dev
