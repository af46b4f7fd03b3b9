"""Train REIN on simulated scans (``geoloc train``), CPU, minutes.

Steps of :func:`train`:

1. data: several ``geoloc_ros.sim`` worlds (seeds), places on their roads, 3 scans per place at
   random sideways/along offsets and ANY heading (the rotation augmentation), half of them in the
   changed world (moved cars/bins); three LiDAR patterns; BEV images cached as uint8;
2. NetVLAD k-means initialisation on the encoder's features of training images (faiss k-means);
3. triplets: anchor, a positive within ``pos_m`` (5 m) randomly rotated in the image plane, and
   the hardest of 10 negatives beyond ``neg_m`` (7 m) mined against a descriptor cache refreshed
   every ``refresh_steps``; triplet margin loss (margin 0.3) on the global descriptors plus an
   InfoNCE loss on local descriptors at corresponding keypoints (known relative pose);
4. PCA of the NetVLAD descriptors to 256-D fitted on the training images, whitened (``pca_whiten``:
   on the benchmark world whitening lifted recall@1 on lateral revisits from 0.43 to 0.83);
5. recall@1 on a held-out world (same / reverse / lateral revisits) -> the model card numbers.

Saves a plain state_dict (``torch.load(weights_only=True)``).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from geoloc_ros.bev.config import BevConfig
from geoloc_ros.bev.image import BevInputError, bev_image, image_size, metres_to_pixels, pixels_to_metres
from geoloc_ros.bev.pose import fast_keypoints
from geoloc_ros.bev.rein import ReinNet, bf16_native, rotate_images
from geoloc_ros.bev import simdata

__all__ = ["TrainConfig", "make_dataset", "train", "recall_on_world", "main"]

PATTERNS = {  # name -> (rings, azimuth step deg, min elevation deg, max elevation deg)
    "spin32": (32, 0.4, -25.0, 15.0),
    "spin64": (64, 0.3, -24.8, 2.0),     # HDL-64E / KITTI-like
    "dome40": (40, 0.5, -7.0, 52.0),     # MID-360-like field of view
}


@dataclass
class TrainConfig:
    seeds: list = field(default_factory=lambda: [1, 2, 3, 4, 5])
    places_per_world: int = 120
    scans_per_place: int = 3
    pos_m: float = 5.0
    neg_m: float = 7.0
    margin: float = 0.3
    negatives: int = 10
    batch: int = 3
    lr: float = 1e-3
    minutes: float = 20.0
    refresh_steps: int = 50
    cache_size: int = 300
    pca_samples: int = 2000
    pca_whiten: float = 1.0        # whitening power of the PCA (0 plain PCA, 1 full whitening)
    pca_eps: float = 0.01          # whitening regulariser, relative to the first component's deviation
    local_weight: float = 1.0
    threads: int = 2
    eval_seed: int = 99
    eval_queries: int = 40
    seed: int = 0
    hard_pos_frac: float = 0.5     # share of positives drawn from those >= hard_pos_m away (lateral-like)
    hard_pos_m: float = 2.0
    in_batch: bool = True          # the hardest negative may also be any far image of the batch
    lr_final: float = 0.1          # cosine decay of the learning rate to lr * lr_final over the budget
    checkpoint_steps: int = 0      # > 0: also save the weights (PCA not fitted) every this many steps
    bf16: bool = True              # where the CPU has native bfloat16 (AVX512-BF16/AMX): the training
    #                                forward pass under bfloat16 autocast (a step's forward + backward
    #                                ~1.85x faster) and mining with the bfloat16 inference encoder


def _images_from_poses(world, poses: np.ndarray, cfg: BevConfig, rng, patterns) -> np.ndarray:
    imgs = np.zeros((len(poses), image_size(cfg), image_size(cfg)), np.uint8)
    names = list(patterns)
    for i, T in enumerate(poses):
        rings, step, lo, hi = PATTERNS[names[int(rng.integers(len(names)))]]
        pts = simdata.cast_scan(world, T, rng, simdata.lidar_directions(rings, step, lo, hi))
        pts = pts + np.array([0.0, 0.0, 1.0], np.float32)   # LiDAR 1 m above the levelled base
        try:
            imgs[i] = np.rint(bev_image(pts, cfg)).astype(np.uint8)
        except BevInputError:
            pass
    return imgs


def make_dataset(tc: TrainConfig, cfg: BevConfig, log=print):
    """(images (N, S, S) uint8, poses (N, 4, 4), world (N,)) of clustered places on several worlds."""
    from geoloc_ros.sim.world import make_world
    rng = np.random.default_rng(tc.seed)
    I, P, W = [], [], []
    for s in tc.seeds:
        world = make_world(s)
        changed = world.move_objects(0.3, seed=s)
        centres = simdata.random_road_poses(world, tc.places_per_world, rng, max_lateral_m=2.0)
        poses = []
        for T in centres:
            for _ in range(tc.scans_per_place):
                d = rng.uniform(-2.5, 2.5, 2)
                poses.append(simdata._pose(world, T[0, 3] + d[0], T[1, 3] + d[1], rng.uniform(-np.pi, np.pi)))
        poses = np.array(poses)
        half = len(poses) // 2
        I.append(_images_from_poses(world, poses[:half], cfg, rng, PATTERNS))
        I.append(_images_from_poses(changed, poses[half:], cfg, rng, PATTERNS))
        P.append(poses)
        W.append(np.full(len(poses), s))
        log(f"  world {s}: {len(poses)} scans")
    return np.concatenate(I), np.concatenate(P), np.concatenate(W)


def _to_tensor(imgs_u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(imgs_u8.astype(np.float32) / 255.0)[:, None]


@torch.no_grad()
def _descriptors(net: ReinNet, imgs: np.ndarray, bs: int = 16) -> torch.Tensor:
    net.eval()
    out = [net(_to_tensor(imgs[i:i + bs]))[0] for i in range(0, len(imgs), bs)]
    return torch.cat(out)


@torch.no_grad()
def _kmeans_init(net: ReinNet, imgs: np.ndarray, rng, n_img: int = 150) -> None:
    import faiss
    net.eval()
    sel = rng.choice(len(imgs), min(n_img, len(imgs)), replace=False)
    feats = []
    for i in range(0, len(sel), 16):
        _, f3 = net.features(_to_tensor(imgs[sel[i:i + 16]]))
        f = F.normalize(f3, dim=1).permute(0, 2, 3, 1).reshape(-1, f3.shape[1])
        feats.append(f.numpy())
    X = np.ascontiguousarray(np.concatenate(feats).astype(np.float32))
    X = X[rng.choice(len(X), min(len(X), 60000), replace=False)]
    km = faiss.Kmeans(X.shape[1], net.vlad.centroids.shape[0], niter=20, seed=1, verbose=False)
    km.train(X)
    net.vlad.init_from_kmeans(km.centroids)


def _se2(T: np.ndarray):
    return T[0, 3], T[1, 3], math.atan2(T[1, 0], T[0, 0])


def _local_loss(net_local_a, net_local_p, img_a: np.ndarray, T_wa, T_wp, rot_p: float, cfg: BevConfig,
                n_max: int = 128, tau: float = 0.07) -> torch.Tensor | None:
    """InfoNCE between local descriptors at anchor keypoints and at their true pixels in the positive."""
    S = img_a.shape[0]
    uv = fast_keypoints(img_a.astype(np.float32), cfg.fast_threshold, n_max)
    if len(uv) < 8:
        return None
    xa = pixels_to_metres(uv, cfg)
    xa_, ya_, ta = _se2(T_wa)
    xp_, yp_, tp = _se2(T_wp)
    ca, sa = math.cos(ta), math.sin(ta)
    wx, wy = xa_ + ca * xa[:, 0] - sa * xa[:, 1], ya_ + sa * xa[:, 0] + ca * xa[:, 1]
    dx, dy = wx - xp_, wy - yp_
    cp, sp = math.cos(tp), math.sin(tp)
    px, py = cp * dx + sp * dy, -sp * dx + cp * dy
    cr, sr = math.cos(rot_p), math.sin(rot_p)
    xp = np.stack([cr * px - sr * py, sr * px + cr * py], 1)
    uvp = metres_to_pixels(xp, cfg)
    c = (S - 1) / 2
    ok = ((uvp - c) ** 2).sum(1) < (c - 4) ** 2
    if ok.sum() < 8:
        return None
    g = lambda loc, q: F.normalize(F.grid_sample(  # noqa: E731
        loc, torch.as_tensor(q * (2.0 / (S - 1)) - 1.0, dtype=torch.float32)[None, None],
        align_corners=True)[0, :, 0].T, dim=1)
    da, dp = g(net_local_a, uv[ok]), g(net_local_p, uvp[ok])
    logits = da @ dp.T / tau
    target = torch.arange(len(da))
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def _triplet_loss(g: torch.Tensor, a: np.ndarray, p: np.ndarray, n: np.ndarray, far: np.ndarray,
                  tc: TrainConfig) -> torch.Tensor:
    """Triplet margin loss of every anchor and every positive (as anchor) against its hardest negative
    among its mined negative and all batch images far from it; ``g`` (3B, G) is [anchors, positives, mined]."""
    B = len(a)
    ids = np.concatenate([a, p, n])
    d = torch.cdist(g, g)                                                       # (3B, 3B)
    out = []
    for k in range(2 * B):                       # rows 0..B-1 anchors, B..2B-1 positives
        other = k + B if k < B else k - B
        negs = np.nonzero(far[ids[k], ids] & far[ids[other], ids])[0]
        if not len(negs):
            continue
        dn = d[k, torch.as_tensor(negs)].min()
        out.append(F.relu(d[k, other] - dn + tc.margin))
    return torch.stack(out).mean() if out else g.sum() * 0.0


def recall_on_world(net: ReinNet, cfg: BevConfig, seed: int, n_queries: int, spacing_m: float = 2.0,
                    log=print, size_m: float = 200.0) -> dict:
    """recall@1 (positive within 5 m) of revisit queries against a map of one world's roads."""
    from geoloc_ros.sim.world import make_world
    rng = np.random.default_rng(seed)
    world = make_world(seed, size_m=size_m)
    changed = world.move_objects(0.2, seed=seed)
    mp = simdata.road_poses(world, spacing_m)
    mimg = _images_from_poses(world, mp, cfg, rng, ["spin32"])
    G = _descriptors(net, mimg).numpy()
    out = {}
    for kind in ("same", "reverse", "lateral"):
        qp = simdata.revisit_queries(changed, kind, n_queries, rng)
        Q = _descriptors(net, _images_from_poses(changed, qp, cfg, rng, ["spin32"])).numpy()
        best = (Q @ G.T).argmax(1)
        d = np.linalg.norm(mp[best, :2, 3] - qp[:, :2, 3], axis=1)
        out[kind] = float((d < 5.0).mean())
    log(f"  recall@1 on world {seed}: " + ", ".join(f"{k} {v:.2f}" for k, v in out.items()))
    return out


def train(tc: TrainConfig, out_path: str | Path, cfg: BevConfig | None = None, log=print,
          data_cache: str | Path | None = None, init: str | Path | None = None,
          prior_steps: int = 0) -> dict:
    """Train REIN and save its state_dict to ``out_path``; returns a summary (data, steps, recall)."""
    cfg = cfg or BevConfig()
    t0 = time.time()
    torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed)
    rng = np.random.default_rng(tc.seed)
    if data_cache and Path(data_cache).is_file():
        with np.load(data_cache, allow_pickle=False) as z:
            imgs, poses, worlds = z["imgs"], z["poses"], z["worlds"]
    else:
        log("generating training scans ...")
        imgs, poses, worlds = make_dataset(tc, cfg, log)
        if data_cache:
            np.savez(data_cache, imgs=imgs, poses=poses, worlds=worlds)
    N = len(imgs)
    xy = poses[:, :2, 3]
    same_world = worlds[:, None] == worlds[None, :]
    dist = np.linalg.norm(xy[:, None] - xy[None], axis=2)
    pos_mask = same_world & (dist < tc.pos_m) & ~np.eye(N, dtype=bool)
    far = ~same_world | (dist > tc.neg_m)
    anchors = np.nonzero(pos_mask.any(1))[0]
    log(f"  {N} scans, {len(anchors)} anchors with positives ({time.time() - t0:.0f} s)")
    net = ReinNet(num_rotations=cfg.num_rotations)
    use_bf16 = bool(tc.bf16) and bf16_native()
    net.bf16 = use_bf16
    log(f"  bfloat16 autocast: {'on' if use_bf16 else 'off (not native here)' if tc.bf16 else 'off'}")
    if init:      # continue from earlier weights (their PCA is refitted at the end)
        net.load_state_dict(torch.load(init, map_location="cpu", weights_only=True))
        with torch.no_grad():
            net.pca_fitted.fill_(0)
    else:
        _kmeans_init(net, imgs, rng)
    opt = torch.optim.Adam(net.parameters(), lr=tc.lr, weight_decay=1e-5)
    budget_s = tc.minutes * 60.0
    step, cache, losses = 0, None, []
    hard_pos = pos_mask & (dist >= tc.hard_pos_m)
    t_train = time.time()
    while time.time() - t_train < budget_s:
        frac = (time.time() - t_train) / max(budget_s, 1e-9)
        for grp in opt.param_groups:
            grp["lr"] = tc.lr * (tc.lr_final + (1 - tc.lr_final) * 0.5 * (1 + math.cos(math.pi * frac)))
        if cache is None or step % tc.refresh_steps == 0:   # descriptors of a random subset to mine in
            sub = rng.choice(N, min(tc.cache_size, N), replace=False)
            cache = _descriptors(net, imgs[sub])
        a = rng.choice(anchors, tc.batch, replace=False)
        p = np.array([rng.choice(np.nonzero(hard_pos[i] if hard_pos[i].any() and rng.random() < tc.hard_pos_frac
                                            else pos_mask[i])[0]) for i in a])
        ga = _descriptors(net, imgs[a])
        n = []
        for k, i in enumerate(a):
            cand = np.nonzero(far[i, sub])[0]
            cand = rng.choice(cand, min(tc.negatives, len(cand)), replace=False)
            n.append(sub[cand[int((cache[cand] @ ga[k]).argmax())]])
        n = np.array(n)
        net.train()
        rot = rng.uniform(-np.pi, np.pi, tc.batch)
        xa, xp, xn = _to_tensor(imgs[a]), _to_tensor(imgs[p]), _to_tensor(imgs[n])
        xp = rotate_images(xp, torch.as_tensor(rot, dtype=torch.float32))
        xn = rotate_images(xn, torch.as_tensor(rng.uniform(-np.pi, np.pi, tc.batch), dtype=torch.float32))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            g, loc = net(torch.cat([xa, xp, xn]))
        g, loc = g.float(), loc.float()
        B = tc.batch
        loss = _triplet_loss(g, a, p, n, far, tc) if tc.in_batch else \
            F.triplet_margin_loss(g[:B], g[B:2 * B], g[2 * B:], margin=tc.margin)
        ll = [_local_loss(loc[k:k + 1], loc[B + k:B + k + 1], imgs[a[k]], poses[a[k]], poses[p[k]],
                          float(rot[k]), cfg) for k in range(B)]
        ll = [x for x in ll if x is not None]
        if ll and tc.local_weight > 0:
            loss = loss + tc.local_weight * torch.stack(ll).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % 10 == 0:
            log(f"  step {step}: loss {np.mean(losses[-10:]):.3f} ({time.time() - t0:.0f} s)")
        if tc.checkpoint_steps and step % tc.checkpoint_steps == 0:   # for a later PCA refit (--minutes 0)
            ck = Path(out_path).with_suffix(f".step{step + prior_steps}.pt")
            ck.parent.mkdir(parents=True, exist_ok=True)
            torch.save({k: v.detach().clone() for k, v in net.state_dict().items()}, ck)
    log("fitting PCA ...")
    vl = _descriptors(net, imgs[rng.choice(N, min(N, tc.pca_samples), replace=False)]).numpy()
    net.fit_pca(vl, whiten_power=tc.pca_whiten, eps_rel=tc.pca_eps)
    net.eval()
    recall = recall_on_world(net, cfg, tc.eval_seed, tc.eval_queries, log=log)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().clone() for k, v in net.state_dict().items()}, out_path)
    step += prior_steps
    summary = {"scans": int(N), "worlds": list(tc.seeds), "steps": step, "batch": tc.batch,
               "triplets": step * tc.batch, "epochs": round(step * tc.batch / max(len(anchors), 1), 2),
               "final_loss": float(np.mean(losses[-25:])) if losses else None,
               "recall1_heldout": recall, "eval_world": tc.eval_seed, "minutes": (time.time() - t0) / 60}
    log(json.dumps(summary))
    return summary


def model_card(summary: dict, tc: TrainConfig) -> str:
    """Markdown model card for weights trained by :func:`train` (data, schedule, held-out recall)."""
    r = summary.get("recall1_heldout", {})
    return f"""# REIN BEV weights (geoloc_ros/data/rein.pt)

Rotation-equivariant BEV encoder + NetVLAD (after BEVPlace++), `geoloc_ros.bev.rein.ReinNet`:
8 rotations (45 deg) with grid_sample and group max-pooling, encoder 16-32-64 channels to stride 8,
128-D features, NetVLAD 64 clusters (k-means initialised on training features), PCA 8192 -> 256
(whitening power {tc.pca_whiten:g}, eps {tc.pca_eps:g}, fitted on {min(summary.get("scans") or 0, tc.pca_samples)} training scans),
local head 128-D at stride 4. Plain state_dict, `torch.load(weights_only=True)`.

- **Data**: simulated only (`geoloc_ros.sim.world.make_world`, seeds {summary.get("worlds")}), {summary.get("scans")} ray-cast
  scans: {tc.places_per_world} places per world on the road grid, {tc.scans_per_place} scans per place at +-2.5 m and any
  heading, half in the changed world (30 % of cars/bins moved); LiDAR patterns {", ".join(PATTERNS)}.
- **Loss**: triplet margin {tc.margin} on the global descriptor (positives < {tc.pos_m} m, hardest of {tc.negatives}
  negatives > {tc.neg_m} m mined in a descriptor cache of {tc.cache_size} scans refreshed every {tc.refresh_steps} steps, positives and
  negatives randomly rotated) + InfoNCE on local descriptors at FAST keypoints of the anchor and their true
  pixels in the positive (weight {tc.local_weight}).
- **Schedule**: Adam lr {tc.lr}, batch {tc.batch} triplets, {summary.get("steps")} steps ({summary.get("triplets")} triplets,
  {summary.get("epochs")} epochs over the anchors), {tc.minutes:g} min training budget on {tc.threads} CPU threads;
  whole run {summary.get("minutes", 0):.1f} min on a shared 2-core machine. Final loss {summary.get("final_loss")}.
- **Held-out recall@1** (world {summary.get("eval_world")}, map every 2 m, {tc.eval_queries} queries per kind, positive < 5 m):
  same {r.get("same")}, reverse {r.get("reverse")}, lateral {r.get("lateral")}.
- **Reproduce**: `geoloc train --out rein.pt --minutes {tc.minutes:g} --seeds {",".join(map(str, tc.seeds))}`.
- **Limits**: trained on a simulated town only; real-scan behaviour is checked by the tests on the
  KITTI and fast_gicp scans in ../shared/realdata, not trained on.
"""


def main(argv: list[str] | None = None) -> int:
    """``geoloc train [--out PATH] [--minutes M] [--seeds 1,2,3]``."""
    ap = argparse.ArgumentParser(prog="geoloc train", description="train the REIN BEV network on simulated scans (CPU)")
    ap.add_argument("--out", default="rein.pt", help="output weights file (state_dict)")
    ap.add_argument("--minutes", type=float, default=20.0, help="training time budget (data generation excluded)")
    ap.add_argument("--seeds", default="1,2,3,4,5", help="simulated worlds to train on")
    ap.add_argument("--places", type=int, default=120, help="places per world")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--summary", default="", help="write the training summary JSON here")
    ap.add_argument("--init", default="", help="continue training from these weights")
    ap.add_argument("--prior-steps", type=int, default=0, help="steps already done by --init (for the card)")
    ap.add_argument("--card", default="", help="write a markdown model card here")
    ap.add_argument("--data-cache", default="", help="npz of generated training images (reused when present)")
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (cosine-decayed to 0.1x)")
    ap.add_argument("--batch", type=int, default=3, help="triplets per step")
    ap.add_argument("--pca-whiten", type=float, default=1.0, help="PCA whitening power (0: plain PCA, 1: full)")
    ap.add_argument("--pca-samples", type=int, default=2000, help="training scans the PCA is fitted on")
    ap.add_argument("--pca-eps", type=float, default=0.01, help="whitening regulariser (share of the first deviation)")
    ap.add_argument("--lr-final", type=float, default=0.1, help="final learning rate as a share of --lr")
    ap.add_argument("--hard-pos-frac", type=float, default=0.5, help="share of positives >= 2 m from the anchor")
    ap.add_argument("--local-weight", type=float, default=1.0, help="weight of the local-descriptor InfoNCE loss")
    ap.add_argument("--checkpoint-steps", type=int, default=0, help="also save the weights every N steps")
    ap.add_argument("--eval-queries", type=int, default=40, help="held-out queries per revisit kind")
    ap.add_argument("--no-bf16", action="store_true", help="train in float32 even where bfloat16 is native")
    a = ap.parse_args(argv)
    tc = TrainConfig(seeds=[int(s) for s in a.seeds.split(",")], places_per_world=a.places,
                     minutes=a.minutes, threads=a.threads, lr=a.lr, batch=a.batch,
                     pca_whiten=a.pca_whiten, pca_samples=a.pca_samples, pca_eps=a.pca_eps,
                     lr_final=a.lr_final, hard_pos_frac=a.hard_pos_frac, local_weight=a.local_weight,
                     checkpoint_steps=a.checkpoint_steps, eval_queries=a.eval_queries,
                     bf16=not a.no_bf16)
    s = train(tc, a.out, data_cache=a.data_cache or None, init=a.init or None, prior_steps=a.prior_steps)
    if a.summary:
        Path(a.summary).write_text(json.dumps(s, indent=1))
    if a.card:
        Path(a.card).write_text(model_card(s, tc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
