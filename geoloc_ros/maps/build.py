"""``geoloc build-map``: a map directory from a mapping bag and its trajectory.

One pass over the bag, reading as a list of steps:

1. every LiDAR scan, posed by the trajectory (interpolated at its stamp), becomes a BEV keyframe
   candidate (kept every ``bev.keyframe_spacing_m``) and feeds the object-map builder;
2. every camera frame, posed likewise, feeds the object-map builder;
3. every GNSS fix is kept; at the end the map datum (ENU origin and yaw) is fitted to the
   trajectory and the fit residual reported (the trajectory need not be geo-referenced);
4. the BEV database, object map, datum and a manifest with checksums are written.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geoloc_ros.config import GeolocConfig, flatten
from geoloc_ros.events import GnssEvent, ImageEvent, ScanEvent
from geoloc_ros.geometry import PoseInterpolator
from geoloc_ros.maps.mapdir import MapDir, MapError

log = logging.getLogger("geoloc_ros.maps.build")

__all__ = ["build_map", "BuildReport"]


@dataclass
class BuildReport:
    """What went into the map, for the CLI and the demo report."""
    path: Path
    keyframes: int = 0
    objects: int = 0
    scans: int = 0
    images: int = 0
    gnss_fixes: int = 0
    unposed: int = 0
    datum_rms_m: float | None = None
    notes: list = field(default_factory=list)

    def __str__(self) -> str:
        d = f", datum fit residual {self.datum_rms_m:.2f} m RMS" if self.datum_rms_m is not None else ""
        return (f"{self.path}: {self.keyframes} BEV keyframes from {self.scans} scans, "
                f"{self.objects} objects, {self.gnss_fixes} GNSS fixes{d}"
                + (f", {self.unposed} events outside the trajectory" if self.unposed else ""))


def build_map(bag, profile, trajectory, out, cfg: GeolocConfig | None = None, progress: bool = True,
              datum=None, max_gap_s: float = 0.5) -> BuildReport:
    """Build ``out`` from ``bag`` (read with ``profile``) and the TUM ``trajectory`` (map frame).

    ``datum``: a known :class:`~geoloc_ros.fusion.gnss.Datum`; otherwise it is fitted to the bag's
    GNSS fixes when there are any. Returns a :class:`BuildReport`.
    """
    from tqdm import tqdm

    from geoloc_ros.bev.database import build_database
    from geoloc_ros.bev.rein import load_rein
    from geoloc_ros.fusion.gnss import fit_datum
    from geoloc_ros.io.bags import list_topics, read_events
    from geoloc_ros.io.profiles import load_profile
    from geoloc_ros.io.tum import read_tum
    from geoloc_ros.objects.map import ObjectMapBuilder

    cfg = cfg or GeolocConfig()
    prof = load_profile(profile)
    t_gt, T_gt = read_tum(trajectory)
    if len(t_gt) < 2:
        raise MapError(f"{trajectory}: a trajectory needs at least 2 poses")
    rep = BuildReport(Path(out))
    md = MapDir.create(out, meta={"bag": str(bag), "profile": prof.name, "trajectory": str(trajectory),
                                  "config": {k: v for k, v in flatten(cfg).items()
                                             if k.startswith(("bev.", "objects."))}})
    model = load_rein(cfg.bev)
    objects = ObjectMapBuilder(cfg.objects) if cfg.enable_objects else None
    gnss: list[GnssEvent] = []
    in_bag = {ti.topic for ti in list_topics(bag)}
    roles = [r for r in ("lidar", "camera_rgb", "gnss") if r in prof.roles and prof.roles[r].topic in in_bag]
    if "lidar" not in roles:
        raise MapError(f"{bag}: no LiDAR topic {prof.roles['lidar'].topic if 'lidar' in prof.roles else '(none)'} "
                       f"of profile '{prof.name}'; the bag has {', '.join(sorted(in_bag))}")

    interp = PoseInterpolator(t_gt, T_gt, max_gap_s=max_gap_s)

    def pose_at(t: float):
        T, ok = interp([t])
        return T[0] if ok[0] else None

    def posed_scans():
        events = read_events(bag, prof, roles=roles)
        for ev in tqdm(events, desc=f"build-map {Path(bag).name}", unit="msg", disable=not progress,
                       mininterval=1.0):
            if isinstance(ev, GnssEvent):
                gnss.append(ev)
                continue
            # a whole-sweep keyframe is posed where the robot was mid-sweep (as the BEV fixes are stamped)
            T = pose_at(ev.t_middle if isinstance(ev, ScanEvent) else ev.t)
            if T is None:
                rep.unposed += 1
                continue
            if isinstance(ev, ScanEvent):
                rep.scans += 1
                if objects is not None:
                    objects.add_scan(ev, T)
                yield ev, T
            elif isinstance(ev, ImageEvent):
                rep.images += 1
                if objects is not None:
                    objects.add_image(ev, T)

    db = build_database(posed_scans(), cfg.bev, model)
    rep.keyframes = len(db)
    rep.gnss_fixes = len(gnss)
    if rep.keyframes == 0:
        raise MapError(f"{bag}: no usable LiDAR scan inside the trajectory's time span "
                       f"({rep.scans} scans, {rep.unposed} events outside it)")
    db.save(md)
    if objects is not None:
        omap = objects.finish({"bag": str(bag)})
        omap.save(md)
        rep.objects = len(omap)
    if datum is None and len(gnss) >= 3:
        lever = prof.roles["gnss"].T_base_sensor[:3, 3] if "gnss" in prof.roles else np.zeros(3)
        try:
            datum, rep.datum_rms_m = fit_datum(gnss, (t_gt, T_gt), lever_m=lever, return_rms=True)
        except ValueError as e:
            rep.notes.append(f"datum not fitted: {e}")
    if datum is not None:
        datum.save(md)
    md.set_meta(keyframes=rep.keyframes, objects=rep.objects, datum_rms_m=rep.datum_rms_m)
    md.close()
    log.info("%s", rep)
    return rep
