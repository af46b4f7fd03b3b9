"""CLIPPER solver: same nodes as the original C++ from the same start, max-clique agreement,
vectorised affinity == the pairwise definition."""
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp

from geoloc_ros.objects import clipper

REF = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "clipper"
# a representative subset: both noise settings, both outlier rates, small and mid sizes
REF_FILES = ["s01_e02_o50_m100_r0", "s01_e02_o90_m200_r1", "s02_e06_o50_m200_r2",
             "s02_e06_o90_m100_r3", "s01_e02_o50_m500_r4", "s02_e06_o90_m500_r0"]


@pytest.mark.parametrize("name", REF_FILES)
def test_same_nodes_as_cpp_reference(name):
    f = REF / f"{name}.npz"
    if not f.is_file():
        pytest.skip(f"CLIPPER reference data missing: {f}")
    z = np.load(f, allow_pickle=False)
    M = clipper.euclidean_affinity(z["D1"].T, z["D2"].T, z["A"], float(z["sigma"]), float(z["eps"]))
    sol = clipper.solve(M, z["u0"])
    assert set(sol.nodes.tolist()) == set(z["nodes"].tolist())
    assert sol.score == pytest.approx(float(z["score"]), rel=1e-6)
    # and the selection is the inlier set the problem planted (precision 1, as the original)
    assert z["gt"][sol.nodes].all()


def test_affinity_matches_pairwise_definition():
    rng = np.random.default_rng(1)
    P1 = rng.uniform(0, 5, (8, 3))
    P2 = P1 @ np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1.0]]).T + 1.0 + rng.normal(0, 0.01, (8, 3))
    A = clipper.all_to_all(8, 8)
    sigma, eps, mind = 0.05, 0.1, 0.5
    M = clipper.euclidean_affinity(P1, P2, A, sigma, eps, mindist=mind).toarray()
    m = len(A)
    ref = np.zeros((m, m))
    for a in range(m):
        for b in range(m):
            (i, j), (k, l) = A[a], A[b]
            if a == b or i == k or j == l:
                continue
            l1, l2 = np.linalg.norm(P1[i] - P1[k]), np.linalg.norm(P2[j] - P2[l])
            if l1 < mind or l2 < mind:
                continue
            d = abs(l1 - l2)
            if d < eps:
                ref[a, b] = np.exp(-0.5 * d * d / sigma ** 2)
    ref[ref <= 1e-4] = 0
    np.testing.assert_allclose(M, ref, atol=1e-12)
    assert np.allclose(M, M.T)


def test_gravity_affinity_rejects_height_flip_and_fuses_scores():
    # same horizontal distances but the height difference has the opposite sign: inconsistent
    P1 = np.array([[0, 0, 0], [3, 0, 2.0], [0, 4, 0.5]])
    P2 = np.array([[0, 0, 2.0], [3, 0, 0], [0, 4, 2.5]])
    A = np.array([[0, 0], [1, 1], [2, 2]])
    M = clipper.gravity_affinity(P1, P2, A, 0.4, 0.6).toarray()
    assert M[0, 1] == 0 and M[1, 2] == 0     # signed height difference flipped
    assert M[0, 2] == pytest.approx(1.0)      # consistent pair
    E = clipper.euclidean_affinity(P1, P2, A, 0.4, 0.6).toarray()
    assert E[0, 1] > 0.9                      # the plain 3D invariant cannot tell
    s = np.array([1.0, 1.0, 0.125])
    Mf = clipper.gravity_affinity(P1, P2, A, 0.4, 0.6, single=s).toarray()
    assert Mf[0, 2] == pytest.approx(0.5)     # (1 * 1 * 0.125)^(1/3)


def _planted_graph(rng, n, p, k):
    G = nx.gnp_random_graph(n, p, seed=int(rng.integers(1 << 30)))
    clique = rng.choice(n, k, replace=False)
    G.add_edges_from((int(a), int(b)) for a in clique for b in clique if a < b)
    return G


@pytest.mark.parametrize("seed", range(6))
def test_matches_exact_maximum_clique_on_small_graphs(seed):
    rng = np.random.default_rng(seed)
    G = _planted_graph(rng, 40, 0.15, 9)
    M = sp.csr_matrix(nx.to_scipy_sparse_array(G, nodelist=range(40), dtype=float))
    sol = clipper.solve(M, seed=seed)
    sel = sol.nodes.tolist()
    omega = max(len(c) for c in nx.find_cliques(G))
    # a binary affinity: the rounded cluster is a clique, and of maximum size
    assert all(G.has_edge(a, b) for i, a in enumerate(sel) for b in sel[i + 1:])
    assert len(sel) == omega


def test_empty_and_edge_cases():
    sol = clipper.solve(sp.csr_matrix((0, 0)))
    assert sol.nodes.size == 0
    sol = clipper.solve(sp.csr_matrix((5, 5)))  # no edges: a single node at most
    assert len(sol.nodes) <= 1
    assert clipper.top_k_indices(np.array([0.0, 0.0, 1.0]), 1).tolist() == [2]
    assert clipper.top_k_indices(np.array([3.0, 1.0, 2.0]), 2).tolist() == [0, 2]
