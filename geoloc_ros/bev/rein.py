"""REIN: rotation-equivariant BEV encoder + NetVLAD (after BEVPlace++), torch.

Steps of :meth:`ReinNet.forward` on a batch of BEV images ``(B, 1, S, S)`` in 0..1:

1. mask the image to the disc of radius S/2 (so a rotation loses nothing);
2. rotation-equivariant module (REM): rotate the image by ``R`` angles (360/R deg steps) with
   ``grid_sample``, run ONE shared encoder on the ``B*R`` images, rotate every feature map back and
   max-pool over the rotations (group pooling -> equivariant features, invariant statistics);
3. local features: stride-4 and stride-8 pooled maps, concatenated, 1x1 conv -> 128-D, L2-normalised
   (``(B, 128, S/4, S/4)``; bilinear sampling gives them at any image-resolution pixel);
4. global descriptor: NetVLAD (64 clusters, k-means initialised) over the stride-8 features
   inside the disc, intra- and L2-normalised, then an optional PCA projection, L2-normalised.

Pixel sampling uses ``align_corners=True`` everywhere, so pixel ``u`` of the image, of the stride-4
and of the stride-8 maps share the normalised coordinate ``2*u/(S-1) - 1``.
"""
from __future__ import annotations

import hashlib
import math
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ReinNet", "WeightsError", "load_rein", "default_weights_path", "sample_local",
           "rotate_images", "weights_digest"]


class WeightsError(RuntimeError):
    """A REIN weights file that cannot be used; the message names the file and the cause."""


def _conv(cin: int, cout: int, stride: int = 1, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _rotation_theta(angles_rad: torch.Tensor) -> torch.Tensor:
    """(R,) angles -> (R, 2, 3) affine_grid matrices: output pixel p samples the input at rot(a) p."""
    c, s = torch.cos(angles_rad), torch.sin(angles_rad)
    z = torch.zeros_like(c)
    return torch.stack([torch.stack([c, -s, z], -1), torch.stack([s, c, z], -1)], -2)


def rotate_images(x: torch.Tensor, angle_rad: float | torch.Tensor) -> torch.Tensor:
    """Rotate (B, C, H, W) maps counter-clockwise (x=col right, y=row) by ``angle_rad`` about the centre.

    A point at pixel p moves to rot(angle) p; this is the BEV image of the robot yawed by
    ``-angle_rad`` (the world seen from the robot turns the other way).
    """
    a = torch.as_tensor(angle_rad, dtype=x.dtype).reshape(-1).expand(x.shape[0])
    grid = F.affine_grid(_rotation_theta(-a), list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


class NetVLAD(nn.Module):
    """NetVLAD pooling of (B, D, H, W) features with an optional (B, H*W) location weight."""

    def __init__(self, clusters: int = 64, dim: int = 128, alpha: float = 50.0):
        super().__init__()
        self.alpha = alpha
        self.assign = nn.Conv2d(dim, clusters, 1, bias=True)
        self.centroids = nn.Parameter(torch.randn(clusters, dim) * 0.1)

    def init_from_kmeans(self, centroids: np.ndarray) -> None:
        """Initialise assignments and centroids from (K, D) k-means centres of L2-normalised features."""
        c = torch.as_tensor(centroids, dtype=torch.float32)
        c = F.normalize(c, dim=1)
        with torch.no_grad():
            self.centroids.copy_(c)
            self.assign.weight.copy_((2.0 * self.alpha * c)[:, :, None, None])
            self.assign.bias.copy_(-self.alpha * (c * c).sum(1))

    def forward(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        B, D = x.shape[:2]
        x = F.normalize(x, dim=1)
        a = F.softmax(self.assign(x).flatten(2), dim=1)          # (B, K, N)
        if weight is not None:
            a = a * weight[:, None, :]
        xf = x.flatten(2)                                         # (B, D, N)
        vlad = torch.einsum("bkn,bdn->bkd", a, xf) - a.sum(2)[:, :, None] * self.centroids[None]
        vlad = F.normalize(vlad, dim=2).flatten(1)
        return F.normalize(vlad, dim=1)


class ReinNet(nn.Module):
    """Rotation-equivariant encoder + NetVLAD. ``forward(x (B,1,S,S)) -> (g (B,G), local (B,128,S/4,S/4))``."""

    def __init__(self, num_rotations: int = 8, widths=(16, 32, 64), feat_dim: int = 128,
                 clusters: int = 64, pca_dim: int = 256):
        super().__init__()
        w1, w2, w3 = widths
        self.num_rotations = num_rotations
        self.stage1 = _conv(1, w1, 2)                                      # stride 2
        self.stage2 = _conv(w1, w2, 2)                                     # stride 4
        self.stage3 = nn.Sequential(_conv(w2, w3, 2), _conv(w3, w3),       # stride 8
                                    nn.Conv2d(w3, feat_dim, 1))
        self.local_head = nn.Conv2d(w2 + feat_dim, feat_dim, 1)
        self.vlad = NetVLAD(clusters, feat_dim)
        self.pca_dim = pca_dim
        vlad_dim = clusters * feat_dim
        self.register_buffer("pca_mean", torch.zeros(vlad_dim))
        self.register_buffer("pca_matrix", torch.zeros(pca_dim, vlad_dim))
        self.register_buffer("pca_fitted", torch.zeros((), dtype=torch.uint8))

    @property
    def global_dim(self) -> int:
        return self.pca_dim if int(self.pca_fitted) else self.vlad.centroids.numel()

    def _disc(self, n: int, device) -> torch.Tensor:
        r = torch.linspace(-1.0, 1.0, n, device=device)
        return ((r[None, :] ** 2 + r[:, None] ** 2) <= 1.0).float()

    def features(self, x: torch.Tensor):
        """Group-pooled equivariant maps: (B, w2, S/4, S/4) and (B, 128, S/8, S/8).

        Rotation k (angle k*360/R) is ``rot90`` of one of the R/4 base rotations in [0, 90) deg, so
        only those go through ``grid_sample`` (in and back); quarter turns are exact permutations.
        """
        B, _, S, _ = x.shape
        R = self.num_rotations
        x = x * self._disc(S, x.device)
        if R % 4:
            angles = torch.arange(R, dtype=x.dtype, device=x.device) * (2 * math.pi / R)
            xr = rotate_images(x.repeat_interleave(R, 0), angles.repeat(B))
            f2 = self.stage2(self.stage1(xr))
            f3 = self.stage3(f2)
            back = (-angles).repeat(B)
            return (rotate_images(f2, back).unflatten(0, (B, R)).amax(1),
                    rotate_images(f3, back).unflatten(0, (B, R)).amax(1))
        q = R // 4
        base = torch.arange(q, dtype=x.dtype, device=x.device) * (2 * math.pi / R)
        xb = x[:, None].repeat(1, q, 1, 1, 1)                                  # (B, q, 1, S, S)
        if q > 1:
            xb[:, 1:] = rotate_images(x.repeat_interleave(q - 1, 0), base[1:].repeat(B)).unflatten(0, (B, q - 1))
        xr = torch.stack([torch.rot90(xb, -m, dims=(3, 4)) for m in range(4)], 1)  # (B, 4, q, 1, S, S)
        f2 = self.stage2(self.stage1(xr.flatten(0, 2)))
        f3 = self.stage3(f2)

        def pool(f):
            f = f.unflatten(0, (B, 4, q))
            f = torch.stack([torch.rot90(f[:, m], m, dims=(3, 4)) for m in range(4)], 1)  # undo quarter turns
            out = f[:, :, 0].amax(1)
            if q > 1:
                g = f[:, :, 1:].transpose(1, 2).flatten(0, 2)                  # (B*(q-1)*4, C, h, w)
                ang = (-base[1:]).repeat_interleave(4).repeat(B)
                g = rotate_images(g, ang).unflatten(0, (B, (q - 1) * 4)).amax(1)
                out = torch.maximum(out, g)
            return out
        return pool(f2), pool(f3)

    def forward(self, x: torch.Tensor):
        f2, f3 = self.features(x)
        up = F.interpolate(f3, size=f2.shape[-2:], mode="bilinear", align_corners=True)
        local = F.normalize(self.local_head(torch.cat([f2, up], 1)), dim=1)
        disc = self._disc(f3.shape[-1], f3.device).flatten()[None].expand(x.shape[0], -1)
        g = self.vlad(f3, disc)
        if int(self.pca_fitted):
            g = F.normalize((g - self.pca_mean) @ self.pca_matrix.T, dim=1)
        return g, local

    def fit_pca(self, vlads: np.ndarray) -> None:
        """Fit the PCA projection on (N, K*D) raw NetVLAD descriptors (N >= pca_dim advisable)."""
        v = torch.as_tensor(vlads, dtype=torch.float32)
        mean = v.mean(0)
        _, _, Vt = torch.linalg.svd(v - mean, full_matrices=False)
        k = min(self.pca_dim, Vt.shape[0])
        M = torch.zeros(self.pca_dim, v.shape[1])
        M[:k] = Vt[:k]
        with torch.no_grad():
            self.pca_mean.copy_(mean)
            self.pca_matrix.copy_(M)
            self.pca_fitted.fill_(1)


def sample_local(local: torch.Tensor, uv: np.ndarray, image_size: int) -> np.ndarray:
    """(K, 128) float32 L2-normalised local descriptors at (K, 2) image pixels (u, v) of one map (1, C, h, w)."""
    if len(uv) == 0:
        return np.zeros((0, local.shape[1]), np.float32)
    g = torch.as_tensor(np.asarray(uv, np.float32) * (2.0 / (image_size - 1)) - 1.0)
    out = F.grid_sample(local[:1], g[None, None], mode="bilinear", align_corners=True)  # (1,C,1,K)
    return F.normalize(out[0, :, 0].T, dim=1).numpy().astype(np.float32)


def default_weights_path() -> Path:
    """The weights shipped with the package (geoloc_ros/data/rein.pt)."""
    return Path(str(resources.files("geoloc_ros") / "data" / "rein.pt"))


def weights_digest(path: str | Path) -> str:
    """sha256 of a weights file (recorded in map directories built with it)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_rein(cfg=None, path: str | Path | None = None, allow_random: bool = False) -> ReinNet:
    """ReinNet in eval mode with weights from ``path`` / ``cfg.weights`` / the packaged file.

    A missing, unreadable or wrong-shape file raises :class:`WeightsError` naming the cause;
    ``allow_random=True`` returns a seeded random network instead of failing when no file exists.
    """
    p = Path(path) if path else Path(cfg.weights) if (cfg is not None and cfg.weights) else default_weights_path()
    R = cfg.num_rotations if cfg is not None else 8
    torch.manual_seed(0)
    net = ReinNet(num_rotations=R)
    if not p.is_file():
        if allow_random:
            net.eval()
            net.weights_path = None
            return net
        raise WeightsError(f"REIN weights not found: {p} (run `geoloc train` or set bev.weights)")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user-facing error
        raise WeightsError(f"{p}: not a readable torch state_dict ({type(e).__name__}: {e})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{p}: expected a state_dict of tensors")
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}"
             for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append("wrong shape: " + "; ".join(wrong[:3]))
        if missing:
            parts.append("missing: " + ", ".join(missing[:3]))
        if unexpected:
            parts.append("unexpected: " + ", ".join(unexpected[:3]))
        raise WeightsError(f"{p}: weights do not fit the REIN network ({' | '.join(parts)})")
    net.load_state_dict(state)
    net.eval()
    net.weights_path = p
    return net
