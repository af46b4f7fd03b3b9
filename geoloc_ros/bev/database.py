"""BEV map database: keyframes (pose, global descriptor, keypoints + local descriptors) and a FAISS index.

Stored in a :class:`~geoloc_ros.maps.mapdir.MapDir` as ``bev_keyframes.npz`` (arrays below) and
``bev_meta.json`` (the BEV configuration and the sha256 of the REIN weights the map was built
with). Loading with another configuration or other weights is a :class:`BevMapError` naming the
differing parameter: descriptors of different networks or images are not comparable.

``bev_keyframes.npz``: ``poses`` (N, 4, 4) T_map_base, ``stamps`` (N,) s, ``global_desc`` (N, G)
float32, ``kp_xy_m`` (M, 2) float32, ``kp_desc`` (M, 128) float16, ``kp_offsets`` (N+1,) int64
(keyframe i owns rows ``kp_offsets[i]:kp_offsets[i+1]``). About 110 KB per keyframe.

The index holds each keyframe's global descriptor averaged with its neighbours' along the map
(:meth:`BevDatabase.retrieval_descriptors`, ``BevConfig.retrieval_smooth_m``); the file keeps them raw.

``bev_meta.json`` also holds ``impostor_inliers``: the pose inlier counts of *wrong* poses the
map gives its own keyframes (:meth:`BevDatabase.calibrate_impostors`, run by ``build_database``),
the chance level of these weights in this map that a fix must beat (``BevConfig.impostor_*``).
"""
from __future__ import annotations

import logging
from typing import Iterable

import numpy as np

from geoloc_ros.bev.features import Features, extract_features, features_from_scan
from geoloc_ros.bev.image import BevInputError
from geoloc_ros.bev.pose import estimate_poses, map_xyyaw, poses_differ
from geoloc_ros.bev.rein import ReinNet, default_weights_path, weights_digest
from geoloc_ros.events import ScanEvent
from geoloc_ros.geometry import wrap_angle, yaw_of
from geoloc_ros.maps.mapdir import MapDir, MapError

__all__ = ["BevDatabase", "BevMapError", "build_database", "make_index", "MAP_KEYS"]

log = logging.getLogger(__name__)

# Parameters that change the descriptors: a map records them and refuses others.
MAP_KEYS = ("crop_m", "voxel_m", "resolution_m", "max_points_per_cell", "z_min_m", "z_max_m",
            "num_rotations", "fast_threshold", "max_keypoints")


class BevMapError(MapError):
    """A BEV map that does not fit this configuration or is malformed; the message says which part."""


def _gpu_available() -> bool:
    import faiss
    return hasattr(faiss, "StandardGpuResources") and getattr(faiss, "get_num_gpus", lambda: 0)() > 0


def make_index(desc: np.ndarray, index_type: str = "flat", nlist: int = 1024, nprobe: int = 16,
               hnsw_m: int = 32, use_gpu: bool | None = None, train_max: int = 100_000):
    """A FAISS inner-product index over (N, G) unit descriptors: ``flat`` (exact), ``ivf`` or ``hnsw``.

    IVF lists are capped at N/39 (FAISS's minimum training points per list) and trained on at most
    ``train_max`` descriptors. A GPU copy is made for flat/IVF when faiss-gpu sees a GPU.
    """
    import faiss
    desc = np.ascontiguousarray(desc, dtype=np.float32)
    n, d = desc.shape
    if index_type == "flat":
        index = faiss.IndexFlatIP(d)
    elif index_type == "ivf":
        nl = max(1, min(nlist, n // 39))
        quant = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quant, d, nl, faiss.METRIC_INNER_PRODUCT)
        sel = desc if n <= train_max else desc[np.random.default_rng(0).choice(n, train_max, replace=False)]
        index.train(sel)
        index.nprobe = min(nprobe, nl)
    elif index_type == "hnsw":
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = 64
    else:
        raise ValueError(f"unknown bev.index_type {index_type!r} (flat, ivf, hnsw)")
    if (use_gpu if use_gpu is not None else _gpu_available()) and index_type in ("flat", "ivf"):
        try:
            index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
        except (RuntimeError, AttributeError) as e:   # no usable device / CPU-only faiss build
            log.warning("FAISS GPU index unavailable (%s): using the CPU index", e)
    if n:
        index.add(desc)
    return index


class BevDatabase:
    """Keyframes of a BEV map and their retrieval index.

    ``add_keyframe(scan_or_bev, T_map_base)`` takes a ScanEvent, an (S, S) BEV image or
    :class:`Features`; ``search(global_desc, k)`` returns (indices (k,), cosine similarities (k,)).
    """

    def __init__(self, cfg, model: ReinNet | None = None, weights_sha256: str = ""):
        self.cfg = cfg
        self.model = model
        self.weights_sha256 = weights_sha256 or _digest_of(model, cfg)
        self.poses: list[np.ndarray] = []
        self.stamps: list[float] = []
        self.global_desc: list[np.ndarray] = []
        self.kp_xy: list[np.ndarray] = []
        self.kp_desc: list[np.ndarray] = []
        #: (S,) int inlier counts of wrong poses among the map's own keyframes; None: not calibrated
        self.impostor_inliers: np.ndarray | None = None
        self._index = None

    def __len__(self) -> int:
        return len(self.poses)

    # ---- building ----------------------------------------------------------------------------
    def add_keyframe(self, scan_or_bev, T_map_base: np.ndarray, t: float | None = None) -> int:
        """Add one keyframe; returns its index. Raises BevInputError for an unusable scan."""
        T = np.asarray(T_map_base, float)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise BevInputError("keyframe pose must be a finite 4x4 matrix")
        if isinstance(scan_or_bev, Features):
            f = scan_or_bev
        else:
            if self.model is None:
                raise RuntimeError("BevDatabase needs a REIN model to add scans or BEV images")
            if isinstance(scan_or_bev, ScanEvent):
                f = features_from_scan(self.model, scan_or_bev, self.cfg)
                t = scan_or_bev.t if t is None else t
            else:
                f = extract_features(self.model, np.asarray(scan_or_bev, np.float32), self.cfg)
        self.poses.append(T)
        self.stamps.append(float(t) if t is not None else float(len(self.stamps)))
        self.global_desc.append(np.asarray(f.global_desc, np.float32))
        self.kp_xy.append(np.asarray(f.kp_xy_m, np.float32))
        self.kp_desc.append(np.asarray(f.kp_desc, np.float16))
        self._index = None
        return len(self.poses) - 1

    # ---- retrieval ---------------------------------------------------------------------------
    def retrieval_descriptors(self) -> np.ndarray:
        """(N, G) unit descriptors the index holds: keyframe i's global descriptor averaged with those of
        the keyframes within 3 sigma of its map-frame position, weighted exp(-d^2 / (2 sigma^2)), sigma =
        ``retrieval_smooth_m`` (0: the keyframes' own descriptors). The stored descriptors stay raw.

        Neighbouring keyframes see the same place from a little along the path; their mean describes the
        place rather than one viewpoint, so a query from a lane over still retrieves it. With keyframes
        sparser than sigma a keyframe keeps (almost) its own descriptor.
        """
        G = np.stack(self.global_desc).astype(np.float32)
        sigma = float(self.cfg.retrieval_smooth_m)
        if sigma <= 0 or len(G) < 2:
            return G
        from scipy.sparse import coo_matrix
        from scipy.spatial import cKDTree
        xyz = np.stack(self.poses)[:, :3, 3]
        pairs = cKDTree(xyz).query_pairs(3.0 * sigma, output_type="ndarray")          # (P, 2), i < j
        w = np.exp(-0.5 * (np.linalg.norm(xyz[pairs[:, 0]] - xyz[pairs[:, 1]], axis=1) / sigma) ** 2)
        n, diag = len(G), np.arange(len(G))
        W = coo_matrix((np.concatenate([w, w, np.ones(n)]),
                        (np.concatenate([pairs[:, 0], pairs[:, 1], diag]),
                         np.concatenate([pairs[:, 1], pairs[:, 0], diag]))), shape=(n, n)).tocsr()
        D = np.asarray(W @ G, np.float32)
        return D / np.maximum(np.linalg.norm(D, axis=1, keepdims=True), 1e-12)

    @property
    def index(self):
        if self._index is None and len(self):
            c = self.cfg
            self._index = make_index(self.retrieval_descriptors(), c.index_type, c.ivf_nlist, c.ivf_nprobe, c.hnsw_m)
        return self._index

    def search(self, global_desc: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if not len(self):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        sims, idx = self.index.search(np.asarray(global_desc, np.float32).reshape(1, -1), min(k, len(self)))
        ok = idx[0] >= 0
        return idx[0][ok].astype(np.int64), sims[0][ok]

    def keyframe(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(T_map_base (4,4), kp_xy_m (K,2) float64, kp_desc (K,128) float32) of keyframe i."""
        return self.poses[i], self.kp_xy[i].astype(np.float64), self.kp_desc[i].astype(np.float32)

    # ---- chance level ------------------------------------------------------------------------
    def calibrate_impostors(self, max_queries: int = 200, exclude_m: float = 10.0) -> np.ndarray:
        """(S,) inlier counts of the wrong poses the map gives its own keyframes; also stored in
        :attr:`impostor_inliers` (and in ``bev_meta.json`` by :meth:`save`).

        Up to ``max_queries`` keyframes (evenly spread) are each posed (:func:`estimate_poses`)
        against the ``top_k`` keyframes of most similar global descriptor farther than
        ``exclude_m``: the other places retrieval would offer. A pose more than
        ``distinct_dist_m`` or ``distinct_yaw_rad`` from the query keyframe's own pose is wrong
        and its inlier count is one sample (a right one, from overlapping keyframes, is not).
        These weights, this sensor and this town set how many inliers a wrong place gets, and a
        scan of an unmapped place meets about the same; no fixed ``min_inliers`` fits every
        weights file.
        """
        cfg = self.cfg
        n = len(self)
        samples: list[int] = []
        if n >= 2:
            G = self.retrieval_descriptors()          # what retrieval compares a query with
            P = np.stack(self.poses)
            rng = np.random.default_rng(cfg.seed)
            for i in np.unique(np.linspace(0, n - 1, min(n, max_queries)).round().astype(int)):
                sim = G @ self.global_desc[i]        # a query brings its own (raw) descriptor
                far = np.hypot(*(P[:, :2, 3] - P[i, :2, 3]).T) > exclude_m
                cand = np.nonzero(far)[0]
                cand = cand[np.argsort(-sim[cand], kind="stable")[:cfg.top_k]]
                _, kq, dq = self.keyframe(int(i))
                own = (P[i, 0, 3], P[i, 1, 3], yaw_of(P[i]))
                kfs = [self.keyframe(int(j)) for j in cand]
                for (T_j, _, _), r in zip(kfs, estimate_poses(kq, dq, [(kp, kd) for _, kp, kd in kfs], cfg, rng)):
                    if r.inliers == 0:
                        samples.append(0)
                        continue
                    if poses_differ(map_xyyaw(T_j, r), own, cfg):
                        samples.append(int(r.inliers))
        self.impostor_inliers = np.asarray(samples, np.int64)
        return self.impostor_inliers

    def impostor_floor(self) -> int:
        """Fewest pose inliers a fix needs in this map: ``min_inliers``, or more where the map's
        wrong poses (:attr:`impostor_inliers`, ``impostor_quantile``) reach it times
        ``impostor_margin``; ``min_inliers`` for a map without (enough) samples."""
        cfg = self.cfg
        s = self.impostor_inliers
        if s is None or len(s) < cfg.impostor_min_samples or cfg.impostor_margin <= 0:
            return int(cfg.min_inliers)
        q = float(np.quantile(s, cfg.impostor_quantile, method="higher"))
        return max(int(cfg.min_inliers), int(np.floor(cfg.impostor_margin * q)) + 1)

    # ---- persistence -------------------------------------------------------------------------
    def meta(self) -> dict:
        g = len(self.global_desc[0]) if self.global_desc else 0
        m = {"format": "geoloc_bev", "version": 1, "keyframes": len(self),
             "global_dim": g, "weights_sha256": self.weights_sha256,
             "config": {k: getattr(self.cfg, k) for k in MAP_KEYS}}
        if self.impostor_inliers is not None:
            m["impostor_inliers"] = [int(v) for v in self.impostor_inliers]
        return m

    def save(self, mapdir: MapDir) -> None:
        """Write ``bev_keyframes.npz`` and ``bev_meta.json`` into a writable map directory."""
        if not len(self):
            raise BevMapError("refusing to save an empty BEV database (no usable keyframes)")
        off = np.concatenate([[0], np.cumsum([len(k) for k in self.kp_xy])]).astype(np.int64)
        mapdir.write_arrays("bev_keyframes", poses=np.stack(self.poses), stamps=np.asarray(self.stamps),
                            global_desc=np.stack(self.global_desc),
                            kp_xy_m=np.concatenate(self.kp_xy).reshape(-1, 2),
                            kp_desc=np.concatenate(self.kp_desc).reshape(-1, self.kp_desc[0].shape[1]),
                            kp_offsets=off)
        mapdir.write_json("bev_meta", self.meta())

    @classmethod
    def load(cls, mapdir: MapDir, cfg, model: ReinNet | None = None) -> "BevDatabase":
        """Open the BEV part of a map; a map built with another configuration or weights is a BevMapError."""
        root = getattr(mapdir, "root", mapdir)
        meta = mapdir.read_json("bev_meta")
        if not isinstance(meta, dict) or meta.get("format") != "geoloc_bev":
            raise BevMapError(f"{root}: bev_meta.json is not a geoloc BEV description")
        stored = meta.get("config", {})
        diff = [f"{k}={stored.get(k)!r} in the map, {getattr(cfg, k)!r} here"
                for k in MAP_KEYS if stored.get(k) != getattr(cfg, k)]
        if diff:
            raise BevMapError(f"{root}: map built with another BEV configuration ({'; '.join(diff)}); "
                              "rebuild the map or use its configuration")
        digest = _digest_of(model, cfg)
        if digest and meta.get("weights_sha256") and meta["weights_sha256"] != digest:
            raise BevMapError(f"{root}: map built with other REIN weights (sha256 {meta['weights_sha256'][:12]}..., "
                              f"these are {digest[:12]}...); rebuild the map with these weights")
        a = mapdir.read_arrays("bev_keyframes")
        need = ("poses", "global_desc", "kp_xy_m", "kp_desc", "kp_offsets")
        missing = [k for k in need if k not in a]
        if missing:
            raise BevMapError(f"{root}: bev_keyframes.npz lacks {', '.join(missing)}")
        n = len(a["poses"])
        off = a["kp_offsets"]
        if (a["poses"].shape[1:] != (4, 4) or len(a["global_desc"]) != n or len(off) != n + 1
                or off[-1] != len(a["kp_xy_m"]) or len(a["kp_desc"]) != len(a["kp_xy_m"])
                or np.any(np.diff(off) < 0) or meta.get("global_dim") != a["global_desc"].shape[1]):
            raise BevMapError(f"{root}: bev_keyframes.npz arrays are inconsistent (corrupt map?)")
        if not (np.all(np.isfinite(a["poses"])) and np.all(np.isfinite(a["global_desc"]))):
            raise BevMapError(f"{root}: bev_keyframes.npz holds NaN/inf poses or descriptors")
        db = cls(cfg, model, weights_sha256=meta.get("weights_sha256", ""))
        db.poses = list(a["poses"].astype(float))
        db.stamps = list(a["stamps"]) if "stamps" in a else list(range(n))
        db.global_desc = list(a["global_desc"].astype(np.float32))
        db.kp_xy = [a["kp_xy_m"][off[i]:off[i + 1]] for i in range(n)]
        db.kp_desc = [a["kp_desc"][off[i]:off[i + 1]] for i in range(n)]
        imp = meta.get("impostor_inliers")
        if imp is not None:
            if not (isinstance(imp, list) and all(isinstance(v, int) and v >= 0 for v in imp)):
                raise BevMapError(f"{root}: bev_meta.json impostor_inliers is not a list of counts")
            db.impostor_inliers = np.asarray(imp, np.int64)
        return db


def _digest_of(model, cfg) -> str:
    p = getattr(model, "weights_path", None) if model is not None else None
    if p is None and model is None:
        p = cfg.weights if getattr(cfg, "weights", "") else default_weights_path()
    try:
        return weights_digest(p) if p is not None else ""
    except OSError:
        return ""


def build_database(scans_with_poses: Iterable[tuple[ScanEvent, np.ndarray]], cfg, model: ReinNet,
                   spacing_m: float | None = None, turn_rad: float = np.radians(30.0)) -> BevDatabase:
    """A database of the scans kept every ``spacing_m`` (default ``cfg.keyframe_spacing_m``) of
    travel or ``turn_rad`` of turning; unusable scans (too few points, NaN poses) are skipped and counted."""
    spacing = cfg.keyframe_spacing_m if spacing_m is None else spacing_m
    db = BevDatabase(cfg, model)
    last = None
    skipped = 0
    for scan, T in scans_with_poses:
        T = np.asarray(T, float)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            skipped += 1
            continue
        if last is not None:
            moved = np.linalg.norm(T[:2, 3] - last[:2, 3])
            turned = abs(float(wrap_angle(yaw_of(T) - yaw_of(last))))
            if moved < spacing and turned < turn_rad:
                continue
        try:
            db.add_keyframe(scan, T)
        except BevInputError as e:
            skipped += 1
            log.debug("keyframe skipped: %s", e)
            continue
        last = T
    if skipped:
        log.info("build_database: %d scans skipped (unusable scan or pose)", skipped)
    db.skipped = skipped
    imp = db.calibrate_impostors()
    if len(imp):
        log.info("build_database: wrong poses among the keyframes reach %d inliers (p50 %d, %d samples): "
                 "fixes need %d", int(imp.max()), int(np.median(imp)), len(imp), db.impostor_floor())
    return db
