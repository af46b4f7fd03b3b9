"""Open-set object segments from LiDAR scans and RGB-D frames.

LiDAR (:class:`LidarSegmenter`), points already in base_link (z up):
1. range crop, voxel down-sampling (``voxel_m``, open3d);
2. ground removal: a local ground height per ``ground_cell_m`` cell (the lowest points of the
   3x3 neighbourhood of cells), points within ``ground_dist_m`` of it are ground;
3. DBSCAN clustering (open3d, ``cluster_eps_m``, ``cluster_min_points``) of a ``cluster_voxel_m``
   copy of the cloud, labels carried back to the 5 cm points;
4. statistical outlier removal (open3d) per segment;
5. size filters (:func:`keep_segment`): largest extent >= ``min_extent_m``, <= ``max_extent_m``,
   height >= ``min_height_m``,
   and large planar segments (walls) dropped.

RGB-D (:class:`RgbdSegmenter`): instance masks from an instance-id image when the frame has one,
otherwise from a depth + colour region growing (:func:`region_segments`); masks are eroded by
``erode_px``, depths beyond ``max_depth_m`` dropped, the rest back-projected with the pinhole
intrinsics into base_link.

Colour for LiDAR segments (:func:`colour_points`): points projected into a camera image with the
pinhole model (D435i) or the equidistant fisheye model (Oxford Spires Alphasense).

Camera frames follow the optical convention (x right, y down, z forward); ``ImageEvent.T_base_sensor``
maps that frame into base_link.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d
import scipy.ndimage as ndi
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from geoloc_ros.events import CameraIntrinsics, ImageEvent, ScanEvent
from geoloc_ros.geometry import se3_inverse, transform_points
from geoloc_ros.objects.config import ObjectsConfig

__all__ = ["Segment", "LidarSegmenter", "RgbdSegmenter", "keep_segment", "colour_points",
           "project", "remove_ground", "region_segments"]


@dataclass
class Segment:
    """Points (N, 3) of one object in a named frame, with colours (N, 3) float 0-255 aligned with
    the points (NaN rows: not seen by the camera) or None."""
    points: np.ndarray
    colors: np.ndarray | None = None
    source: str = "lidar"
    embedding: np.ndarray | None = None   # (F,) open-vocabulary image embedding of its crop


def _crop_embedding(appearance_fn, rgb: np.ndarray, uv: np.ndarray, pad_px: int = 4):
    """Embedding of the image crop bounding the pixels uv (N, 2), or None when too small."""
    if appearance_fn is None or rgb is None or len(uv) < 10:
        return None
    H, W = rgb.shape[:2]
    u0, v0 = np.maximum(np.floor(uv.min(0)).astype(int) - pad_px, 0)
    u1, v1 = np.minimum(np.ceil(uv.max(0)).astype(int) + pad_px, [W - 1, H - 1])
    if u1 - u0 < 8 or v1 - v0 < 8:
        return None
    f = np.asarray(appearance_fn(np.ascontiguousarray(rgb[v0:v1 + 1, u0:u1 + 1, :3])), float).ravel()
    return f if np.all(np.isfinite(f)) and np.linalg.norm(f) > 0 else None


def _finite(P) -> np.ndarray:
    """(N, 3) finite rows of an (N, >=3) array (x, y, z first); empty for anything else."""
    P = np.asarray(P, float) if P is not None else np.zeros((0, 3))
    if P.ndim != 2 or P.shape[1] < 3:
        return np.zeros((0, 3))
    P = P[:, :3]
    return P[np.all(np.isfinite(P), axis=1)]


def keep_segment(P: np.ndarray, cfg: ObjectsConfig) -> tuple[bool, str]:
    """Size filter: (keep, why not). P (N, 3) in a z-up frame."""
    if len(P) < max(3, cfg.cluster_min_points):
        return False, "too few points"
    ext = P.max(0) - P.min(0)
    big = float(ext.max())
    if big < cfg.min_extent_m:
        return False, f"largest extent {big:.2f} m < {cfg.min_extent_m} m"
    if big > cfg.max_extent_m:
        return False, f"largest extent {big:.2f} m > {cfg.max_extent_m} m"
    if ext[2] < cfg.min_height_m:
        return False, f"height {ext[2]:.2f} m < {cfg.min_height_m} m (ground patch, kerb, marking)"
    X = P - P.mean(0)
    lam = np.sort(np.linalg.eigvalsh(X.T @ X / len(P)))[::-1]
    planarity = (lam[1] - lam[2]) / max(lam[0], 1e-12)
    flat = lam[2] / max(lam[0], 1e-12) < 0.01 and planarity > cfg.max_flat_planarity
    if flat and big > cfg.flat_extent_m:
        return False, "large flat segment (wall/ground)"
    return True, ""


def remove_ground(P: np.ndarray, cell_m: float, dist_m: float) -> np.ndarray:
    """(N,) bool, True for non-ground points of P (N, 3) (z up).

    Ground height per cell = the lowest point of its 3x3 cell neighbourhood; a point is ground
    when it is within ``dist_m`` above it."""
    if len(P) == 0:
        return np.zeros(0, bool)
    ij = np.floor(P[:, :2] / cell_m).astype(np.int64)
    ij -= ij.min(0)
    shape = tuple(ij.max(0) + 1)
    zmin = np.full(shape, np.inf)
    np.minimum.at(zmin, (ij[:, 0], ij[:, 1]), P[:, 2])
    zloc = ndi.minimum_filter(zmin, size=3, mode="nearest")
    return P[:, 2] > zloc[ij[:, 0], ij[:, 1]] + dist_m


class LidarSegmenter:
    """LiDAR scan -> object segments in base_link (see module doc). ``appearance_fn`` (crop (h, w, 3)
    uint8 -> (F,) embedding, e.g. :class:`~geoloc_ros.objects.descriptor.ClipEmbedder`) gives
    segments seen by the camera an open-vocabulary embedding."""

    def __init__(self, cfg: ObjectsConfig, appearance_fn=None):
        self.cfg = cfg
        self.appearance_fn = appearance_fn

    def segment(self, scan: ScanEvent, image: ImageEvent | None = None) -> list[Segment]:
        """Segments of one scan (points moved to base_link with ``scan.T_base_sensor``);
        coloured from ``image`` when given. Empty list for an empty or all-NaN scan."""
        cfg = self.cfg
        P = _finite(scan.points)
        if len(P) == 0:
            return []
        T_bs = np.asarray(scan.T_base_sensor, float)
        if T_bs.shape != (4, 4) or not np.all(np.isfinite(T_bs)):
            return []
        P = transform_points(T_bs, P)
        P = P[np.linalg.norm(P[:, :2], axis=1) <= cfg.max_range_m]
        if len(P) < cfg.cluster_min_points:
            return []
        pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(P))
        pc = pc.voxel_down_sample(cfg.voxel_m)
        P = np.asarray(pc.points)
        P = P[remove_ground(P, cfg.ground_cell_m, cfg.ground_dist_m)]
        if len(P) < cfg.cluster_min_points:
            return []
        # DBSCAN on a coarser copy (same clusters, a fraction of the neighbour searches), labels
        # carried back to the fine points by nearest coarse point
        pcc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(P)).voxel_down_sample(cfg.cluster_voxel_m)
        Pc = np.asarray(pcc.points)
        lab_c = np.asarray(pcc.cluster_dbscan(cfg.cluster_eps_m, cfg.cluster_min_points))
        d, nn = cKDTree(Pc).query(P, distance_upper_bound=cfg.cluster_voxel_m)
        labels = np.full(len(P), -1)
        found = np.isfinite(d)
        labels[found] = lab_c[nn[found]]
        colors = colour_points(P, image) if image is not None else None
        out = []
        order = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[order], np.arange(labels.max(initial=-1) + 2))
        for lab in range(labels.max(initial=-1) + 1):
            idx = order[bounds[lab]:bounds[lab + 1]]
            if not keep_segment(P[idx], cfg)[0]:  # cheap rejection before the outlier removal
                continue
            if len(idx) > cfg.sor_neighbors:  # statistical outlier removal, per segment
                _, inl = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(P[idx])).remove_statistical_outlier(
                    cfg.sor_neighbors, cfg.sor_std_ratio)
                idx = idx[np.asarray(inl, int)]
            seg = P[idx]
            ok, _ = keep_segment(seg, cfg)
            if not ok:
                continue
            c, emb = None, None
            if colors is not None and np.all(np.isfinite(colors[idx]), 1).mean() > 0.3:
                c = colors[idx]
                if self.appearance_fn is not None:
                    T_cam_base = se3_inverse(np.asarray(image.T_base_sensor, float))
                    uv, ok = project(transform_points(T_cam_base, seg), image.intrinsics)
                    emb = _crop_embedding(self.appearance_fn, np.asarray(image.rgb), uv[ok])
            out.append(Segment(seg, c, "lidar", emb))
        return out


def project(P_cam: np.ndarray, K: CameraIntrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (N, 2) of camera-frame points (N, 3) and a validity mask (N,).

    Pinhole, or equidistant fisheye (``K.model == 'equidistant'``: theta_d = theta (1 + k1 t^2 +
    k2 t^4 + k3 t^6 + k4 t^8), radius fx * theta_d)."""
    P = np.asarray(P_cam, float)
    x, y, z = P[:, 0], P[:, 1], P[:, 2]
    if K.model == "equidistant":
        r = np.hypot(x, y)
        th = np.arctan2(r, z)
        k = np.asarray(K.D, float).ravel()
        k = np.concatenate([k, np.zeros(4)])[:4]
        t2 = th * th
        thd = th * (1 + t2 * (k[0] + t2 * (k[1] + t2 * (k[2] + t2 * k[3]))))
        scale = np.where(r > 1e-9, thd / np.maximum(r, 1e-9), 1.0 / np.maximum(z, 1e-9))
        u = K.fx * x * scale + K.cx
        v = K.fy * y * scale + K.cy
        valid = th < np.deg2rad(95.0)
    else:
        zz = np.where(z > 1e-6, z, 1.0)
        u = K.fx * x / zz + K.cx
        v = K.fy * y / zz + K.cy
        valid = z > 0.1
    valid &= (u >= 0) & (u <= K.width - 1) & (v >= 0) & (v <= K.height - 1)
    return np.stack([u, v], 1), valid


def colour_points(P_base: np.ndarray, image: ImageEvent) -> np.ndarray:
    """(N, 3) float colours for base_link points seen by the camera, NaN elsewhere."""
    out = np.full((len(P_base), 3), np.nan)
    if image is None or image.rgb is None or image.intrinsics is None or len(P_base) == 0:
        return out
    rgb = np.asarray(image.rgb)
    K = image.intrinsics
    if rgb.ndim != 3 or rgb.shape[2] < 3 or rgb.shape[0] < K.height or rgb.shape[1] < K.width:
        return out  # image smaller than its intrinsics say: no colour rather than a crash
    T_cam_base = se3_inverse(np.asarray(image.T_base_sensor, float))
    uv, ok = project(transform_points(T_cam_base, P_base), K)
    if ok.any():
        ui = np.round(uv[ok, 0]).astype(int)
        vi = np.round(uv[ok, 1]).astype(int)
        out[ok] = rgb[vi, ui, :3]
    return out


def region_segments(depth_m: np.ndarray, rgb: np.ndarray | None, cfg: ObjectsConfig,
                    step: int = 2) -> np.ndarray:
    """Instance-id image (H, W) int32 (0 = none) from depth + colour region growing.

    4-neighbours (on a ``step`` sub-sampled grid) are joined when their depth step is under
    ``region_depth_jump_m`` x depth and their colour step under ``region_colour_jump``;
    connected components are the regions (scipy.sparse.csgraph)."""
    H, W = depth_m.shape
    D = np.asarray(depth_m, float)[::step, ::step]
    h, w = D.shape
    valid = np.isfinite(D) & (D > 0.1) & (D <= cfg.max_depth_m)
    C = None if rgb is None else np.asarray(rgb, float)[::step, ::step, :3]
    idx = np.arange(h * w).reshape(h, w)
    rows, cols = [], []
    for (da, db) in (((slice(None), slice(0, -1)), (slice(None), slice(1, None))),
                     ((slice(0, -1), slice(None)), (slice(1, None), slice(None)))):
        a, b = da, db
        ok = valid[a] & valid[b]
        dz = np.abs(D[a] - D[b])
        ok &= dz < cfg.region_depth_jump_m * np.maximum(D[a], 1.0)
        if C is not None:
            ok &= np.linalg.norm(C[a] - C[b], axis=-1) < cfg.region_colour_jump
        rows.append(idx[a][ok])
        cols.append(idx[b][ok])
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    G = sp.coo_matrix((np.ones(len(r)), (r, c)), shape=(h * w, h * w))
    _, lab = connected_components(G, directed=False)
    lab = lab.reshape(h, w) + 1
    lab[~valid] = 0
    full = np.zeros((H, W), np.int32)
    full[: h * step, : w * step] = np.repeat(np.repeat(lab, step, 0), step, 1)[:H, :W]
    return full


class RgbdSegmenter:
    """RGB-D frame -> object segments in base_link (see module doc); ``appearance_fn`` as for
    :class:`LidarSegmenter`."""

    def __init__(self, cfg: ObjectsConfig, appearance_fn=None):
        self.cfg = cfg
        self.appearance_fn = appearance_fn

    def segment(self, img: ImageEvent) -> list[Segment]:
        cfg = self.cfg
        if img.depth_m is None or img.intrinsics is None:
            return []
        depth = np.asarray(img.depth_m, float)
        if depth.ndim != 2 or depth.size == 0:
            return []
        K = img.intrinsics
        if K.model != "pinhole":
            return []  # fisheye cameras have no depth here
        rgb = img.rgb
        if rgb is not None and np.asarray(rgb).shape[:2] != depth.shape:
            rgb = None  # colour not registered with depth: segment and describe without it
        inst = img.instance if img.instance is not None else region_segments(depth, rgb, cfg)
        inst = np.asarray(inst)
        if inst.shape != depth.shape:
            return []
        valid = np.isfinite(depth) & (depth > 0.1) & (depth <= cfg.max_depth_m)
        H, W = depth.shape
        vv, uu = np.mgrid[0:H, 0:W]
        ids, counts = np.unique(inst[valid & (inst > 0)], return_counts=True)
        out = []
        T = np.asarray(img.T_base_sensor, float)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            return []
        struct = ndi.generate_binary_structure(2, 1)
        for k, n in zip(ids, counts):
            if n < cfg.min_mask_px:
                continue
            mask = inst == k
            if cfg.erode_px > 0:
                mask = ndi.binary_erosion(mask, struct, iterations=cfg.erode_px)
            mask &= valid
            if mask.sum() < cfg.min_mask_px // 2:
                continue
            z = depth[mask]
            x = (uu[mask] - K.cx) / K.fx * z
            y = (vv[mask] - K.cy) / K.fy * z
            P = transform_points(T, np.stack([x, y, z], 1))
            if len(P) > 4000:
                P = P[:: int(np.ceil(len(P) / 4000))]
            pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(P))
            pc = pc.voxel_down_sample(cfg.voxel_m)
            Pd = np.asarray(pc.points)
            ok, _ = keep_segment(Pd, cfg)
            if not ok:
                continue
            c = colour_points(Pd, img) if rgb is not None else None
            emb = None
            if self.appearance_fn is not None and rgb is not None:
                emb = _crop_embedding(self.appearance_fn, np.asarray(rgb),
                                      np.stack([uu[mask], vv[mask]], 1).astype(float))
            out.append(Segment(Pd, c, "rgbd", emb))
        return out
