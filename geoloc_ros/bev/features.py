"""BEV image -> what the map and the queries keep: global descriptor, keypoints, local descriptors."""
from __future__ import annotations

import functools
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from geoloc_ros.bev.image import pixels_to_metres, scan_to_bev
from geoloc_ros.bev.pose import fast_keypoints
from geoloc_ros.bev.rein import ReinNet

__all__ = ["Features", "extract_features", "features_from_scan"]


@dataclass
class Features:
    """global_desc (G,) float32 unit norm; kp_xy_m (K, 2) base-frame metres; kp_desc (K, 128) float32."""
    global_desc: np.ndarray
    kp_xy_m: np.ndarray
    kp_desc: np.ndarray
    timings_ms: dict = field(default_factory=dict)


@functools.lru_cache(maxsize=1)
def _worker_pool() -> ThreadPoolExecutor:
    """The one worker thread every query with ``query_threads`` 2 shares its work with."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="geoloc-bev-query")


@torch.inference_mode()
def extract_features(net: ReinNet, img: np.ndarray, cfg) -> Features:
    """Run REIN on one (S, S) 0..255 BEV image; FAST keypoints and their local descriptors.

    The local descriptors are those of the dense map (``sample_local(net(x)[1], uv)``), computed
    only around the keypoints (:meth:`ReinNet.local_at`).

    ``cfg.query_threads`` 2: a worker thread finds the keypoints and encodes 3 of the 8 rotations
    while this one encodes the other 5, then samples the local descriptors while this one computes
    the global descriptor; the results are the same as with 1 (all on this thread). The stages then
    overlap: ``timings_ms['network']`` is until the global descriptor, ``'keypoints'`` what is left.
    """
    t0 = time.perf_counter()
    x = torch.from_numpy(np.ascontiguousarray(img, np.float32) / 255.0)[None, None]
    dense_f2 = net.num_rotations % 4 != 0
    pool = _worker_pool() if cfg.query_threads > 1 else None
    if pool is None:
        g, f2, f3 = net.encode(x, dense_f2=dense_f2)
        t1 = time.perf_counter()
        uv = fast_keypoints(img, cfg.fast_threshold, cfg.max_keypoints)
        d = net.local_at(f2, f3, uv, img.shape[0])
    else:
        uv_job = pool.submit(fast_keypoints, img, cfg.fast_threshold, cfg.max_keypoints)
        f2, f3 = net.features(x, dense_f2, executor=pool)       # queued behind the keypoints
        d_job = pool.submit(torch.inference_mode()(net.local_at), f2, f3, uv_job.result(), img.shape[0])
        g = net.global_descriptor(f3)
        t1 = time.perf_counter()
        uv, d = uv_job.result(), d_job.result()
    t2 = time.perf_counter()
    return Features(g[0].numpy().astype(np.float32), pixels_to_metres(uv, cfg).astype(np.float32), d,
                    {"network": (t1 - t0) * 1e3, "keypoints": (t2 - t1) * 1e3})


def features_from_scan(net: ReinNet, scan, cfg) -> Features:
    """ScanEvent -> Features (BEV image time included in ``timings_ms['bev_image']``)."""
    t0 = time.perf_counter()
    img = scan_to_bev(scan, cfg)
    t_img = (time.perf_counter() - t0) * 1e3
    f = extract_features(net, img, cfg)
    f.timings_ms["bev_image"] = t_img
    return f
