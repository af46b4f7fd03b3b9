"""Fault rows of issue 8 that belong to the node (over real DDS): NaN, wrong frame ids, empty and
all-NaN clouds, and a 10x IMU flood published to a live geoloc_node. Every bad message that
arrives is rejected and counted in the node's diagnostics, the node stays alive, its queue stays
within its capacity and drains. (Latency is measured by ``geoloc bench faults``, not asserted.)"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2 wheels) not installed")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the bench/ package of the checkout
from bench.faults import node_rows  # noqa: E402


@pytest.fixture(scope="module")
def node():
    return node_rows(quick=True)


def test_node_survives_and_counts_every_bad_message(node):
    assert node["node.alive"] and node["node.pipeline_errors"] == 0
    for name, c in node["bad_messages.by_input"].items():
        assert c["received"] > 0, f"{name}: nothing arrived"
        assert c["rejected"] == c["received"], f"{name}: {c}"


def test_flood_keeps_the_queue_bounded_and_drains(node):
    assert node["flood.drained"], "the queue did not drain after the flood"
    assert node["flood.queue_high_water"] <= node["flood.queue_capacity"]
    assert node["flood.poses"] > 0, "no geoloc/pose during the flood"
    # IMU is never dropped by the node: what it could not process in time it merged; every
    # received message is counted (processed, rejected, dropped or merged)
    assert node["flood.imu_received"] > 0 and node["flood.dropped"] == 0
    assert node["flood.unaccounted"] == 0
