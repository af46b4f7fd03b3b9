"""The node's input queues (geoloc_ros.nodes.scheduler), without DDS: stamp order across inputs
that arrive independently, IMU never dropped, bulk inputs bounded, a backlog merged, not lost."""
from __future__ import annotations

import time

import numpy as np

from geoloc_ros import events as ev
from geoloc_ros.nodes.scheduler import InputQueues, merge_imu


def imu(t, ax=0.0):
    return ev.ImuEvent(t=t, acc_mps2=np.array([ax, 0.0, 9.8]), gyr_rps=np.array([0.0, 0.0, 0.1]))


def scan(t):
    return ev.ScanEvent(t=t, points=np.zeros((20, 3)))


def drain(q, timeout_s=0.5):
    out, t_end = [], time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        b = q.take(0.05)
        q.done(len(b))
        out += b
        if not b and not len(q):
            break
    return out


def test_a_measurement_waits_for_the_imu_up_to_its_stamp():
    q = InputQueues(window_s=0.0, clock_wait_s=1.0)
    now = time.monotonic()
    for i in range(5):                      # IMU up to t = 0.04
        q.put("imu", imu(0.01 * i), now)
    q.put("points", scan(0.1), now)         # the scan of t = 0.1 arrives before its IMU
    first = q.take(0.05)
    q.done(len(first))
    assert [n for n, _, _ in first] == ["imu"] * 5, "the scan must not overtake the IMU before it"
    for i in range(5, 12):                  # the late IMU arrives
        q.put("imu", imu(0.01 * i), time.monotonic())
    rest = drain(q)
    stamps = [e.t for _, e, _ in first + rest]
    assert stamps == sorted(stamps) and len(stamps) == 13
    assert [n for n, _, _ in rest].index("points") == 6     # right after the IMU of t = 0.10


def test_without_imu_a_measurement_is_released_after_the_window():
    q = InputQueues(window_s=0.02)
    q.put("wheel_odom", ev.WheelEvent(t=1.0, v_mps=1.0, yaw_rate_rps=0.0))
    assert q.take(0.0) == []                # still inside its reorder window
    out = drain(q)
    assert [n for n, _, _ in out] == ["wheel_odom"]


def test_bulk_inputs_keep_the_newest_and_count_the_dropped_imu_is_kept():
    q = InputQueues(capacity=1000, bulk_capacity=2, window_s=0.0)
    now = time.monotonic()
    for i in range(5):
        q.put("points", scan(1.0 + i), now)
    for i in range(600):
        assert q.put("imu", imu(0.001 * i), now)
    assert q.dropped == 3 and q.dropped_by_input() == {"points": 3}
    assert q.high_water == 600 and q.high_water <= q.maxlen
    kept = [e.t for n, e, _ in drain(q) if n == "points"]
    assert kept == [4.0, 5.0]


def test_a_backlog_is_merged_not_dropped_and_keeps_the_motion():
    """Behind by more than max_latency_s: 1 kHz IMU folded into 50 Hz samples whose means keep
    the velocity increment; every sample is accounted for (processed or merged)."""
    q = InputQueues(window_s=0.0, max_latency_s=0.1, imu_merge_period_s=0.02, max_batch=10000)
    old = time.monotonic() - 1.0             # received a second ago: the node is behind
    n = 1000
    ax = np.sin(np.arange(n) * 0.01)         # a varying acceleration, 1 kHz
    for i in range(n):
        q.put("imu", imu(100.0 + 0.001 * i, ax[i]), old)   # (a stamp of 0 is 'unset': never folded)
    out = q.take(0.1)
    assert len(out) == 50 and q.merged == n - 50
    assert len(q) == 50, "taken events stay pending until done()"
    q.done(len(out))
    assert len(q) == 0
    assert [e.t for _, e, _ in out] == sorted(e.t for _, e, _ in out)
    # zero-order hold of the merged samples integrates to the same velocity as the raw ones
    t = np.array([e.t for _, e, _ in out] + [100.0 + n * 0.001])
    dv = sum(e.acc_mps2[0] * dt for (_, e, _), dt in zip(out, np.diff(t)))
    assert abs(dv - ax.sum() * 0.001) < 1e-9


def test_in_time_nothing_is_merged():
    q = InputQueues(window_s=0.0, max_latency_s=0.5)
    now = time.monotonic()
    for i in range(100):
        q.put("imu", imu(0.005 * i), now)
    out = drain(q)
    assert len(out) == 100 and q.merged == 0


def test_merge_imu_means_and_first_stamp():
    m = merge_imu([imu(1.0, 1.0), imu(1.01, 3.0)])
    assert m.t == 1.0 and m.acc_mps2[0] == 2.0


def test_a_stream_faster_than_an_imu_is_merged_to_the_max_rate():
    q = InputQueues(window_s=0.0, max_latency_s=10.0, imu_max_rate_hz=520.0, max_batch=10000)
    now = time.monotonic()
    for i in range(200):                    # 0.1 s at 2 kHz
        q.put("imu", imu(100.0 + 0.0005 * i, float(i)), now)
    out = drain(q)
    assert len(out) == 50 and q.merged == 150 and q.merged_by["imu"] == 150
    assert np.allclose(np.diff([e.t for _, e, _ in out]), 0.002)
    assert out[0][1].acc_mps2[0] == 1.5     # mean of the first four samples


def test_a_malformed_or_foreign_sample_is_never_folded_into_good_ones():
    """Inside a flood a NaN sample (or one from another IMU frame) stays on its own: averaged in,
    its NaN would spoil the good samples' mean and the filter would reject them all."""
    q = InputQueues(window_s=0.0, max_latency_s=10.0, imu_max_rate_hz=520.0, max_batch=10000)
    now = time.monotonic()
    for i in range(8):                      # 2 kHz: four per merge period
        e = imu(0.0005 * i, 1.0)
        if i == 2:
            e = ev.ImuEvent(t=e.t, acc_mps2=np.array([np.nan, 0.0, 9.8]), gyr_rps=e.gyr_rps)
        if i == 5:
            e = ev.ImuEvent(t=e.t, acc_mps2=e.acc_mps2, gyr_rps=e.gyr_rps, frame_id="other_imu")
        q.put("imu", e, now)
    out = [e for _, e, _ in drain(q)]
    bad = [e for e in out if not np.isfinite(e.acc_mps2).all()]
    assert len(bad) == 1 and bad[0].t == 0.001
    good = [e for e in out if np.isfinite(e.acc_mps2).all()]
    assert all(np.allclose(e.acc_mps2, [1.0, 0.0, 9.8]) for e in good)
    assert sum(e.frame_id == "other_imu" for e in out) == 1
    assert len(out) + q.merged == 8 and q.merged > 0
