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

import functools
import hashlib
import math
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ReinNet", "WeightsError", "load_rein", "default_weights_path", "sample_local",
           "rotate_images", "weights_digest", "bf16_native"]


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


_GRIDS: dict = {}


def _rotation_grid(angles_rad: tuple, shape: tuple, dtype, device) -> torch.Tensor:
    """Cached ``affine_grid`` of :func:`rotate_images` for fixed angles (R,) and map shape (C, H, W)."""
    key = (angles_rad, shape, dtype, device)
    g = _GRIDS.get(key)
    if g is None:
        with torch.inference_mode(False), torch.no_grad():   # usable later in autograd too
            a = torch.tensor(angles_rad, dtype=dtype, device=device)
            g = F.affine_grid(_rotation_theta(-a), [len(angles_rad), *shape], align_corners=True)
        if len(_GRIDS) > 64:
            _GRIDS.clear()
        _GRIDS[key] = g
    return g


def _rotate_fixed(x: torch.Tensor, angles_rad: tuple) -> torch.Tensor:
    """:func:`rotate_images` of (B*R, C, H, W) maps, map ``i`` by ``angles_rad[i % R]``, with a cached grid."""
    R = len(angles_rad)
    g = _rotation_grid(angles_rad, tuple(x.shape[1:]), x.dtype, x.device)
    g = g.repeat(x.shape[0] // R, 1, 1, 1) if x.shape[0] != R else g
    return F.grid_sample(x, g, mode="bilinear", padding_mode="zeros", align_corners=True)


def _fold_bn(block: nn.Sequential, channels_last: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of conv(no bias) -> BatchNorm with its eval statistics folded into one conv."""
    conv, bn = block[0], block[1]
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return ((conv.weight * scale[:, None, None, None]).contiguous(memory_format=fmt),
            bn.bias - bn.running_mean * scale)


class _InferenceEncoder:
    """The encoder for inference, built from, and frozen at, a ReinNet's state, BatchNorm folded.

    float32: the stride-2 and stride-4 convolutions in plain NCHW (their 1- and 16-channel inputs run
    ~7 % slower channels-last), the stride-8 stage channels-last with its last 1x1 conv as a matmul.
    bfloat16 (CPUs with AVX512-BF16/AMX): every convolution channels-last in bfloat16 with its ReLU
    fused (oneDNN post-op where torch exposes it), about half the float32 time; the outputs are
    returned in float32.
    """

    def __init__(self, net: "ReinNet", bf16: bool):
        with torch.inference_mode(False), torch.no_grad():
            self.convs = [(*_fold_bn(m, channels_last=bf16 or k >= 2), m[0].stride, m[0].padding)
                          for k, m in enumerate((net.stage1, net.stage2, net.stage3[0], net.stage3[1]))]
            last = net.stage3[2]
            self.w_last = last.weight[:, :, 0, 0].T.contiguous().clone()          # (w3, 128)
            self.b_last = last.bias.clone()
            if bf16:
                self.convs = [(w.to(torch.bfloat16), b.to(torch.bfloat16), st, pad) for w, b, st, pad in self.convs]
                self.w_last, self.b_last = self.w_last.to(torch.bfloat16), self.b_last.to(torch.bfloat16)
        self.bf16 = bf16
        self.fused = bf16 and _fused_conv_relu_works()      # checked here, before any worker thread runs it

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.bf16:
            h = x.to(torch.bfloat16, memory_format=torch.channels_last)
            for k, (w, b, st, pad) in enumerate(self.convs):
                if k == 2:
                    f2 = h                                             # stride-4 features
                h = _conv_relu(h, w, b, st, pad) if self.fused else F.relu(F.conv2d(h, w, b, st, pad), inplace=True)
        else:
            h = x.contiguous()
            for k, (w, b, st, pad) in enumerate(self.convs):
                if k == 2:
                    f2 = h                                             # stride-4 features
                    h = h.contiguous(memory_format=torch.channels_last)
                h = F.relu(F.conv2d(h, w, b, st, pad), inplace=True)
        nhwc = h.permute(0, 2, 3, 1)                                   # a view: h is channels-last
        f3 = torch.addmm(self.b_last, nhwc.reshape(-1, nhwc.shape[-1]), self.w_last)
        f3 = f3.view(*nhwc.shape[:3], -1).permute(0, 3, 1, 2)         # (N, 128, h, w) channels-last
        return f2.float(), f3.float()


def _conv_relu(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor, stride, padding) -> torch.Tensor:
    """relu(conv2d(h, w, b)) for channels-last inputs through oneDNN's fused ReLU post-op."""
    return torch.ops.mkldnn._convolution_pointwise(h, w, b, list(padding), list(stride), [1, 1], 1, "relu", [], "")


@functools.lru_cache(maxsize=1)
def _fused_conv_relu_works() -> bool:
    """Whether :func:`_conv_relu` runs on this torch build and equals relu(conv2d) in bfloat16
    channels-last (tried once, on random stride-2 convs of the encoder's stage-1 and stage-2 shapes)."""
    g = torch.Generator().manual_seed(0)
    for cin, cout in ((1, 16), (16, 32)):
        h = torch.rand(1, cin, 9, 9, generator=g).to(torch.bfloat16, memory_format=torch.channels_last)
        w = (torch.rand(cout, cin, 3, 3, generator=g) - 0.5).to(torch.bfloat16, memory_format=torch.channels_last)
        b = (torch.rand(cout, generator=g) - 0.5).to(torch.bfloat16)
        try:
            out = _conv_relu(h, w, b, (2, 2), (1, 1))
        except (AttributeError, RuntimeError, NotImplementedError):
            return False
        ref = F.relu(F.conv2d(h, w, b, 2, 1))
        if out.shape != ref.shape or not torch.allclose(out.float(), ref.float(), rtol=2e-2,
                                                        atol=2e-2 * float(ref.abs().max()) + 1e-6):
            return False
    return True


@functools.lru_cache(maxsize=1)
def bf16_native() -> bool:
    """Whether this CPU runs bfloat16 convolutions natively (oneDNN with AVX512-BF16 / AMX)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@functools.lru_cache(maxsize=8)
def _disc_mask(n: int, device: torch.device) -> torch.Tensor:
    """(n, n) float 0/1 mask of the disc inscribed in an n x n map (cached; never modified)."""
    with torch.inference_mode(False):
        r = torch.linspace(-1.0, 1.0, n, device=device)
        return ((r[None, :] ** 2 + r[:, None] ** 2) <= 1.0).float()


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
        xf = x.flatten(2)                                         # (B, D, N)
        logits = torch.matmul(self.assign.weight[:, :, 0, 0], xf) + self.assign.bias[:, None]
        a = F.softmax(logits, dim=1)                              # (B, K, N)
        if weight is not None:
            a = a * weight[:, None, :]
        vlad = torch.einsum("bkn,bdn->bkd", a, xf) - a.sum(2)[:, :, None] * self.centroids[None]
        vlad = F.normalize(vlad, dim=2).flatten(1)
        return F.normalize(vlad, dim=1)


class RotatedMaps:
    """Stride-4 encoder maps of image 0's rotations before group pooling, pooled on demand at points.

    ``maps`` (B, 4, q, C, h, w): rotation (quarter turn m, base q_i) as the encoder produced it;
    ``back`` (q-1,) the angles turning base rotations 1.. back. ``at(gx, gy)`` equals the dense pooled
    map (``ReinNet._pool_quarter``) at grid nodes given in normalised coordinates (align_corners).
    """

    def __init__(self, maps: torch.Tensor, back: tuple):
        self.maps, self.back = maps, back
        self.shape = (maps.shape[0], maps.shape[3], maps.shape[4], maps.shape[5])
        self.dtype = maps.dtype
        q = maps.shape[2]
        # where map (m, k) is sampled for the pooled value at p: p turned by base angle k
        # (affine_grid of the dense back-rotation: [[cos a, sin a], [-sin a, cos a]] p for a = -back)
        # and then back by m quarter turns (sampling rot90(f, m) at p is sampling f at J^m p)
        J = np.array([[0.0, -1.0], [1.0, 0.0]])
        turns = [np.eye(2)] + [np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
                               for a in back]
        self._M = np.stack([np.linalg.matrix_power(J, m) @ turns[k] for m in range(4) for k in range(q)])

    def at(self, gx: np.ndarray, gy: np.ndarray) -> torch.Tensor:
        """(C, U) pooled features of image 0 at U grid nodes (normalised x, y in -1..1, on the grid)."""
        g = np.stack([np.asarray(gx, np.float64), np.asarray(gy, np.float64)])      # (2, U)
        grid = torch.from_numpy((self._M @ g).transpose(0, 2, 1).astype(np.float32))[:, None]   # (4q, 1, U, 2)
        vals = F.grid_sample(self.maps[0].flatten(0, 1), grid.to(self.dtype), mode="bilinear", align_corners=True)
        return vals[:, :, 0].amax(0)                                             # (C, U)


class ReinNet(nn.Module):
    """Rotation-equivariant encoder + NetVLAD. ``forward(x (B,1,S,S)) -> (g (B,G), local (B,128,S/4,S/4))``.

    In eval mode the encoder runs with BatchNorm folded into the convolutions, channels-last (built
    lazily, rebuilt whenever a parameter or statistic changes); :meth:`encode` + :meth:`local_at`
    give the global descriptor and the local descriptors at given pixels without the dense local map.
    """

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
        self._fused = None            # (key, _InferenceEncoder) for eval mode
        self.bf16 = False             # eval-mode encoder in bfloat16 where the CPU has it natively

    @property
    def global_dim(self) -> int:
        return self.pca_dim if int(self.pca_fitted) else self.vlad.centroids.numel()

    def _disc(self, n: int, device) -> torch.Tensor:
        return _disc_mask(n, torch.device(device))

    def _encoder_key(self) -> tuple | None:
        """Identity and version of every encoder parameter/statistic (None: not trackable)."""
        try:
            return tuple((t.data_ptr(), t._version) for m in (self.stage1, self.stage2, self.stage3)
                         for t in list(m.parameters()) + list(m.buffers()))
        except RuntimeError:          # tensors created under inference_mode carry no version
            return None

    def _encode(self, x: torch.Tensor, executor=None, worker_share: float = 0.375) -> tuple[torch.Tensor, torch.Tensor]:
        """Shared encoder on (N, 1, S, S): (N, w2, S/4, S/4) and (N, 128, S/8, S/8).

        With ``executor`` (a one-thread ``concurrent.futures`` pool; inference only) its thread
        encodes the first ``worker_share`` of the N images while the calling thread encodes the rest
        (convolutions release the GIL, so on two cores the halves overlap).
        """
        if self.training or torch.is_grad_enabled():
            f2 = self.stage2(self.stage1(x))
            return f2, self.stage3(f2)
        key = (self._encoder_key(), bool(self.bf16) and bf16_native())
        if self._fused is None or key[0] is None or self._fused[0] != key:
            self._fused = (key, _InferenceEncoder(self, key[1]))
        enc = self._fused[1]
        k = int(round(len(x) * worker_share)) if executor is not None else 0
        if not 0 < k < len(x):
            return enc(x)
        job = executor.submit(torch.inference_mode()(enc), x[:k])
        f2b, f3b = enc(x[k:])
        f2a, f3a = job.result()
        return torch.cat([f2a, f2b]), torch.cat([f3a, f3b])

    def features(self, x: torch.Tensor, dense_f2: bool = True, executor=None):
        """Group-pooled equivariant maps: (B, w2, S/4, S/4) and (B, 128, S/8, S/8).

        Rotation k (angle k*360/R) is ``rot90`` of one of the R/4 base rotations in [0, 90) deg, so
        only those go through ``grid_sample`` (in and back); quarter turns are exact permutations.
        ``dense_f2=False`` (R a multiple of 4) returns the stride-4 maps unpooled, as :class:`RotatedMaps`
        that :meth:`local_at` pools only where it samples. ``executor``: see :meth:`_encode`.
        """
        B, _, S, _ = x.shape
        R = self.num_rotations
        x = x * self._disc(S, x.device)
        if R % 4:
            angles = torch.arange(R, dtype=x.dtype, device=x.device) * (2 * math.pi / R)
            xr = rotate_images(x.repeat_interleave(R, 0), angles.repeat(B))
            f2, f3 = self._encode(xr, executor)
            back = (-angles).repeat(B)
            return (rotate_images(f2, back).unflatten(0, (B, R)).amax(1),
                    rotate_images(f3, back).unflatten(0, (B, R)).amax(1))
        q = R // 4
        base = tuple(k * (2 * math.pi / R) for k in range(1, q))       # base rotations in (0, 90) deg
        xb = [x[:, None]]
        if q > 1:
            xb.append(_rotate_fixed(x.repeat_interleave(q - 1, 0), base).unflatten(0, (B, q - 1)))
        xb = torch.cat(xb, 1)                                                  # (B, q, 1, S, S)
        xr = torch.stack([torch.rot90(xb, -m, dims=(3, 4)) for m in range(4)], 1)  # (B, 4, q, 1, S, S)
        f2, f3 = self._encode(xr.flatten(0, 2), executor)
        back = tuple(-a for a in base)
        if not dense_f2:
            return RotatedMaps(f2.unflatten(0, (B, 4, q)), back), self._pool_quarter(f3, B, q, back)
        return self._pool_quarter(f2, B, q, back), self._pool_quarter(f3, B, q, back)

    @staticmethod
    def _pool_quarter(f: torch.Tensor, B: int, q: int, back: tuple) -> torch.Tensor:
        """(B*4*q, C, h, w) maps of rotations (quarter turn m, base q_i) -> (B, C, h, w) turned back, max-pooled."""
        f = f.unflatten(0, (B, 4, q))
        out = f[:, 0, 0]
        for m in range(1, 4):                         # quarter turns: exact permutations, as views
            out = torch.maximum(out, torch.rot90(f[:, m, 0], m, dims=(2, 3)))
        if q > 1:
            # rot90 is an exact permutation of the grid, so turning back by m quarter turns and then
            # by a base angle is one bilinear rotation by their sum (no stacked rot90 copies)
            g = f[:, :, 1:].transpose(1, 2).flatten(0, 2)                      # (B*(q-1)*4, C, h, w)
            g = _rotate_fixed(g, tuple(a - m * (math.pi / 2) for a in back for m in range(4)))
            out = torch.maximum(out, g.unflatten(0, (B, (q - 1) * 4)).amax(1))
        return out

    def encode(self, x: torch.Tensor, dense_f2: bool = True):
        """(g (B, G), f2 (B, w2, S/4, S/4), f3 (B, 128, S/8, S/8)): global descriptor and pooled maps
        (f2 as :class:`RotatedMaps` with ``dense_f2=False``: enough for :meth:`local_at`, cheaper)."""
        f2, f3 = self.features(x, dense_f2)
        return self.global_descriptor(f3), f2, f3

    def global_descriptor(self, f3: torch.Tensor) -> torch.Tensor:
        """(B, G) global descriptors from the pooled stride-8 maps (B, 128, S/8, S/8): NetVLAD over
        the disc, then the PCA projection when fitted, L2-normalised."""
        disc = self._disc(f3.shape[-1], f3.device).flatten()[None].expand(f3.shape[0], -1)
        g = self.vlad(f3, disc)
        if int(self.pca_fitted):
            g = F.normalize((g - self.pca_mean) @ self.pca_matrix.T, dim=1)
        return g

    def local_map(self, f2: torch.Tensor, f3: torch.Tensor) -> torch.Tensor:
        """Dense L2-normalised local features (B, 128, S/4, S/4) from the pooled maps."""
        up = F.interpolate(f3, size=f2.shape[-2:], mode="bilinear", align_corners=True)
        return F.normalize(self.local_head(torch.cat([f2, up], 1)), dim=1)

    def forward(self, x: torch.Tensor):
        g, f2, f3 = self.encode(x)
        return g, self.local_map(f2, f3)

    def local_at(self, f2: torch.Tensor, f3: torch.Tensor, uv: np.ndarray, image_size: int) -> np.ndarray:
        """(K, 128) float32 local descriptors at (K, 2) image pixels (u, v) of image 0, without the dense map.

        Equal (to float rounding) to ``sample_local(local_map(f2, f3), uv, image_size)``: the head is
        evaluated only at the stride-4 grid nodes around the pixels, then bilinearly interpolated.
        The index arithmetic is numpy (a few dozen tiny torch ops cost more than the sampling).
        """
        if len(uv) == 0:
            return np.zeros((0, self.local_head.out_channels), np.float32)
        h, w = f2.shape[-2:]
        c = np.asarray(uv, np.float64).reshape(-1, 2) * ((w - 1) / (image_size - 1))
        c0 = np.clip(np.floor(c), 0, w - 1)
        frac = c - c0
        c0 = c0.astype(np.int64)
        du, dv = np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1])                # the 4 bilinear corners
        u, v = c0[:, :1] + du, c0[:, 1:] + dv                                  # (K, 4)
        wts = (np.where(du, frac[:, :1], 1 - frac[:, :1]) * np.where(dv, frac[:, 1:], 1 - frac[:, 1:])
               * ((u < w) & (v < h)))
        nodes = np.minimum(v, h - 1) * w + np.minimum(u, w - 1)
        uniq, inv = np.unique(nodes, return_inverse=True)
        gx = (uniq % w) * (2.0 / (w - 1)) - 1.0 if w > 1 else np.zeros(len(uniq))
        gy = (uniq // w) * (2.0 / (h - 1)) - 1.0 if h > 1 else np.zeros(len(uniq))
        grid = torch.from_numpy(np.stack([gx, gy], 1).astype(np.float32))[None, None]   # (1, 1, U, 2)
        up = F.grid_sample(f3[:1], grid.to(f3.dtype), mode="bilinear", align_corners=True)[0, :, 0]   # (128, U)
        a2 = f2.at(gx, gy) if isinstance(f2, RotatedMaps) else f2[0].flatten(1)[:, torch.from_numpy(uniq)]
        W = self.local_head.weight[:, :, 0, 0]
        loc = F.normalize(torch.addmm(self.local_head.bias[:, None], W, torch.cat([a2, up], 0)), dim=0)  # (128, U)
        d = loc.numpy().T[inv.reshape(-1, 4)]                                  # (K, 4, 128)
        d = np.einsum("kc,kcd->kd", wts.astype(np.float32), d)
        return (d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def fit_pca(self, vlads: np.ndarray, whiten_power: float = 0.0, eps_rel: float = 0.01) -> None:
        """Fit the PCA projection on (N, K*D) raw NetVLAD descriptors (N >= pca_dim advisable).

        ``whiten_power`` p scales component k by ``(sigma_k + eps)^-p`` (sigma_k its standard deviation,
        eps = ``eps_rel`` * sigma_0): 0 is plain PCA, 1 full whitening, between them partial whitening.
        """
        v = torch.as_tensor(vlads, dtype=torch.float32)
        mean = v.mean(0)
        _, S, Vt = torch.linalg.svd(v - mean, full_matrices=False)
        k = min(self.pca_dim, Vt.shape[0])
        M = torch.zeros(self.pca_dim, v.shape[1])
        M[:k] = Vt[:k]
        if whiten_power:
            sd = S[:k] / math.sqrt(max(len(v) - 1, 1))
            M[:k] *= ((sd + eps_rel * sd[0]) / sd[0]).pow(-whiten_power)[:, None]
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
            net.bf16 = bool(getattr(cfg, "bf16", False))
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
    net.bf16 = bool(getattr(cfg, "bf16", False))
    net.weights_path = p
    return net
