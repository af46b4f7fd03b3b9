"""Object descriptors: centroid, extents, volume, PCA shape values and an appearance vector.

An object is a point segment (N, 3) in a gravity-aligned frame (z up), optionally with colours
(N, 3) uint8/float. Its descriptor holds

- ``centroid`` (3,) m: mean of the points,
- ``extents`` (3,) m: major and minor horizontal extents of the 2D-PCA box, then the height
  (yaw-invariant, so two views of an object agree whatever their heading),
- ``volume`` m^3 of that box,
- ``base_z`` m: the bottom of the segment (2nd percentile of z): a height reference that does not
  move when the top of a tall object is cut by the sensor's vertical field of view (the
  centroid's z does); :meth:`Descriptors.anchors` = (centroid x, centroid y, base_z) is what the
  gravity-aware association and the registration use,
- ``shape`` (3,): linearity, planarity, scattering from the normalised eigenvalues
  l1 >= l2 >= l3 of the 3D covariance: (l1-l2)/l1, (l2-l3)/l1, l3/l1,
- ``appearance`` (F,): unit-norm colour histogram (soft chromaticity + brightness), zero
  when no colour is known; or an open-vocabulary image embedding (:class:`ClipEmbedder`).

:class:`Descriptors` stores many objects as arrays (one row per object) so that the association
works on arrays only; :func:`single_scores` gives the per-candidate similarity used by CLIPPER.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Descriptors", "describe", "describe_many", "colour_histogram", "single_scores",
           "ClipEmbedder", "SHAPE_NAMES", "from_rows", "make_embedder"]

SHAPE_NAMES = ("linearity", "planarity", "scattering")


def colour_histogram(colors: np.ndarray | None, bins: int = 4) -> np.ndarray:
    """Unit-norm colour descriptor ((2 bins)^2 + bins,) of colors (N, 3), 0-255 (uint8 or float;
    NaN rows = unknown, ignored) or float in [0, 1].

    A soft (Gaussian, one-bin sigma) 2D histogram of the chromaticity (r, g) / (r + g + b) on a
    (2 bins) x (2 bins) grid - invariant to a lighting gain - followed by a coarse ``bins``
    histogram of the brightness at a quarter weight. Square-rooted (so the cosine of two is a
    Bhattacharyya coefficient). Zero vector when there are no (finite) colours."""
    nb = 2 * bins
    F = nb * nb + bins
    if colors is None or len(colors) == 0:
        return np.zeros(F)
    c = np.asarray(colors, float).reshape(-1, 3)
    c = c[np.all(np.isfinite(c), axis=1)]
    if len(c) == 0:
        return np.zeros(F)
    if np.issubdtype(np.asarray(colors).dtype, np.integer) or c.max() > 1.0:
        c = c / 255.0
    s = c.sum(1)
    bright = s / 3.0
    chrom = c[:, :2] / np.maximum(s, 1e-6)[:, None]        # (N, 2) in [0, 1]
    centres = (np.arange(nb) + 0.5) / nb
    w = np.exp(-0.5 * ((chrom[:, :, None] - centres[None, None, :]) * nb) ** 2)  # (N, 2, nb)
    w /= w.sum(2, keepdims=True)
    h2 = np.einsum("ni,nj->ij", w[:, 0], w[:, 1]).ravel()
    hb = np.bincount(np.clip((bright * bins).astype(int), 0, bins - 1), minlength=bins).astype(float)
    h = np.concatenate([h2 / h2.sum(), 0.25 * hb / hb.sum()])
    h = np.sqrt(h)
    return h / np.linalg.norm(h)


@dataclass
class Descriptors:
    """Descriptors of N objects as arrays (row k = object k); frame given by the owner."""
    centroids: np.ndarray                   # (N, 3) m
    extents: np.ndarray                     # (N, 3) m: major, minor horizontal, height
    volume: np.ndarray                      # (N,) m^3
    shape: np.ndarray                       # (N, 3) linearity, planarity, scattering
    appearance: np.ndarray                  # (N, F) unit norm or zero
    ids: np.ndarray = field(default=None)   # (N,) int, object ids (track ids / map ids)
    n_points: np.ndarray = field(default=None)  # (N,) int
    base_z: np.ndarray = field(default=None)    # (N,) m, bottom of the segment (default: centroid z)

    def __post_init__(self):
        n = len(self.centroids)
        self.centroids = np.asarray(self.centroids, float).reshape(n, 3)
        self.extents = np.asarray(self.extents, float).reshape(n, 3)
        self.volume = np.asarray(self.volume, float).reshape(n)
        self.shape = np.asarray(self.shape, float).reshape(n, 3)
        app = np.asarray(self.appearance, float)
        self.appearance = app.reshape(n, app.shape[-1] if app.ndim == 2 else (app.size // max(n, 1)))
        self.ids = np.arange(n) if self.ids is None else np.asarray(self.ids, np.int64).reshape(n)
        self.n_points = (np.zeros(n, np.int64) if self.n_points is None
                         else np.asarray(self.n_points, np.int64).reshape(n))
        self.base_z = (self.centroids[:, 2].copy() if self.base_z is None
                       else np.asarray(self.base_z, float).reshape(n))

    _KEYS = ("centroids", "extents", "volume", "shape", "appearance", "ids", "n_points", "base_z")

    def anchors(self) -> np.ndarray:
        """(N, 3): centroid x, y and the segment's base height (gravity-aware association points)."""
        return np.column_stack([self.centroids[:, :2], self.base_z])

    def __len__(self) -> int:
        return len(self.centroids)

    @classmethod
    def empty(cls, n_app: int = 68) -> "Descriptors":
        return cls(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), np.zeros((0, 3)),
                   np.zeros((0, n_app)))

    def subset(self, idx) -> "Descriptors":
        idx = np.asarray(idx)
        return Descriptors(*(getattr(self, k)[idx] for k in self._KEYS))

    def transformed(self, T: np.ndarray) -> "Descriptors":
        """The same objects with centroids mapped by a yaw-only 4x4 transform (extents and shape
        are yaw invariant)."""
        T = np.asarray(T, float)
        out = self.subset(np.arange(len(self)))
        out.centroids = self.centroids @ T[:3, :3].T + T[:3, 3]
        out.base_z = self.base_z + (out.centroids[:, 2] - self.centroids[:, 2])
        return out

    @staticmethod
    def concat(parts: list["Descriptors"]) -> "Descriptors":
        parts = [p for p in parts if len(p)]
        if not parts:
            return Descriptors.empty()
        return Descriptors(*(np.concatenate([getattr(p, k) for p in parts]) for k in Descriptors._KEYS))

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        return {f"{prefix}{k}": getattr(self, k) for k in self._KEYS}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "") -> "Descriptors":
        missing = [k for k in cls._KEYS if f"{prefix}{k}" not in arrays]
        if missing:
            raise KeyError(f"object arrays lack {', '.join(prefix + k for k in missing)}")
        return cls(*(arrays[f"{prefix}{k}"] for k in cls._KEYS))

    def valid_mask(self) -> np.ndarray:
        """(N,) bool: rows whose numbers are all finite."""
        return (np.all(np.isfinite(self.centroids), 1) & np.all(np.isfinite(self.extents), 1)
                & np.isfinite(self.volume) & np.all(np.isfinite(self.shape), 1) & np.isfinite(self.base_z)
                & np.all(np.isfinite(self.appearance), 1))


def describe(points: np.ndarray, colors: np.ndarray | None = None, bins: int = 4,
             appearance: np.ndarray | None = None) -> dict:
    """Descriptor of one segment: points (N, 3) in a z-up frame, colors (N, 3) or None.

    Returns a dict with centroid, extents, volume, shape, appearance (see module doc);
    ``appearance`` overrides the colour histogram (e.g. a CLIP embedding)."""
    P = np.asarray(points, float)
    P = P[np.all(np.isfinite(P), axis=1)]
    if len(P) < 3:
        raise ValueError(f"a segment needs at least 3 finite points, got {len(P)}")
    c = P.mean(0)
    X = P - c
    # horizontal PCA box (yaw invariant extents)
    cov2 = X[:, :2].T @ X[:, :2] / len(P)
    _, V = np.linalg.eigh(cov2)
    proj = X[:, :2] @ V[:, ::-1]
    ext_h = proj.max(0) - proj.min(0)
    height = float(X[:, 2].max() - X[:, 2].min())
    extents = np.array([ext_h[0], ext_h[1], height])
    volume = float(max(ext_h[0], 0.01) * max(ext_h[1], 0.01) * max(height, 0.01))
    lam = np.sort(np.linalg.eigvalsh(X.T @ X / len(P)))[::-1]
    lam = np.maximum(lam, 0.0)
    l1 = max(lam[0], 1e-12)
    shape = np.array([(lam[0] - lam[1]) / l1, (lam[1] - lam[2]) / l1, lam[2] / l1])
    app = np.asarray(appearance, float) if appearance is not None else colour_histogram(colors, bins)
    return {"centroid": c, "extents": extents, "volume": volume, "shape": shape,
            "appearance": app, "n_points": len(P), "base_z": float(np.percentile(P[:, 2], 2.0))}


def describe_many(segments: list[tuple[np.ndarray, np.ndarray | None]], ids=None,
                  bins: int = 4) -> Descriptors:
    """:class:`Descriptors` for a list of (points (N, 3), colors (N, 3) | None) segments."""
    if not segments:
        return Descriptors.empty(4 * bins * bins + bins)
    return from_rows([describe(p, c, bins) for p, c in segments], ids)


def from_rows(rows: list[dict], ids=None) -> Descriptors:
    """:class:`Descriptors` from a list of :func:`describe` results."""
    if not rows:
        return Descriptors.empty()
    return Descriptors(np.array([d["centroid"] for d in rows]), np.array([d["extents"] for d in rows]),
                       np.array([d["volume"] for d in rows]), np.array([d["shape"] for d in rows]),
                       np.array([d["appearance"] for d in rows]), ids,
                       np.array([d["n_points"] for d in rows]), np.array([d["base_z"] for d in rows]))


def single_scores(D1: Descriptors, D2: Descriptors, A: np.ndarray, ratio_floor: float = 0.05,
                  ratio_eps: float = 0.2, cos_min: float = 0.5, cos_max: float = 0.95,
                  use_shape: bool = True, use_appearance: bool = True) -> np.ndarray:
    """Per-candidate similarity in [0, 1] for associations A (m, 2).

    Geometric mean of the min/max ratios of volume and the three shape values (each value
    floored at ``ratio_floor`` so near-zero values do not make noise of the ratio; a ratio under
    ``ratio_eps`` is a hard 0), times the appearance cosine rescaled from [cos_min, cos_max] to
    [0, 1] (1 when either object has no appearance)."""
    A = np.asarray(A, np.int64)
    m = len(A)
    s = np.ones(m)
    if m == 0:
        return s
    i, j = A[:, 0], A[:, 1]
    if use_shape:
        v1 = np.column_stack([D1.volume[i] ** (1 / 3), D1.shape[i]])  # cube root: a length scale
        v2 = np.column_stack([D2.volume[j] ** (1 / 3), D2.shape[j]])
        v1 = np.maximum(v1, ratio_floor)
        v2 = np.maximum(v2, ratio_floor)
        r = np.minimum(v1, v2) / np.maximum(v1, v2)
        s = np.exp(np.mean(np.log(r), axis=1))
        s[np.any(r < ratio_eps, axis=1)] = 0.0
    if use_appearance and D1.appearance.shape[1] and D1.appearance.shape[1] == D2.appearance.shape[1]:
        a1, a2 = D1.appearance[i], D2.appearance[j]
        n1, n2 = np.linalg.norm(a1, axis=1), np.linalg.norm(a2, axis=1)
        have = (n1 > 0) & (n2 > 0)
        cos = np.einsum("ij,ij->i", a1, a2) / np.where(have, n1 * n2, 1.0)
        sc = np.clip((cos - cos_min) / (cos_max - cos_min), 0.0, 1.0)
        s = s * np.where(have, sc, 1.0)
    return s


class ClipEmbedder:
    """Open-vocabulary appearance from an image crop with open_clip, from a LOCAL weights file.

    Nothing is downloaded: ``weights`` must be an existing file (loaded with
    ``torch.load(weights_only=True)``); open_clip must be installed. Call with an (H, W, 3)
    uint8 crop; returns a unit-norm embedding (F,).
    """

    def __init__(self, weights: str | Path, model_name: str = "ViT-B-32"):
        p = Path(weights)
        if not p.is_file():
            raise FileNotFoundError(f"CLIP weights file not found: {p} (nothing is downloaded)")
        try:
            import open_clip  # noqa: F401
        except ImportError as e:
            raise ImportError("appearance from CLIP needs `pip install open_clip_torch`") from e
        import torch
        self._torch = torch
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(model_name, pretrained=None)
        state = torch.load(p, map_location="cpu", weights_only=True)
        self.model.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
        self.model.eval()

    def __call__(self, crop_rgb: np.ndarray) -> np.ndarray:
        from PIL import Image
        torch = self._torch
        with torch.no_grad():
            x = self.preprocess(Image.fromarray(np.asarray(crop_rgb, np.uint8))).unsqueeze(0)
            f = self.model.encode_image(x)[0].float().numpy()
        return f / max(np.linalg.norm(f), 1e-12)


def make_embedder(cfg):
    """The open-vocabulary appearance function configured by ``cfg.clip_weights`` (None: colour
    histograms). A missing weights file or open_clip package is a clear error at start-up."""
    if not getattr(cfg, "clip_weights", ""):
        return None
    return ClipEmbedder(cfg.clip_weights)
