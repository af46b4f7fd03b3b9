"""Fusion filter on the real Husky bag (IMU 30 Hz, wheel 10 Hz, GPS 2.5 Hz, 395 s):
the fused path stays inside the fixes' reported uncertainty, and faults injected into the real
/fix messages (a 20 m jump for 10 s, a 60 s outage, a 0.3 m/s drift for 60 s) move it less than
they move the naive filter, and it is back on its clean path soon after each fault."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.fusion import first_rejection_s, gnss_agreement, husky_cfg, path_deviation
from geoloc_ros.events import GnssEvent
from geoloc_ros.fusion.baselines import naive_filter
from geoloc_ros.fusion.filter import FusionFilter
from geoloc_ros.fusion.gnss import Datum
from geoloc_ros.fusion.replay import GnssFault, inject_gnss_faults, load_husky_events, run_events

BAG = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "rl_husky_gps" / "husky_imu_odom_gps.bag"
pytestmark = pytest.mark.skipif(not BAG.is_file(), reason=f"real Husky bag not found at {BAG}")


def _cfg():
    # its GPS altitude wanders by ~30 m (README) and its horizontal error by metres within 20 s
    # while the receiver reports ~0.9 m; the bench's configuration for it, with the reasons
    return husky_cfg()


@pytest.fixture(scope="module")
def husky():
    events = load_husky_events(BAG)
    g = [e for e in events if isinstance(e, GnssEvent)]
    return events, g, Datum(g[0].lat_deg, g[0].lon_deg, g[0].alt_m)


_MAKERS = {"ours": lambda d: FusionFilter(_cfg(), d), "naive": lambda d: naive_filter(_cfg(), d)}


@pytest.fixture(scope="module")
def clean_runs(husky):
    events, _, datum = husky
    return {name: run_events(make(datum), events, sample_every=3) for name, make in _MAKERS.items()}


def _fault_deviation(husky, clean_runs, fault, a, b):
    """Largest deviation (m) of each variant's faulty-run path from its own clean-run path over
    [t0 + a, t0 + b], and the faulty ours run."""
    events, g, datum = husky
    faulty = inject_gnss_faults(events, [fault], datum)
    dev, runs = {}, {}
    for name, make in _MAKERS.items():
        runs[name] = run_events(make(datum), faulty, sample_every=3)
        dev[name] = path_deviation(clean_runs[name], runs[name], g[0].t + a, g[0].t + b)
    return dev, runs["ours"]


def test_fused_path_within_reported_gnss_uncertainty(husky, clean_runs):
    events, g, datum = husky
    res = clean_runs["ours"]
    assert res.last.counters.get("initializations") == 1
    in_3sigma, median_over_sigma = gnss_agreement(res, g, datum)
    assert in_3sigma > 0.9 and median_over_sigma < 1.5, (in_3sigma, median_over_sigma)
    # and the filter accepted the healthy real GNSS nearly always
    verdicts = [v for _, v, _ in res.verdicts if v != "DENIED"]
    assert np.mean([v in ("OK", "DEGRADED") for v in verdicts]) > 0.95


def test_injected_jump_barely_moves_ours_but_moves_naive(husky, clean_runs):
    t0 = husky[1][0].t
    dev, _ = _fault_deviation(husky, clean_runs, GnssFault("jump", t0 + 150.0, t0 + 160.0, offset_m=(20.0, 0.0, 0.0)),
                              140.0, 260.0)
    assert dev["ours"] < 5.0, dev
    assert dev["naive"] > 2.0 * dev["ours"], dev


def test_outage_dead_reckons_within_a_few_metres(husky, clean_runs):
    t0 = husky[1][0].t
    dev, res = _fault_deviation(husky, clean_runs, GnssFault("outage", t0 + 150.0, t0 + 210.0), 140.0, 280.0)
    assert dev["ours"] < 6.0, dev
    # and it says so: the covariance grows while it dead-reckons
    m = (res.t > t0 + 155.0) & (res.t < t0 + 205.0)
    assert m.any() and np.sqrt(res.cov6[m, 0, 0] + res.cov6[m, 1, 1]).max() > 1.0   # the covariance grows


def test_drift_is_caught_undone_and_left_behind(husky, clean_runs):
    """0.3 m/s drift for 60 s, then the GNSS snaps back: the track check rejects it within 35 s
    (the window checks took 53 s), ours stays within a few metres of its clean path while the
    naive filter follows the whole 18 m, and it is back on its path within 15 s of the drift's end
    (it used to reject the healthy GNSS after the snap-back for 90 s and end 45 m off)."""
    t0 = husky[1][0].t
    fault = GnssFault("drift", t0 + 150.0, t0 + 210.0, rate_mps=0.3, direction=(0.0, 1.0))
    dev, res = _fault_deviation(husky, clean_runs, fault, 140.0, 280.0)
    assert dev["ours"] < 6.0 and dev["ours"] < 0.5 * dev["naive"], dev
    caught_s = first_rejection_s(res, fault.t0_s)      # NaN (fails) when never rejected
    assert caught_s < 35.0, caught_s
    after = path_deviation(clean_runs["ours"], res, t0 + 225.0, t0 + 280.0)
    assert after < 2.0, (after, dev)
    assert res.last.counters.get("gnss.reanchored", 0) >= 1


def test_a_drift_nearing_the_window_threshold_is_followed_less(husky, clean_runs):
    """Before the window check rejects the 0.3 m/s drift (its mismatch must clear the receiver's
    own wander first), epochs whose mismatch passes ``gnss_window_degrade_ratio`` of the threshold
    are DEGRADED and inflated: the filter follows the drift less than with that off."""
    from dataclasses import replace
    events, g, datum = husky
    t0 = g[0].t
    faulty = inject_gnss_faults(events, [GnssFault("drift", t0 + 150.0, t0 + 210.0, rate_mps=0.3,
                                                   direction=(0.0, 1.0))], datum)
    dev, soft = {}, {}
    for ratio in (0.0, _cfg().gnss_window_degrade_ratio):
        cfg = replace(_cfg(), gnss_window_degrade_ratio=ratio)
        clean = clean_runs["ours"] if ratio else run_events(FusionFilter(cfg, datum), events, sample_every=3)
        res = run_events(FusionFilter(cfg, datum), faulty, sample_every=3)
        dev[ratio] = path_deviation(clean, res, t0 + 140.0, t0 + 280.0)       # each against its own clean path
        soft[ratio] = [t for t, v, why in res.verdicts if v == "DEGRADED" and why.startswith("window mismatch")]
    assert not soft[0.0] and any(t0 + 150.0 <= t <= t0 + 210.0 for t in soft[max(soft)]), soft
    assert dev[max(dev)] < 0.9 * dev[0.0], dev
