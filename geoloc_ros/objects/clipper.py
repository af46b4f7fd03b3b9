"""Consistency graph and CLIPPER densest-subgraph solver (after Lusk et al., ICRA 2021; ROMAN 2024).

Data association as a graph problem: every candidate association ``a = (i, j)`` (object ``i`` of
view 1, object ``j`` of view 2) is a node; two nodes are linked with weight ``M[a, b]`` in (0, 1]
when they are geometrically consistent (their pairwise invariant agrees in both views). The
inlier set is a dense cluster: CLIPPER relaxes the penalised densest-subgraph problem

    max_u  u^T (M + I) u - d u^T (1 1^T - C - I) u    s.t. ||u|| = 1, u >= 0

(``C`` the binary pattern of ``M``: an active constraint where it is 0), by projected gradient
ascent with backtracking on the sphere, a homotopy that raises the penalty ``d`` until no
inconsistent pair is active, and rounding to the ``round(F)`` largest entries of ``u``.

Everything is vectorised with numpy / scipy.sparse: affinities of all m (m-1)/2 pairs are built
as (m, m) arrays without a Python loop over pairs.

Affinities:
- :func:`euclidean_affinity`: the original CLIPPER invariant (3D distance) - used to check the
  solver against the C++ reference outputs, and by the "plain CLIPPER" baseline.
- :func:`gravity_affinity`: ROMAN's gravity-aware invariant (horizontal distance and signed
  height difference), fused with per-candidate shape/appearance scores as
  ``(pair * s_i * s_j) ** (1/3)``.
"""
from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

__all__ = ["SolverParams", "Solution", "euclidean_affinity", "gravity_affinity", "fuse_affinity",
           "all_to_all", "solve", "top_k_indices", "associate"]


@dataclass
class SolverParams:
    """Parameters of the projected gradient ascent (defaults of CLIPPER v0.2.4)."""
    tol_u: float = 1e-8        # stop an inner loop when ||u_new - u|| < tol_u
    tol_F: float = 1e-9        # ... or when |F_new - F| < tol_F
    maxiniters: int = 200      # gradient steps per penalty value d
    maxoliters: int = 1000     # penalty (homotopy) steps
    beta: float = 0.25         # backtracking step reduction
    maxlsiters: int = 99       # line-search iterations per gradient step
    eps: float = 1e-9          # numerical zero
    affinityeps: float = 1e-4  # affinities at or below this are dropped (sparsity)
    rescale_u0: bool = True    # one power-method step on u0 first


@dataclass
class Solution:
    """Result of :func:`solve`: selected node indices (into the candidate list) and diagnostics."""
    nodes: np.ndarray                 # (k,) int, sorted by decreasing u
    u: np.ndarray                     # (m,) final characteristic vector
    score: float                      # final objective F (~ density x size of the cluster)
    ifinal: int                       # outer (penalty) iterations used
    u0: np.ndarray | None = None
    solve_s: float = 0.0
    info: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# candidate associations and affinities
# ----------------------------------------------------------------------------------------------
def all_to_all(n1: int, n2: int) -> np.ndarray:
    """(n1*n2, 2) int array of every association (i, j), i in [0, n1), j in [0, n2)."""
    i, j = np.meshgrid(np.arange(n1), np.arange(n2), indexing="ij")
    return np.stack([i.ravel(), j.ravel()], axis=1).astype(np.int64)


def _distinct_mask(A: np.ndarray) -> np.ndarray:
    """(m, m) bool: True where associations a and b share no object (one-to-one constraint)."""
    a0, a1 = A[:, 0], A[:, 1]
    return (a0[:, None] != a0[None, :]) & (a1[:, None] != a1[None, :])


def _to_sparse(values, keep: np.ndarray) -> sp.csr_matrix:
    """Symmetric CSR matrix from a dense (m, m) bool ``keep``; ``values(r, c)`` gives the entries
    at the kept index arrays (so the kernel is only evaluated where needed); zero diagonal."""
    np.fill_diagonal(keep, False)
    r, c = np.nonzero(keep)
    return sp.csr_matrix((values(r, c), (r, c)), shape=keep.shape)


def euclidean_affinity(P1: np.ndarray, P2: np.ndarray, A: np.ndarray, sigma: float, eps: float,
                       mindist: float = 0.0, affinityeps: float = 1e-4) -> sp.csr_matrix:
    """CLIPPER's Euclidean-distance invariant for candidate associations ``A``.

    P1 (n1, 3), P2 (n2, 3) points in m; A (m, 2) int. For a pair of candidates (a, b):
    ``d = | |p1[a0]-p1[b0]| - |p2[a1]-p2[b1]| |``, score ``exp(-0.5 d^2 / sigma^2)`` when
    ``d < eps`` (else 0), zero when they share an object or a distance is under ``mindist``.
    Returns the symmetric (m, m) affinity with zero diagonal (the identity is implicit).
    """
    A = np.asarray(A, np.int64)
    X1 = np.asarray(P1, float)[A[:, 0]]
    X2 = np.asarray(P2, float)[A[:, 1]]
    l1 = _pdist(X1)
    l2 = _pdist(X2)
    c = np.abs(l1 - l2)
    keep = (c < eps) & _distinct_mask(A)
    if mindist > 0:
        keep &= (l1 >= mindist) & (l2 >= mindist)
    # exp(-0.5 c^2/sigma^2) > affinityeps  <=>  c^2 < -2 sigma^2 log(affinityeps)
    if affinityeps > 0:
        keep &= c * c < -2.0 * sigma * sigma * np.log(affinityeps)
    return _to_sparse(lambda r, k: np.exp(-0.5 * c[r, k] ** 2 / (sigma * sigma)), keep)


def _pdist(X: np.ndarray) -> np.ndarray:
    """(m, m) Euclidean distances between rows of X (m, d) - squared-norm trick, clamped at 0."""
    sq = np.einsum("ij,ij->i", X, X)
    D2 = sq[:, None] + sq[None, :] - 2.0 * (X @ X.T)
    np.maximum(D2, 0.0, out=D2)
    return np.sqrt(D2, out=D2)


def gravity_affinity(P1: np.ndarray, P2: np.ndarray, A: np.ndarray, sigma: float, eps: float,
                     mindist: float = 0.0, single: np.ndarray | None = None,
                     affinityeps: float = 1e-4) -> sp.csr_matrix:
    """ROMAN's gravity-aware invariant, fused with per-candidate scores.

    Both views are gravity-aligned (z up), so a pair of candidates must agree on the horizontal
    distance ``|dxy1 - dxy2|`` and the signed height difference ``|dz1 - dz2|`` of its two
    objects; each above ``eps`` is a hard zero, otherwise ``exp(-0.5 (cxy^2 + cz^2) / sigma^2)``.
    Pairs closer than ``mindist`` (3D) in either view, or sharing an object, are zero.
    ``single`` (m,) in [0, 1] are per-candidate similarity scores: the fused affinity is
    ``(pair * s_a * s_b) ** (1/3)`` (see :func:`fuse_affinity`).
    """
    A = np.asarray(A, np.int64)
    X1 = np.asarray(P1, float)[A[:, 0]]
    X2 = np.asarray(P2, float)[A[:, 1]]
    dxy1 = _pdist(X1[:, :2])
    dxy2 = _pdist(X2[:, :2])
    z1, z2 = X1[:, 2], X2[:, 2]
    cz = np.abs((z1[:, None] - z1[None, :]) - (z2[:, None] - z2[None, :]))
    cxy = np.abs(dxy1 - dxy2)
    keep = (cxy <= eps) & (cz <= eps) & _distinct_mask(A)
    if mindist > 0:
        d1 = np.sqrt(dxy1 ** 2 + (z1[:, None] - z1[None, :]) ** 2)
        d2 = np.sqrt(dxy2 ** 2 + (z2[:, None] - z2[None, :]) ** 2)
        keep &= (d1 >= mindist) & (d2 >= mindist)
    s = None if single is None else np.clip(np.asarray(single, float), 0.0, 1.0)

    def values(r, k):
        w = np.exp(-0.5 * (cxy[r, k] ** 2 + cz[r, k] ** 2) / (sigma * sigma))
        return w if s is None else np.cbrt(w * s[r] * s[k])

    if s is not None:
        keep &= (s[:, None] > 0) & (s[None, :] > 0)
    M = _to_sparse(values, keep)
    if affinityeps > 0:
        M.data[M.data <= affinityeps] = 0.0
        M.eliminate_zeros()
    return M


def fuse_affinity(W: np.ndarray, single: np.ndarray) -> np.ndarray:
    """(pair x s_a x s_b)^(1/3) for a dense (m, m) pair affinity and per-candidate scores (m,)."""
    s = np.clip(np.asarray(single, float), 0.0, 1.0)
    return np.cbrt(W * s[:, None] * s[None, :])


# ----------------------------------------------------------------------------------------------
# solver
# ----------------------------------------------------------------------------------------------
def top_k_indices(x: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest entries of x, largest first; ties resolved like CLIPPER's
    min-heap of (value, index) pairs (an entry replaces the heap top only when strictly larger)."""
    x = np.asarray(x, float)
    n = x.size
    k = int(max(0, min(k, n)))
    if k == 0:
        return np.zeros(0, np.int64)
    if k < n:
        part = np.partition(x, n - k)
        kth = part[n - k]
        n_above = int(np.count_nonzero(x > kth))
        n_equal = int(np.count_nonzero(x == kth))
        if n_above + n_equal > k:  # ties at the boundary: replay the heap exactly
            heap: list[tuple[float, int]] = []
            for i, v in enumerate(x.tolist()):
                if len(heap) < k:
                    heapq.heappush(heap, (v, i))
                elif heap[0][0] < v:
                    heapq.heapreplace(heap, (v, i))
            return np.array([i for _, i in sorted(heap, reverse=True)], np.int64)
        idx = np.argpartition(x, n - k)[n - k:]
    else:
        idx = np.arange(n)
    order = np.lexsort((-idx, -x[idx]))  # decreasing value, then decreasing index (heap pop order)
    return idx[order].astype(np.int64)


def solve(M: sp.spmatrix, u0: np.ndarray | None = None, params: SolverParams | None = None,
          seed: int = 0) -> Solution:
    """CLIPPER's penalised densest-subgraph relaxation on affinity ``M``.

    M: (m, m) symmetric sparse affinity with zero diagonal (the identity is implicit); its
    non-zero pattern is the consistency graph ``C``. u0 (m,) starting vector (uniform [0, 1)
    from ``seed`` when None). Returns the ``round(F)`` nodes with the largest ``u``.
    """
    p = params or SolverParams()
    t0 = time.perf_counter()
    M = sp.csr_matrix(M)
    m = M.shape[0]
    if m == 0:
        return Solution(np.zeros(0, np.int64), np.zeros(0), 0.0, 0, u0, 0.0)
    if u0 is None:
        u0 = np.random.default_rng(seed).random(m)
    u0 = np.asarray(u0, float)
    # one pass over the graph gives both M u and C u (C = the pattern of M): the complex
    # matrix M + iC, sharing M's index arrays; (a + ib) x = a x + i b x exactly in IEEE arithmetic
    MC = sp.csr_matrix((M.data + 1j, M.indices, M.indptr), shape=M.shape, copy=False)

    def products(u):
        y = MC @ u
        return y.real, y.imag        # M u, C u

    def grad(u, Mu, Cu, d):
        # (M + I) u - d (1 1^T - C - I) u
        return Mu + u - d * (u.sum() - Cu - u)

    u = (M @ u0 + u0) if p.rescale_u0 else u0.copy()
    nrm = np.linalg.norm(u)
    if not np.isfinite(nrm) or nrm <= 0:
        return Solution(np.zeros(0, np.int64), np.zeros(m), 0.0, 0, u0, time.perf_counter() - t0,
                        {"reason": "degenerate start vector"})
    u = u / nrm

    d = 0.0
    Mu, Cu = products(u)             # always the products of the current u
    Cbu = u.sum() - Cu - u
    idx = (Cbu > p.eps) & (u > p.eps)
    if idx.any():
        d = float(np.mean((Mu[idx] + u[idx]) / Cbu[idx]))

    F = 0.0
    i = 0
    n_steps = 0
    for i in range(p.maxoliters):
        gradF = grad(u, Mu, Cu, d)
        F = float(u @ gradF)
        for _ in range(p.maxiniters):
            alpha = 1.0
            for _ in range(p.maxlsiters):
                unew = u + alpha * gradF
                np.maximum(unew, 0.0, out=unew)
                nn = np.linalg.norm(unew)
                unew = unew / nn if nn > 0 else unew
                Mun, Cun = products(unew)
                gradFnew = grad(unew, Mun, Cun, d)
                Fnew = float(unew @ gradFnew)
                deltaF = Fnew - F
                n_steps += 1
                if deltaF < -p.eps:
                    alpha *= p.beta
                else:
                    break
            deltau = float(np.linalg.norm(unew - u))
            F, u, gradF, Mu, Cu = Fnew, unew, gradFnew, Mun, Cun
            if deltau < p.tol_u or abs(deltaF) < p.tol_F:
                break
        Cbu = u.sum() - Cu - u
        idx = (Cbu > p.eps) & (u > p.eps)
        if idx.any():
            d += float(np.mean(np.abs((Mu[idx] + u[idx]) / Cbu[idx])))
        else:
            break
    omega = int(np.round(F)) if np.isfinite(F) else 0
    nodes = top_k_indices(u, omega)
    return Solution(nodes, u, F, i, u0, time.perf_counter() - t0, {"line_search_steps": n_steps})


def associate(M: sp.spmatrix, A: np.ndarray, u0: np.ndarray | None = None,
              params: SolverParams | None = None, seed: int = 0) -> tuple[np.ndarray, Solution]:
    """Selected associations (k, 2) of ``A`` (m, 2) and the solver's :class:`Solution`.

    Nodes whose ``u`` is zero (rounding picked more than the support) are dropped. The affinity
    already zeroes pairs that share an object, but rounding can still pick two such nodes, so a
    final pass enforces one-to-one (largest ``u`` first).
    """
    sol = solve(M, u0, params, seed)
    nodes = sol.nodes[sol.u[sol.nodes] > 0] if sol.nodes.size else sol.nodes
    A = np.asarray(A)
    seen1, seen2, keep = set(), set(), []
    for n in nodes.tolist():
        a, b = int(A[n, 0]), int(A[n, 1])
        if a in seen1 or b in seen2:
            continue
        seen1.add(a)
        seen2.add(b)
        keep.append(n)
    sol.info["kept_nodes"] = np.array(keep, np.int64)
    return A[np.array(keep, np.int64)].reshape(-1, 2), sol
