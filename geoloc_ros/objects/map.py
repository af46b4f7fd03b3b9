"""The object map of a mapping run: objects in the map frame + the centres of its submaps.

Stored in the map directory as ``objects.npz`` (descriptor arrays ``obj_*`` and the submap
centres ``submap_T`` (K, 4, 4)) and ``objects_meta.json`` (format version, sizes, the parameters
it was built with). Loading checks every array's shape and finiteness: a corrupt or mismatched
part is a :class:`~geoloc_ros.maps.mapdir.MapError` naming it, never a crash later on.

:class:`ObjectMapBuilder` makes one from a mapping run: scans and images with their
ground-truth (or SLAM) poses T_map_base go through the same segmentation and tracking as the
engine; a submap centre is laid every ``submap_spacing_m`` of travel.
"""
from __future__ import annotations

import numpy as np

from geoloc_ros.events import ImageEvent, ScanEvent
from geoloc_ros.geometry import transform_points, yaw_only
from geoloc_ros.maps.mapdir import MapDir, MapError
from geoloc_ros.objects.config import ObjectsConfig
from geoloc_ros.objects.descriptor import Descriptors, make_embedder
from geoloc_ros.objects.segment import LidarSegmenter, RgbdSegmenter, Segment
from geoloc_ros.objects.submap import FrameGate, Submap, TravelTrigger, make_submap
from geoloc_ros.objects.track import ObjectTracker

__all__ = ["ObjectMap", "ObjectMapBuilder", "OBJECT_MAP_VERSION"]

OBJECT_MAP_VERSION = 1


class ObjectMap:
    """Objects (map frame) and submap centres T_map_submap (K, 4, 4), yaw-only."""

    def __init__(self, objects: Descriptors, centres: np.ndarray, meta: dict | None = None):
        self.objects = objects
        self.centres = np.asarray(centres, float).reshape(-1, 4, 4)
        self.meta = dict(meta or {})
        self._cache: dict[tuple, list[Submap]] = {}

    def __len__(self) -> int:
        return len(self.objects)

    def submaps(self, cfg: ObjectsConfig) -> list[Submap]:
        """The map's submaps cut with ``cfg``'s radius and object cap (cached)."""
        key = (cfg.submap_radius_m, cfg.submap_max_objects)
        if key not in self._cache:
            self._cache[key] = [make_submap(self.objects, T, cfg.submap_radius_m, cfg.submap_max_objects,
                                            index=k) for k, T in enumerate(self.centres)]
        return self._cache[key]

    # ---- persistence --------------------------------------------------------------------------
    def save(self, mapdir: MapDir) -> None:
        mapdir.write_arrays("objects", submap_T=self.centres, **self.objects.to_arrays("obj_"))
        mapdir.write_json("objects_meta", {"version": OBJECT_MAP_VERSION, "n_objects": len(self.objects),
                                           "n_submaps": len(self.centres),
                                           "appearance_dim": int(self.objects.appearance.shape[1]),
                                           **self.meta})

    @classmethod
    def load(cls, mapdir: MapDir) -> "ObjectMap":
        """Read and check the object map of ``mapdir`` (MapError naming the problem)."""
        meta = mapdir.read_json("objects_meta")
        if not isinstance(meta, dict) or meta.get("version") != OBJECT_MAP_VERSION:
            raise MapError(f"{mapdir.root}: objects_meta.json has version "
                           f"{meta.get('version') if isinstance(meta, dict) else None!r}, "
                           f"expected {OBJECT_MAP_VERSION}; rebuild the map")
        arrays = mapdir.read_arrays("objects")
        try:
            D = Descriptors.from_arrays(arrays, "obj_")
        except (KeyError, ValueError) as e:
            raise MapError(f"{mapdir.root}: objects.npz is malformed ({e})") from None
        if "submap_T" not in arrays:
            raise MapError(f"{mapdir.root}: objects.npz has no submap_T")
        T = np.asarray(arrays["submap_T"], float)
        if T.ndim != 3 or T.shape[1:] != (4, 4) or not np.all(np.isfinite(T)):
            raise MapError(f"{mapdir.root}: objects.npz submap_T must be finite (K, 4, 4), got {T.shape}")
        nbad = int(np.count_nonzero(~D.valid_mask()))
        if nbad:
            raise MapError(f"{mapdir.root}: objects.npz has {nbad} object(s) with NaN/inf numbers")
        if len(D) != meta.get("n_objects", len(D)):
            raise MapError(f"{mapdir.root}: objects.npz holds {len(D)} objects, meta says {meta.get('n_objects')}")
        return cls(D, T, {k: v for k, v in meta.items() if k not in ("version", "n_objects", "n_submaps",
                                                                       "appearance_dim")})


class ObjectMapBuilder:
    """Build an :class:`ObjectMap` from a mapping run (events + their poses T_map_base)."""

    def __init__(self, cfg: ObjectsConfig | None = None, appearance_fn=None):
        """``appearance_fn``: crop -> embedding; default from ``cfg.clip_weights`` (None: colour)."""
        self.cfg = cfg or ObjectsConfig()
        self.tracker = ObjectTracker(self.cfg)
        emb = appearance_fn if appearance_fn is not None else make_embedder(self.cfg)
        self.lidar = LidarSegmenter(self.cfg, emb)
        self.rgbd = RgbdSegmenter(self.cfg, emb)
        self.trigger = TravelTrigger(self.cfg.submap_spacing_m)
        self.gate_lidar = FrameGate(self.cfg.frame_min_travel_m, self.cfg.frame_min_yaw_rad)
        self.gate_rgbd = FrameGate(self.cfg.frame_min_travel_m, self.cfg.frame_min_yaw_rad)
        self.centres: list[np.ndarray] = []
        self.retired = []
        self._image: ImageEvent | None = None
        self.n_frames = 0

    def _pose(self, T) -> np.ndarray | None:
        T = np.asarray(T, float)
        return T if T.shape == (4, 4) and np.all(np.isfinite(T)) else None

    def _move(self, T: np.ndarray) -> None:
        """Lay a submap centre at the first pose and every ``submap_spacing_m`` of travel."""
        fired = self.trigger.update(T[:3, 3])
        if fired or not self.centres:
            self.centres.append(yaw_only(T))

    def _after(self, t: float, T: np.ndarray, segs: list[Segment]) -> None:
        for s in segs:
            s.points = transform_points(T, s.points)
        self.tracker.update(segs, t)
        self.retired += self.tracker.retire(T[:3, 3], 3.0 * self.cfg.submap_radius_m)
        self.n_frames += 1

    def add_scan(self, scan: ScanEvent, T_map_base) -> None:
        T = self._pose(T_map_base)
        if T is None:
            return
        if self.gate_lidar(T):
            img = self._image if self._image is not None and abs(self._image.t - scan.t) < 0.2 else None
            self._after(scan.t, T, self.lidar.segment(scan, img))
        self._move(T)

    def add_image(self, img: ImageEvent, T_map_base) -> None:
        T = self._pose(T_map_base)
        if T is None:
            return
        self._image = img  # colour for LiDAR segments
        if img.depth_m is not None and self.gate_rgbd(T):
            self._after(img.t, T, self.rgbd.segment(img))
        self._move(T)

    def add_objects(self, objects_map: Descriptors, T_map_base) -> None:
        """Objects already described in the map frame (e.g. from a simulator's object list)."""
        self._extra = Descriptors.concat([getattr(self, "_extra", Descriptors.empty()), objects_map])
        T = self._pose(T_map_base)
        if T is not None:
            self._move(T)

    def finish(self, meta: dict | None = None) -> ObjectMap:
        trs = [t for t in self.retired + list(self.tracker.tracks.values())
               if t.sightings >= self.cfg.min_sightings]
        D = self.tracker.objects(trs)
        extra = getattr(self, "_extra", None)
        if extra is not None and len(extra):
            D = Descriptors.concat([D, extra])
        D.ids = np.arange(len(D))
        centres = np.array(self.centres) if self.centres else np.zeros((0, 4, 4))
        return ObjectMap(D, centres, {"frames": self.n_frames, **(meta or {})})
