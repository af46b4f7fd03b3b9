"""Wheel-slip detector of the filter: the wheel forward speed against the IMU-predicted speed."""
from __future__ import annotations

__all__ = ["WheelSlipDetector"]


class WheelSlipDetector:
    """Wheel slip: the wheel forward speed against the IMU-predicted speed of the filter.

    Slip starts when a wheel update's forward-speed NIS exceeds ``slip_gate_chi2`` and its
    difference exceeds ``slip_abs_mps + slip_rel * |v|``; the filter skips it. Slip is a state,
    not a per-message test: while it lasts the filter runs on the IMU alone, its velocity
    covariance grows within a second to where a wheel still off by the same 0.6 m/s passes the NIS
    gate, and accepting it would pull the filter onto the slipping wheels (which then made the
    wheels that stopped slipping look like slip). So a slip that starts after the wheels agreed
    with the filter while moving holds while the difference stays over the threshold, whatever
    the NIS, and ends when the wheel agrees with the IMU again or after ``slip_hold_max_s`` (the
    filter's own velocity may be what is wrong: never lock the wheels out for good). Before the
    wheels first agree while moving after an initialization (its velocity may be a guess), and
    when the robot sets off from a stop (the wheels' step there is the start of the motion more
    often than slip, and an IMU that misses the start-up pulse must not hold the wheels out), only
    the per-message test applies.
    Counts are kept.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.count = 0
        self.restart()

    def restart(self) -> None:
        """The filter was (re-)initialized: its velocity has not been checked against the wheels."""
        self.slipping = False
        self.since = None       # stamp (s) the current slip started
        self.agreed = False     # a moving wheel reading agreed with the filter since then

    def check(self, v_wheel: float, v_pred: float, S_vv: float, t: float | None = None,
              moving: bool = True) -> bool:
        """Is the wheel reading ``v_wheel`` (m/s) at stamp ``t`` (s) slip, given the filter's
        predicted forward speed ``v_pred`` (m/s) and innovation variance ``S_vv`` (m^2/s^2)?
        ``moving``: False for a wheel reading a stop (the zero-velocity update's check)."""
        cfg = self.cfg
        d = v_wheel - v_pred
        over = abs(d) > cfg.slip_abs_mps + cfg.slip_rel * abs(v_wheel)
        held = (self.slipping and over and self.since is not None     # since: None without t
                and 0.0 <= t - self.since < cfg.slip_hold_max_s)
        started = over and d * d / max(S_vv, 1e-12) > cfg.slip_gate_chi2
        if started and not self.slipping:
            self.since = t if self.agreed else None
        self.slipping = bool(held or started)
        if not self.slipping:
            self.since = None
            self.agreed = moving
        self.count += int(self.slipping)
        return self.slipping
