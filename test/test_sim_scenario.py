"""Scenario geometry: the localization runs revisit the mapped roads as promised."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from geoloc_ros.geometry import wrap_angle
from geoloc_ros.sim.config import SimConfig
from geoloc_ros.sim.scenario import make_runs
from geoloc_ros.sim.sensors import lidar_directions
from geoloc_ros.sim.world import make_world


@pytest.fixture(scope="module")
def town_runs():
    world = make_world(2)          # default 200 m town
    return world, make_runs(world, 2, "town")


def _xy_yaw(traj, step_s=0.5):
    t = np.arange(traj.t0 + traj.hold_s + traj.ramp_s, traj.t1 - traj.ramp_s, step_s)
    S = traj.state(t)
    return S.p[:, :2], S.rpy[:, 2]


def test_runs_revisit_the_mapped_roads(town_runs):
    world, runs = town_runs
    m_xy, m_yaw = _xy_yaw(runs["mapping"], 0.1)
    tree = cKDTree(m_xy)
    # the mapping run drives every road of the grid
    c = world.road_coords_m
    for a in c:
        for b in (c[:-1] + c[1:]) / 2:
            assert tree.query([a, b])[0] < 1.0 and tree.query([b, a])[0] < 1.0
    d_same, i_same = tree.query(_xy_yaw(runs["loc_same"])[0])
    assert np.median(d_same) < 0.3
    xy, yaw = _xy_yaw(runs["loc_reverse"])
    d, i = tree.query(xy)
    assert np.median(d) < 0.3
    straight = d < 0.3
    # driven the other way round: heading opposite to the mapping run's at the same place
    assert np.median(np.abs(wrap_angle(yaw[straight] - m_yaw[i[straight]] - np.pi))) < 0.1
    d_lat, _ = tree.query(_xy_yaw(runs["loc_lateral"])[0])
    assert np.percentile(d_lat, 10) > 1.7 and np.percentile(d_lat, 90) < 4.2
    assert all(runs[r].t0 != runs["mapping"].t0 for r in ("loc_same", "loc_reverse", "loc_lateral"))


def test_runs_stay_on_the_ground_and_clear_of_objects(town_runs):
    world, runs = town_runs
    for name, traj in runs.items():
        S = traj.state(traj.times_s[::20])
        assert np.all(np.abs(S.rpy[:, :2]) < np.radians(6))            # gently sloped
        assert np.all(np.linalg.norm(S.v, axis=1) < traj.speed * 1.2)
        w = world.move_objects(0.25, 2) if name == "loc_lateral" else world
        # nothing solid within 0.5 m of base_link (the robot never drives through an object)
        d = w.distance_to_surface(S.p + np.array([0.0, 0.0, 0.3]))
        assert d.min() > 0.5, name


def test_mid360_pattern_is_non_repetitive_and_fills_its_field_of_view():
    cfg = SimConfig()
    d0, dt0, ring0 = lidar_directions("mid360", 0.0, 0.1, cfg)
    d1, _, _ = lidar_directions("mid360", 0.1, 0.1, cfg)
    assert len(d0) == int(cfg.mid360_points_per_s * 0.1) and set(np.unique(ring0)) == {0, 1, 2, 3}
    el = np.degrees(np.arcsin(d0[:, 2]))
    assert el.min() > -7.01 and el.max() < 52.01
    assert np.all(np.diff(dt0) >= 0) and dt0.max() < 0.1
    assert np.mean(np.abs(d0 - d1).max(1) < 1e-3) < 0.05       # the next sweep fires elsewhere
    # together the two sweeps cover (almost) every 2 x 2 deg cell of the field of view
    az = np.degrees(np.arctan2(np.r_[d0[:, 1], d1[:, 1]], np.r_[d0[:, 0], d1[:, 0]]))
    el2 = np.degrees(np.arcsin(np.r_[d0[:, 2], d1[:, 2]]))
    H, _, _ = np.histogram2d(az, el2, bins=[180, 29], range=[[-180, 180], [-7, 51]])
    assert np.mean(H > 0) > 0.9
    q, dtq, ringq = lidar_directions("qt64", 0.0, 0.1, cfg)
    assert len(np.unique(ringq)) == 64 and len(q) == 64 * cfg.qt64_columns
    assert np.isclose(np.degrees(np.arcsin(q[:, 2])).min(), -52.0)
