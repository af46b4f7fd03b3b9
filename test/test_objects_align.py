"""Submap alignment on simulated pairs (incl. opposite direction) and bad input."""
import numpy as np
import pytest

from geoloc_ros.geometry import se3_inverse, wrap_angle, yaw_of
from geoloc_ros.objects import synth
from geoloc_ros.objects.align import align_clipper_plain, align_roman
from geoloc_ros.objects.config import ObjectsConfig
from geoloc_ros.objects.descriptor import Descriptors
from geoloc_ros.objects.ransac import align_ransac

CFG = ObjectsConfig()


def _err(T, T_gt):
    E = se3_inverse(T_gt) @ T
    return float(np.linalg.norm(E[:3, 3])), float(abs(np.degrees(wrap_angle(yaw_of(E)))))


@pytest.mark.parametrize("view", synth.VIEWS)
def test_roman_aligns_simulated_pairs(view):
    ok, overlapping = 0, 0
    for seed in range(8):
        p = synth.make_pair(500 + seed, view, change=0.2)
        r = align_roman(p.query, p.target, CFG)
        if r.ok:
            et, ey = _err(r.T, p.T_target_query)
            assert et < 1.0 and ey < 5.0, f"{view} seed {seed}: accepted a wrong fix ({et:.2f} m, {ey:.1f} deg)"
        if p.n_common >= 6:  # enough unchanged objects seen from both drives to expect a fix
            overlapping += 1
            ok += r.ok
    assert overlapping >= 2, f"{view}: test scenes do not overlap enough ({overlapping})"
    assert ok >= 0.75 * overlapping, f"{view}: {ok}/{overlapping} overlapping pairs aligned"


def test_opposite_direction_with_changes_never_confidently_wrong():
    for seed in range(4):
        p = synth.make_pair(900 + seed, "opposite", change=0.4)
        for fn in (align_roman, align_ransac):
            r = fn(p.query, p.target, CFG)
            if r.ok:
                et, _ = _err(r.T, p.T_target_query)
                assert et < 1.0, f"{fn.__name__} seed {seed}: {et:.2f} m"


def _objs(C, app=None):
    n = len(C)
    return Descriptors(np.asarray(C, float), np.tile([0.5, 0.5, 3.0], (n, 1)), np.full(n, 0.75),
                       np.tile([0.8, 0.1, 0.1], (n, 1)), np.ones((n, 68)) / np.sqrt(68) if app is None else app)


def test_bad_input_gives_reasons_not_crashes():
    p = synth.make_pair(3, "same")
    few = p.query.subset([0, 1])
    for fn in (align_roman, align_ransac, align_clipper_plain):
        r = fn(few, p.target, CFG)
        assert not r.ok and "(< 3)" in r.reason
        r = fn(Descriptors.empty(), p.target, CFG)
        assert not r.ok and "no objects" in r.reason
        bad = p.query.subset(np.arange(len(p.query)))
        bad.centroids[2] = np.nan
        r = fn(bad, p.target, CFG)
        assert not r.ok and "NaN" in r.reason


def test_identical_objects_give_no_fix():
    # all objects identical AND at the same place: no geometry to align
    same = _objs(np.tile([[5.0, 2.0, 0.0]], (10, 1)))
    for fn in (align_roman, align_ransac, align_clipper_plain):
        r = fn(same, same, CFG)
        assert not r.ok, fn.__name__
    # a straight row of identical poles: any shift along the row is consistent -> refuse
    row = _objs(np.column_stack([np.arange(10) * 4.0, np.zeros(10), np.zeros(10)]))
    r = align_roman(row, row, CFG)
    assert not r.ok


def test_unrelated_places_are_not_aligned():
    for seed in range(6):
        a = synth.make_pair(30_000 + seed, "same", 0.0)
        b = synth.make_pair(40_000 + seed, synth.VIEWS[seed % 3], 0.2)
        r = align_roman(b.query, a.target, CFG)
        assert not r.ok, f"seed {seed}: {r.n_assoc} associations accepted between unrelated places"
        assert r.reason
